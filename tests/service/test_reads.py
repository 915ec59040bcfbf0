from __future__ import annotations

import asyncio
from typing import Any

from tests.apps import Api

ARTICLE_FIELDS = {
    "id", "slug", "title", "summary", "author", "category", "tags", "series", "published_at",
    "updated_at", "body", "body_format", "status", "comment_count", "created_at",
}  # fmt: skip


async def test_miss_then_hit_serves_identical_bytes_without_a_database_connection(
    api: Api, content: dict[str, Any]
) -> None:
    api.sql.reset()
    miss = await api.client.get("/api/v1/articles/hello-world")
    assert miss.status_code == 200
    assert miss.headers["x-cache"] == "MISS"
    assert api.sql.count == 1, api.sql.statements  # one statement on a miss
    api.sql.reset()
    hit = await api.client.get("/api/v1/articles/hello-world")
    assert hit.headers["x-cache"] == "HIT"
    assert hit.content == miss.content
    assert hit.headers["etag"] == miss.headers["etag"]
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["cache-control"].startswith("public, max-age=")
    assert api.sql.count == 0
    assert api.state.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert set(hit.json()) == ARTICLE_FIELDS


async def test_article_representation_follows_the_contract(
    api: Api, content: dict[str, Any]
) -> None:
    doc = (await api.client.get("/api/v1/articles/hello-world")).json()
    assert doc["author"] == {
        "id": content["author"]["id"],
        "username": "ann",
        "display_name": "Ann Lee",
    }
    assert doc["category"] == {"slug": "guides", "name": "Guides"}
    assert doc["tags"] == [
        {"slug": "async-io", "name": "Async IO"},
        {"slug": "caching", "name": "Caching"},
    ]
    assert doc["status"] == "published" and doc["body_format"] == "markdown"
    assert doc["comment_count"] == 0
    assert doc["published_at"].endswith("Z") and "T" in doc["published_at"]


