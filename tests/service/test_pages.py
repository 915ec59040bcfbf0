"""Deep pages over HTTP: cursors, the Link header, the depth cap, caching of cursor pages.

The pure functions behind them are tested in ``test_cursors.py``.
"""

from __future__ import annotations

import asyncio
import base64
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from tests.apps import ADMIN, EDITOR, Api


def _raw(parts: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(parts)).rstrip(b"=").decode()


async def _articles(api: Api, content: dict[str, Any]) -> None:
    """Nine more visible articles: equal publication times and titles, so that ids break ties."""
    base = datetime(2025, 6, 1, tzinfo=UTC)
    for i in range(9):
        await api.create(
            "/api/v1/articles",
            {
                "title": f"Note {i % 3}",
                "slug": f"note-{i}",
                "body": "cache " * (i + 1) + "zebra",
                "author": "ann",
                "status": "published",
                "published_at": (base + timedelta(days=i // 2)).isoformat(),
            },
        )
    await api.create("/api/v1/articles", {"title": "Draft", "body": "zebra", "author": "ann"})


async def _walk(api: Api, path: str, query: str) -> tuple[list[int], int]:
    """Follow next_cursor from the first page to the last; return the ids seen and pages."""
    r = await api.client.get(f"{path}?{query}")
    assert r.status_code == 200, r.text
    ids, pages = [], 1
    while True:
        body = r.json()
        ids += [item["id"] for item in body["items"]]
        if body["next_cursor"] is None:
            return ids, pages
        r = await api.client.get(f"{path}?{query}&cursor={body['next_cursor']}")
        assert r.status_code == 200, r.text
        assert r.json()["page"] is None and r.json()["total"] == body["total"]
        pages += 1


@pytest.mark.parametrize(
    "query",
    [
        "per_page=2",
        "per_page=2&sort=published_at",
        "per_page=2&sort=-updated_at",
        "per_page=2&sort=title",
        "per_page=2&q=zebra",
        "per_page=3&q=zebra&sort=title",
        "per_page=2&author=ann",
    ],
)
async def test_walking_by_cursor_sees_each_article_once_in_order(
    api: Api, content: dict[str, Any], query: str
) -> None:
    await _articles(api, content)
    whole = await api.client.get(
        "/api/v1/articles?" + re.sub(r"per_page=\d+", "per_page=100", query)
    )
    expected = [item["id"] for item in whole.json()["items"]]
    assert len(expected) == whole.json()["total"] >= 9
    assert whole.json()["next_cursor"] is None
    ids, pages = await _walk(api, "/api/v1/articles", query)
    assert ids == expected
    per_page = int(query.split("&")[0].split("=")[1])
    assert pages == -(-len(expected) // per_page)


async def test_entity_lists_walk_by_cursor(api: Api, content: dict[str, Any]) -> None:
    for name in ("Zeta", "Alpha", "Mid"):
        await api.create("/api/v1/tags", {"name": name})
    ids, pages = await _walk(api, "/api/v1/tags", "per_page=2")
    everything = (await api.client.get("/api/v1/tags?per_page=100")).json()["items"]
    assert ids == [t["id"] for t in everything] and len(ids) == 5 and pages == 3
    authors, _ = await _walk(api, "/api/v1/authors", "per_page=1")
    categories, _ = await _walk(api, "/api/v1/categories", "per_page=1")
    assert len(authors) == 1 and len(categories) == 1


def _links(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(", <"):
        url, rel = part.split(">; rel=")
        out[rel.strip('"')] = url.lstrip("<")
    return out


async def test_link_header_on_a_miss_and_on_a_hit(api: Api, content: dict[str, Any]) -> None:
    await _articles(api, content)
    miss = await api.client.get("/api/v1/articles?per_page=3&page=2&sort=title")
    hit = await api.client.get("/api/v1/articles?sort=title&page=2&per_page=3")
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    assert miss.headers["link"] == hit.headers["link"]
    links = _links(hit.headers["link"])
    cursor = hit.json()["next_cursor"]
    assert links == {
        "first": "/api/v1/articles?per_page=3&sort=title",
        "next": f"/api/v1/articles?cursor={cursor}&per_page=3&sort=title",
        "prev": "/api/v1/articles?page=1&per_page=3&sort=title",
    }
    following = await api.client.get(links["next"])
    assert following.status_code == 200
    assert (
        following.json()["items"][0]
        == (await api.client.get("/api/v1/articles?per_page=3&page=3&sort=title")).json()["items"][
            0
        ]
    )
    assert "prev" not in _links(following.headers["link"])
    last = await api.client.get("/api/v1/articles?per_page=100")
    assert _links(last.headers["link"]) == {"first": "/api/v1/articles?per_page=100"}
    not_modified = await api.client.get(
        "/api/v1/articles?per_page=100", headers={"If-None-Match": last.headers["etag"]}
    )
    assert not_modified.status_code == 304 and "link" in not_modified.headers
    assert "link" not in (await api.client.get("/api/v1/articles?tag=nothing")).headers
    assert "link" in (await api.client.get("/api/v1/tags")).headers


async def test_foreign_and_malformed_cursors_are_400(api: Api, content: dict[str, Any]) -> None:
    await _articles(api, content)
    cursor = (await api.client.get("/api/v1/articles?per_page=2")).json()["next_cursor"]
    for query in (
        f"per_page=3&cursor={cursor}",
        f"per_page=2&sort=title&cursor={cursor}",
        f"per_page=2&q=zebra&cursor={cursor}",
    ):
        r = await api.client.get(f"/api/v1/articles?{query}")
        assert r.status_code == 400 and "another query" in r.json()["detail"], query
    tag_cursor = (await api.client.get("/api/v1/tags?per_page=1")).json()["next_cursor"]
    assert (
        await api.client.get(f"/api/v1/authors?per_page=1&cursor={tag_cursor}")
    ).status_code == 400
    for bad in ("%21%21", "abc", _raw([1, 2, 3]), cursor[:-4]):
        r = await api.client.get(f"/api/v1/articles?per_page=2&cursor={bad}")
        assert r.status_code == 400, bad
        assert r.headers["content-type"] == "application/problem+json"
    both = await api.client.get(f"/api/v1/articles?per_page=2&page=1&cursor={cursor}")
    assert both.status_code == 400


async def test_deep_offset_pages_are_400_pointing_to_cursor(
    servers: Any, app_on: Any, api: Api
) -> None:
    r = await api.client.get("/api/v1/articles?page=101&per_page=100")
    assert r.status_code == 400 and "cursor" in r.json()["detail"]
    assert (await api.client.get("/api/v1/articles?page=100&per_page=100")).status_code == 200
    assert (await api.client.get("/api/v1/tags?page=10001")).status_code == 400
    async with app_on(servers.database_url, servers.redis_url, max_page_depth=10) as small:
        assert (await small.client.get("/api/v1/authors?page=5&per_page=2")).status_code == 200
        deep = await small.client.get("/api/v1/authors?page=6&per_page=2")
        assert deep.status_code == 400 and "cursor=" in deep.json()["detail"]


async def test_cursor_pages_are_cached_and_invalidated_by_a_write(
    api: Api, content: dict[str, Any]
) -> None:
    await _articles(api, content)
    cursor = (await api.client.get("/api/v1/articles?per_page=2")).json()["next_cursor"]
    url = f"/api/v1/articles?per_page=2&cursor={cursor}"
    first = await api.client.get(url)
    again = await api.client.get(url)
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")
    slug = first.json()["items"][0]["slug"]
    r = await api.client.patch(f"/api/v1/articles/{slug}", json={"summary": "new"}, headers=EDITOR)
    assert r.status_code == 200, r.text
    await api.settle()
    after = await api.client.get(url)
    assert after.headers["x-cache"] == "MISS"
    assert after.json()["items"][0]["summary"] == "new"


async def test_openapi_describes_cursor_pages(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    page = spec["components"]["schemas"]["ArticleSummaryPage"]
    assert "next_cursor" in page["required"] and "next_cursor" in page["properties"]
    for path in ("/api/v1/articles", "/api/v1/tags"):
        get = spec["paths"][path]["get"]
        assert "cursor" in [p["name"] for p in get["parameters"]]
        assert "Link" in get["responses"]["200"]["headers"]
    assert (
        "Link" not in spec["paths"]["/api/v1/articles/{slug}"]["get"]["responses"]["200"]["headers"]
    )


async def test_cursor_pages_can_be_warmed_by_key(api: Api, content: dict[str, Any]) -> None:
    await _articles(api, content)
    cursor = (await api.client.get("/api/v1/articles?per_page=2")).json()["next_cursor"]
    keys = [f"articles:cursor={cursor}&per_page=2", "articles:cursor=bogus&per_page=2"]
    warm = {"source": "keys", "keys": keys}
    r = await api.client.post("/admin/cache/warm", json=warm, headers=ADMIN)
    assert r.status_code == 202, r.text
    job_url = r.headers["location"]
    for _ in range(200):
        job = (await api.client.get(job_url, headers=ADMIN)).json()
        if job["state"] not in ("queued", "running"):
            break
        await asyncio.sleep(0.02)
    assert (job["state"], job["done"], job["skipped"], job["errors"]) == ("done", 1, 1, 0)
    warmed = await api.client.get(f"/api/v1/articles?per_page=2&cursor={cursor}")
    assert warmed.headers["x-cache"] == "HIT" and warmed.json()["page"] is None
