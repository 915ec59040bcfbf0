"""Every write invalidates what it made wrong, and nothing answers with what it replaced."""

from __future__ import annotations

from typing import Any

from tests.apps import EDITOR, Api

ARTICLE = "/api/v1/articles/hello-world"


async def warm(api: Api, *paths: str) -> None:
    await api.settle()
    for path in paths:
        await api.client.get(path)
        r = await api.client.get(path)
        assert r.headers.get("x-cache") == "HIT", path


async def patch(
    api: Api, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Any:
    r = await api.client.patch(path, json=body, headers={**EDITOR, **(headers or {})})
    assert r.status_code == 200, r.text
    return r


async def test_article_update_reaches_item_and_every_list(
    api: Api, content: dict[str, Any]
) -> None:
    lists = ["/api/v1/articles", "/api/v1/articles?author=ann", "/api/v1/articles?tag=caching",
             "/api/v1/articles?category=guides", "/api/v1/articles?q=hello"]  # fmt: skip
    await warm(api, ARTICLE, *lists)
    await patch(api, ARTICLE, {"title": "Hello Again"})
    item = await api.client.get(ARTICLE)
    assert item.headers["x-cache"] == "MISS" and item.json()["title"] == "Hello Again"
    for path in lists[:-1]:
        assert (await api.client.get(path)).json()["items"][0]["title"] == "Hello Again", path
    assert (await api.client.get("/api/v1/articles?q=hello")).json()["items"][0][
        "title"
    ] == "Hello Again"


async def test_title_edit_keeps_unrelated_author_entries(api: Api, content: dict[str, Any]) -> None:
    await warm(api, "/api/v1/authors/ann", "/api/v1/categories/guides")
    await patch(api, ARTICLE, {"title": "Only the title"})
    assert (await api.client.get("/api/v1/authors/ann")).headers["x-cache"] == "HIT"
    assert (await api.client.get("/api/v1/categories/guides")).headers["x-cache"] == "HIT"


async def test_slug_rename_makes_old_slug_404(api: Api, content: dict[str, Any]) -> None:
    await warm(api, ARTICLE, f"{ARTICLE}/comments")
    await patch(api, ARTICLE, {"slug": "hello-renamed"})
    assert (await api.client.get(ARTICLE)).status_code == 404
    assert (await api.client.get(f"{ARTICLE}/comments")).status_code == 404
    assert (await api.client.get("/api/v1/articles/hello-renamed")).status_code == 200
    items = (await api.client.get("/api/v1/articles")).json()["items"]
    assert [a["slug"] for a in items] == ["hello-renamed"]


async def test_author_rename_reaches_articles_lists_and_filters(
    api: Api, content: dict[str, Any]
) -> None:
    await warm(api, ARTICLE, "/api/v1/articles", "/api/v1/articles?author=ann", "/api/v1/authors",
               "/api/v1/authors/ann")  # fmt: skip
    await patch(api, "/api/v1/authors/ann", {"username": "annie", "display_name": "Annie Lee"})
    embedded = {"id": content["author"]["id"], "username": "annie", "display_name": "Annie Lee"}
    assert (await api.client.get(ARTICLE)).json()["author"] == embedded
    assert (await api.client.get("/api/v1/articles")).json()["items"][0]["author"] == embedded
    assert (await api.client.get("/api/v1/articles?author=ann")).status_code == 404
    assert (await api.client.get("/api/v1/articles?author=annie")).json()["total"] == 1
    assert (await api.client.get("/api/v1/authors/ann")).status_code == 404
    assert (await api.client.get("/api/v1/authors")).json()["items"][0]["username"] == "annie"


async def test_category_and_tag_renames_reach_embedding_articles(
    api: Api, content: dict[str, Any]
) -> None:
    await warm(api, ARTICLE, "/api/v1/articles", "/api/v1/articles?tag=caching", "/api/v1/tags")
    await patch(api, "/api/v1/categories/guides", {"name": "How-tos"})
    await patch(api, "/api/v1/tags/caching", {"slug": "cache", "name": "Cache"})
    doc = (await api.client.get(ARTICLE)).json()
    assert doc["category"] == {"slug": "guides", "name": "How-tos"}
    assert {"slug": "cache", "name": "Cache"} in doc["tags"]
    summary = (await api.client.get("/api/v1/articles")).json()["items"][0]
    assert summary["category"]["name"] == "How-tos"
    assert (await api.client.get("/api/v1/articles?tag=caching")).status_code == 404
    assert [t["slug"] for t in (await api.client.get("/api/v1/tags")).json()["items"]] == [
        "async-io",
        "cache",
    ]


async def test_publishing_changes_counts_everywhere(api: Api, content: dict[str, Any]) -> None:
    await api.create("/api/v1/articles", {"title": "Second", "body": "x", "author": "ann",
                                          "category": "guides", "tags": ["caching"]})  # fmt: skip
    counted = [
        "/api/v1/authors/ann", "/api/v1/authors", "/api/v1/categories/guides",
        "/api/v1/categories", "/api/v1/tags/caching", "/api/v1/tags", "/api/v1/articles",
    ]  # fmt: skip
    await warm(api, *counted)
    await patch(api, "/api/v1/articles/second", {"status": "published"})
    assert (await api.client.get("/api/v1/authors/ann")).json()["article_count"] == 2
    assert (await api.client.get("/api/v1/authors")).json()["items"][0]["article_count"] == 2
    assert (await api.client.get("/api/v1/categories/guides")).json()["article_count"] == 2
    assert (await api.client.get("/api/v1/categories")).json()["items"][0]["article_count"] == 2
    assert (await api.client.get("/api/v1/tags/caching")).json()["article_count"] == 2
    tags = {
        t["slug"]: t["article_count"]
        for t in (await api.client.get("/api/v1/tags")).json()["items"]
    }
    assert tags == {"async-io": 1, "caching": 2}
    assert (await api.client.get("/api/v1/articles")).json()["total"] == 2


async def test_retagging_moves_counts_between_tags(api: Api, content: dict[str, Any]) -> None:
    await warm(api, "/api/v1/tags/caching", "/api/v1/tags/async-io", ARTICLE)
    await patch(api, ARTICLE, {"tags": ["async-io"]})
    assert (await api.client.get("/api/v1/tags/caching")).json()["article_count"] == 0
    assert (await api.client.get("/api/v1/tags/async-io")).json()["article_count"] == 1
    assert (await api.client.get(ARTICLE)).json()["tags"] == [
        {"slug": "async-io", "name": "Async IO"}
    ]


async def test_delete_removes_article_from_item_lists_and_counts(
    api: Api, content: dict[str, Any]
) -> None:
    await warm(api, ARTICLE, "/api/v1/articles", "/api/v1/authors/ann", "/api/v1/tags/caching")
    r = await api.client.delete(ARTICLE, headers=EDITOR)
    assert r.status_code == 204
    assert (await api.client.get(ARTICLE)).status_code == 404
    assert (await api.client.get("/api/v1/articles")).json()["total"] == 0
    assert (await api.client.get("/api/v1/authors/ann")).json()["article_count"] == 0
    assert (await api.client.get("/api/v1/tags/caching")).json()["article_count"] == 0


async def test_comments_update_threads_and_comment_count(api: Api, content: dict[str, Any]) -> None:
    await warm(api, ARTICLE, f"{ARTICLE}/comments")
    comment = await api.create(f"{ARTICLE}/comments", {"author_name": "Bo", "body": "Nice"})
    assert (await api.client.get(ARTICLE)).json()["comment_count"] == 1
    assert (await api.client.get(f"{ARTICLE}/comments")).json()["total"] == 1
    await warm(api, ARTICLE, f"{ARTICLE}/comments")
    assert (
        await api.client.delete(f"/api/v1/comments/{comment['id']}", headers=EDITOR)
    ).status_code == 204
    assert (await api.client.get(ARTICLE)).json()["comment_count"] == 0
    assert (await api.client.get(f"{ARTICLE}/comments")).json() == {"items": [], "total": 0}


async def test_deleting_a_category_or_tag_reaches_articles(
    api: Api, content: dict[str, Any]
) -> None:
    await warm(api, ARTICLE, "/api/v1/categories", "/api/v1/tags")
    assert (await api.client.delete("/api/v1/categories/guides", headers=EDITOR)).status_code == 204
    assert (await api.client.delete("/api/v1/tags/caching", headers=EDITOR)).status_code == 204
    doc = (await api.client.get(ARTICLE)).json()
    assert doc["category"] is None and [t["slug"] for t in doc["tags"]] == ["async-io"]
    assert (await api.client.get("/api/v1/categories")).json()["total"] == 0
    assert (await api.client.get("/api/v1/tags")).json()["total"] == 1


async def test_new_author_appears_in_cached_author_list(api: Api, content: dict[str, Any]) -> None:
    await warm(api, "/api/v1/authors")
    await api.create("/api/v1/authors", {"username": "bob", "display_name": "Bob"})
    assert (await api.client.get("/api/v1/authors")).json()["total"] == 2


async def test_invalidation_is_shared_by_instances_on_one_redis(
    api: Api, content: dict[str, Any]
) -> None:
    """A second app on the same Redis and prefix sees the first app's invalidations."""
    import httpx

    from service.app import create_app
    from tests.apps import make_settings

    other = create_app(make_settings(_servers_of(api), api.state.settings.cache_prefix))
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as client2:
            await warm(api, ARTICLE)
            assert (await client2.get(ARTICLE)).headers["x-cache"] == "HIT"
            await patch(api, ARTICLE, {"title": "Seen everywhere"})
            assert (await client2.get(ARTICLE)).json()["title"] == "Seen everywhere"


def _servers_of(api: Api) -> Any:
    from types import SimpleNamespace

    s = api.state.settings
    return SimpleNamespace(database_url=s.database_url, redis_url=s.redis_url)
