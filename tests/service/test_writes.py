"""Writes: authentication, validation, conflicts and preconditions."""

from __future__ import annotations

from typing import Any

from tests.apps import ADMIN, EDITOR, Api

ARTICLE = "/api/v1/articles/hello-world"


def is_problem(r: Any, status: int) -> bool:
    body = r.json()
    return (
        r.status_code == status
        and r.headers["content-type"] == "application/problem+json"
        and {"type", "title", "status", "detail"} <= set(body)
        and body["status"] == status
    )


async def test_writes_need_a_known_token_of_a_high_enough_role(
    api: Api, content: dict[str, Any]
) -> None:
    body = {"username": "bob", "display_name": "Bob"}
    assert is_problem(await api.client.post("/api/v1/authors", json=body), 401)
    r = await api.client.post(
        "/api/v1/authors", json=body, headers={"Authorization": "Bearer nope"}
    )
    assert is_problem(r, 401)
    r = await api.client.post("/api/v1/authors", json=body, headers={"Authorization": "Basic x"})
    assert is_problem(r, 401)
    assert is_problem(await api.client.delete(ARTICLE), 401)
    r = await api.client.post("/admin/cache/purge", json={"namespace": "all"}, headers=EDITOR)
    assert is_problem(r, 403)
    r = await api.client.post("/admin/cache/purge", json={"namespace": "article"}, headers=ADMIN)
    assert r.status_code == 200 and isinstance(r.json()["purged"], int)


async def test_create_article_derives_slug_and_answers_location(
    api: Api, content: dict[str, Any]
) -> None:
    r = await api.client.post(
        "/api/v1/articles",
        json={"title": "Ünïcode & Friends!", "body": "b", "author": "ann"},
        headers=EDITOR,
    )
    assert r.status_code == 201
    assert r.json()["slug"] == "unicode-friends"
    assert r.headers["location"] == "/api/v1/articles/unicode-friends"
    assert r.json()["status"] == "draft" and r.json()["published_at"] is None
    assert r.headers["etag"].startswith('"')


async def test_taken_slugs_and_usernames_are_409(api: Api, content: dict[str, Any]) -> None:
    r = await api.client.post(
        "/api/v1/articles",
        json={"title": "Hello World", "body": "b", "author": "ann"},
        headers=EDITOR,
    )
    assert is_problem(r, 409)
    r = await api.client.post(
        "/api/v1/authors", json={"username": "ann", "display_name": "A"}, headers=EDITOR
    )
    assert is_problem(r, 409)
    await api.create("/api/v1/articles", {"title": "Other", "body": "b", "author": "ann"})
    assert is_problem(await api.client.patch(ARTICLE, json={"slug": "other"}, headers=EDITOR), 409)
    assert is_problem(await api.client.delete("/api/v1/authors/ann", headers=EDITOR), 409)


async def test_invalid_bodies_are_400(api: Api, content: dict[str, Any]) -> None:
    cases = [
        {"body": "no title", "author": "ann"},
        {"title": "t", "body": "b", "author": "ann", "status": "live"},
        {"title": "t", "body": "b", "author": "ann", "unknown": 1},
        {"title": "t", "body": "b", "author": "ann", "slug": "Bad Slug"},
        {"title": "t", "body": "b", "author": "ann", "published_at": "2026-01-01T00:00:00"},
    ]
    for body in cases:
        assert is_problem(
            await api.client.post("/api/v1/articles", json=body, headers=EDITOR), 400
        ), body
    r = await api.client.post(
        "/api/v1/articles",
        content=b"{not json",
        headers={**EDITOR, "content-type": "application/json"},
    )
    assert is_problem(r, 400)
    r = await api.client.post(
        "/api/v1/articles", content=b"[]", headers={**EDITOR, "content-type": "application/json"}
    )
    assert is_problem(r, 400)
    r = await api.client.post(
        "/api/v1/articles", content=b"x", headers={**EDITOR, "content-type": "text/plain"}
    )
    assert is_problem(r, 415)
    assert is_problem(await api.client.patch(ARTICLE, json={"title": None}, headers=EDITOR), 400)


async def test_missing_targets_are_404(api: Api, content: dict[str, Any]) -> None:
    assert is_problem(
        await api.client.patch("/api/v1/articles/nope", json={"title": "x"}, headers=EDITOR), 404
    )
    assert is_problem(await api.client.delete("/api/v1/articles/nope", headers=EDITOR), 404)
    assert is_problem(await api.client.delete("/api/v1/comments/999", headers=EDITOR), 404)
    assert is_problem(
        await api.client.patch("/api/v1/tags/nope", json={"name": "x"}, headers=EDITOR), 404
    )
    r = await api.client.post(
        "/api/v1/articles/nope/comments", json={"author_name": "x", "body": "y"}, headers=EDITOR
    )
    assert is_problem(r, 404)


async def test_if_match_is_honoured(api: Api, content: dict[str, Any]) -> None:
    etag = (await api.client.get(ARTICLE)).headers["etag"]
    stale = await api.client.patch(
        ARTICLE, json={"title": "A"}, headers={**EDITOR, "If-Match": '"old"'}
    )
    assert is_problem(stale, 412)
    ok = await api.client.patch(ARTICLE, json={"title": "B"}, headers={**EDITOR, "If-Match": etag})
    assert ok.status_code == 200 and ok.json()["title"] == "B"
    again = await api.client.patch(
        ARTICLE, json={"title": "C"}, headers={**EDITOR, "If-Match": etag}
    )
    assert is_problem(again, 412)
    assert (await api.client.get(ARTICLE)).headers["etag"] == ok.headers["etag"]


async def test_merge_patch_clears_nullable_members(api: Api, content: dict[str, Any]) -> None:
    r = await api.client.patch(ARTICLE, json={"category": None, "tags": []}, headers=EDITOR)
    assert r.status_code == 200
    assert r.json()["category"] is None and r.json()["tags"] == []
    assert r.json()["title"] == "Hello World"


async def test_purge_validates_namespace_and_empties_it(api: Api, content: dict[str, Any]) -> None:
    await api.client.get(ARTICLE)
    r = await api.client.post("/admin/cache/purge", json={"namespace": "nope"}, headers=ADMIN)
    assert is_problem(r, 400)
    r = await api.client.post("/admin/cache/purge", json={"namespace": "article"}, headers=ADMIN)
    assert r.json() == {"purged": 1}
    assert (await api.client.get(ARTICLE)).headers["x-cache"] == "MISS"
