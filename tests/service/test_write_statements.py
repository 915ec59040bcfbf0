from __future__ import annotations

from typing import Any

from tests.apps import EDITOR, Api

ARTICLE = "/api/v1/articles/hello-world"


async def _extra_tag(api: Api) -> None:
    await api.create("/api/v1/tags", {"name": "Zebra"})


async def test_an_article_post_sends_three_statements(api: Api, content: dict[str, Any]) -> None:
    api.sql.reset()
    r = await api.client.post(
        "/api/v1/articles",
        json={"title": "Second", "body": "b", "author": "ann", "category": "guides",
              "tags": ["caching", "async-io"], "status": "published"},
        headers=EDITOR,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    # The references in one, the article and its tag links: no lookup per reference, and the
    # answer is not read back.
    assert api.sql.count == 3, api.sql.statements


async def test_an_article_patch_sends_one_update(api: Api, content: dict[str, Any]) -> None:
    await _extra_tag(api)
    api.sql.reset()
    r = await api.client.patch(ARTICLE, json={"title": "Renamed"}, headers=EDITOR)
    assert r.status_code == 200, r.text
    assert api.sql.count == 2, api.sql.statements  # the locked read and one UPDATE
    assert [s.split()[0] for s in api.sql.statements] == ["SELECT", "UPDATE"]
    api.sql.reset()
    r = await api.client.patch(
        ARTICLE,
        json={"title": "Again", "tags": ["zebra", "caching"], "author": "ann"},
        headers={**EDITOR, "If-Match": r.headers["etag"]},
    )
    assert r.status_code == 200, r.text
    kinds = [s.split()[0] for s in api.sql.statements]
    # The locked read (no read back for If-Match), the references, one UPDATE, the tag links.
    assert kinds == ["SELECT", "SELECT", "UPDATE", "DELETE", "INSERT"], api.sql.statements


async def test_write_answers_are_the_bytes_a_read_answers(
    api: Api, content: dict[str, Any]
) -> None:
    await _extra_tag(api)
    created = await api.client.post(
        "/api/v1/articles",
        json={"title": "Offset", "body": "b", "author": "ann", "tags": ["zebra", "async-io"],
              "status": "published", "published_at": "2020-05-01T12:30:15.123456+02:00"},
        headers=EDITOR,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    await api.settle()
    read = await api.client.get("/api/v1/articles/offset")
    assert read.content == created.content
    assert read.headers["etag"] == created.headers["etag"]
    doc = created.json()
    assert doc["published_at"] == "2020-05-01T10:30:15Z"
    assert [t["slug"] for t in doc["tags"]] == ["async-io", "zebra"]
    assert doc["category"] is None and doc["comment_count"] == 0

    await api.create(ARTICLE + "/comments", {"author_name": "Bo", "body": "Hi"})
    patched = await api.client.patch(
        ARTICLE, json={"category": None, "tags": ["zebra"], "summary": "new"}, headers=EDITOR
    )
    assert patched.status_code == 200, patched.text
    await api.settle()
    read = await api.client.get(ARTICLE)
    assert read.content == patched.content
    assert patched.json()["comment_count"] == 1

    draft = await api.client.post(
        "/api/v1/articles", json={"title": "Later", "body": "b", "author": "ann"}, headers=EDITOR
    )
    published = await api.client.patch(
        "/api/v1/articles/later", json={"status": "published"}, headers=EDITOR
    )
    doc = published.json()
    # The database's clock of the writing transaction, as func.now() would have set it.
    assert doc["published_at"] == doc["updated_at"] >= draft.json()["created_at"]
    await api.settle()
    assert (await api.client.get("/api/v1/articles/later")).content == published.content