async def test_matching_if_none_match_gets_304_without_body(
    api: Api, content: dict[str, Any]
) -> None:
    first = await api.client.get("/api/v1/articles/hello-world")
    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = await api.client.get("/api/v1/articles/hello-world", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    other = await api.client.get(
        "/api/v1/articles/hello-world", headers={"If-None-Match": '"nope"'}
    )
    assert other.status_code == 200


async def test_article_list_pages_and_filters(api: Api, content: dict[str, Any]) -> None:
    for i in range(4):
        await api.create(
            "/api/v1/articles",
            {"title": f"Extra {i}", "body": "zebra text", "author": "ann", "status": "published"},
        )
    await api.create("/api/v1/articles", {"title": "Hidden draft", "body": "x", "author": "ann"})
    page = (await api.client.get("/api/v1/articles?per_page=2&page=2")).json()
    assert page["total"] == 5 and page["pages"] == 3 and page["page"] == 2 and page["per_page"] == 2
    assert len(page["items"]) == 2
    assert "body" not in page["items"][0]
    by_cat = (await api.client.get("/api/v1/articles?category=guides")).json()
    assert [a["slug"] for a in by_cat["items"]] == ["hello-world"]
    by_tag = (await api.client.get("/api/v1/articles?tag=caching")).json()
    assert by_tag["total"] == 1
    by_author = (await api.client.get("/api/v1/articles?author=ann")).json()
    assert by_author["total"] == 5
    titles = [
        a["title"] for a in (await api.client.get("/api/v1/articles?sort=title")).json()["items"]
    ]
    assert titles == sorted(titles)
    found = (await api.client.get("/api/v1/articles?q=zebra")).json()
    assert found["total"] == 4
    beyond = (await api.client.get("/api/v1/articles?page=9")).json()
    assert beyond["items"] == [] and beyond["total"] == 5


async def test_equivalent_queries_share_one_entry(api: Api, content: dict[str, Any]) -> None:
    first = await api.client.get("/api/v1/articles?sort=title&per_page=20")
    second = await api.client.get("/api/v1/articles?per_page=20&sort=title&page=1")
    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "HIT"


async def test_unknown_filters_are_404_and_bad_parameters_400(
    api: Api, content: dict[str, Any]
) -> None:
    for query in ("category=nope", "tag=nope", "author=nobody"):
        r = await api.client.get(f"/api/v1/articles?{query}")
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"
    keys_before = await api.state.redis.dbsize()
    for query in ("page=0", "per_page=101", "per_page=x", "sort=bogus", "q=", "q=" + "a" * 201,
                  "foo=bar", "page=1&page=2"):  # fmt: skip
        r = await api.client.get(f"/api/v1/articles?{query}")
        assert r.status_code == 400, query
        body = r.json()
        assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == 400
    assert (await api.client.get("/api/v1/authors?sort=x")).status_code == 400
    assert (await api.client.get("/api/v1/articles/hello-world?x=1")).status_code == 400
    assert await api.state.redis.dbsize() == keys_before  # no entry for bad parameters


async def test_invisible_articles_are_404(api: Api, content: dict[str, Any]) -> None:
    await api.create("/api/v1/articles", {"title": "Draft", "body": "x", "author": "ann"})
    await api.create(
        "/api/v1/articles",
        {"title": "Later", "body": "x", "author": "ann", "status": "published",
         "published_at": "2999-01-01T00:00:00Z"},
    )  # fmt: skip
    assert (await api.client.get("/api/v1/articles/draft")).status_code == 404
    assert (await api.client.get("/api/v1/articles/later")).status_code == 404
    assert (await api.client.get("/api/v1/articles/nothing-here")).status_code == 404
    assert (await api.client.get("/api/v1/articles")).json()["total"] == 1


async def test_taxonomy_reads_count_published_articles(api: Api, content: dict[str, Any]) -> None:
    await api.create(
        "/api/v1/articles", {"title": "Draft", "body": "x", "author": "ann", "category": "guides"}
    )
    author = (await api.client.get("/api/v1/authors/ann")).json()
    assert author["article_count"] == 1
    assert set(author) == {"id", "username", "display_name", "bio", "article_count", "created_at"}
    category = (await api.client.get("/api/v1/categories/guides")).json()
    assert category == {**content["category"], "article_count": 1}
    tag = (await api.client.get("/api/v1/tags/caching")).json()
    assert tag["article_count"] == 1 and set(tag) == {"id", "slug", "name", "article_count"}
    tags = (await api.client.get("/api/v1/tags?per_page=1")).json()
    assert tags["total"] == 2 and tags["pages"] == 2 and tags["items"][0]["slug"] == "async-io"
    assert (await api.client.get("/api/v1/authors")).json()["items"][0]["username"] == "ann"
    assert (await api.client.get("/api/v1/categories")).json()["total"] == 1
    assert (await api.client.get("/api/v1/tags/none")).status_code == 404


async def test_comment_threads_nest_replies_oldest_first(api: Api, content: dict[str, Any]) -> None:
    path = "/api/v1/articles/hello-world/comments"
    first = await api.create(path, {"author_name": "Bo", "body": "First"})
    reply = await api.create(path, {"author_name": "Cy", "body": "Reply", "parent_id": first["id"]})
    second = await api.create(path, {"author_name": "Di", "body": "Second"})
    threads = (await api.client.get(path)).json()
    assert threads["total"] == 3
    assert [c["id"] for c in threads["items"]] == [first["id"], second["id"]]
    assert threads["items"][0]["replies"][0]["id"] == reply["id"]
    assert threads["items"][0]["replies"][0]["parent_id"] == first["id"]
    assert set(reply) == {"id", "parent_id", "author_name", "body", "created_at", "replies"}


async def test_concurrent_misses_in_one_process_load_once(
    api: Api, content: dict[str, Any]
) -> None:
    api.sql.reset()
    answers = await asyncio.gather(
        *(api.client.get("/api/v1/articles/hello-world") for _ in range(50))
    )
    assert {r.status_code for r in answers} == {200}
    assert len({r.content for r in answers}) == 1
    assert api.sql.count == 1


async def test_operations_endpoints(api: Api) -> None:
    assert (await api.client.get("/health/live")).status_code == 200
    ready = await api.client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    spec = (await api.client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    for path in ("/api/v1/articles", "/api/v1/articles/{slug}", "/api/v1/articles/{slug}/comments",
                 "/api/v1/comments/{comment_id}", "/api/v1/authors/{username}", "/stats",
                 "/api/v1/tags/{slug}", "/health/ready", "/admin/cache/purge"):  # fmt: skip
        assert path in spec["paths"], path
    missing = await api.client.get("/no/such/path")
    assert (
        missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    )
