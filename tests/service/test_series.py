"""Series: ordered collections of articles, an entity kind declared only in the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.importer import import_tree
from tests.apps import EDITOR, Api

GUIDE = "/api/v1/series/caching-guide"


async def _chapter(api: Api, title: str, **extra: Any) -> dict[str, Any]:
    body = {"title": title, "body": "b", "author": "ann", "status": "published", **extra}
    return await api.create("/api/v1/articles", body)


async def _titles(api: Api) -> list[tuple[str, int]]:
    r = await api.client.get(GUIDE)
    assert r.status_code == 200, (r.status_code, r.text)
    return [(a["title"], a["position"]) for a in r.json()["articles"]]


async def test_a_series_lists_its_visible_articles_in_order(
    api: Api, content: dict[str, Any]
) -> None:
    series = await api.create("/api/v1/series", {"name": "Caching guide"})
    assert series == {
        "id": series["id"], "slug": "caching-guide", "name": "Caching guide",
        "description": "", "article_count": 0, "articles": [],
    }  # fmt: skip
    first = await _chapter(api, "Why cache", series="caching-guide")
    await _chapter(api, "Cache-aside", series="caching-guide")
    await _chapter(api, "Intro", series="caching-guide", series_position=1)
    await _chapter(api, "Unpublished", series="caching-guide", status="draft")
    assert first["series"] == {"slug": "caching-guide", "name": "Caching guide", "position": 1}
    # Equal positions keep the order of creation; a draft is not listed.
    assert await _titles(api) == [("Why cache", 1), ("Intro", 1), ("Cache-aside", 2)]
    page = (await api.client.get("/api/v1/series")).json()
    assert [(s["slug"], s["article_count"]) for s in page["items"]] == [("caching-guide", 3)]
    assert "articles" not in page["items"][0]
    read = (await api.client.get(f"/api/v1/articles/{first['slug']}")).json()
    assert read["series"] == first["series"]
    summaries = (await api.client.get("/api/v1/articles?per_page=100")).json()["items"]
    assert {a["slug"]: a["series"] for a in summaries}["hello-world"] is None


async def test_series_writes_invalidate_what_embeds_or_lists_them(
    api: Api, content: dict[str, Any]
) -> None:
    await api.create("/api/v1/series", {"name": "Caching guide"})
    chapter = await _chapter(api, "Why cache", series="caching-guide")
    path = f"/api/v1/articles/{chapter['slug']}"
    for url in (GUIDE, path, "/api/v1/series", "/api/v1/articles"):
        await api.client.get(url)
        assert (await api.client.get(url)).headers["x-cache"] == "HIT", url
    # A chapter's new title shows in its series at once.
    r = await api.client.patch(path, json={"title": "Why we cache"}, headers=EDITOR)
    assert r.status_code == 200, r.text
    assert await _titles(api) == [("Why we cache", 1)]
    # A rename of the series shows in the articles that embed it.
    r = await api.client.patch(GUIDE, json={"name": "The caching guide"}, headers=EDITOR)
    assert r.status_code == 200 and r.json()["articles"] == [
        {"slug": chapter["slug"], "title": "Why we cache", "position": 1}
    ]
    assert (await api.client.get(path)).json()["series"]["name"] == "The caching guide"
    # Leaving the series drops the chapter from it and its count.
    r = await api.client.patch(path, json={"series": None}, headers=EDITOR)
    assert r.status_code == 200 and r.json()["series"] is None
    assert await _titles(api) == []
    assert (await api.client.get("/api/v1/series")).json()["items"][0]["article_count"] == 0
    # A deleted series is gone from every article that was in it, and its slug is a 404.
    r = await api.client.patch(path, json={"series": "caching-guide"}, headers=EDITOR)
    assert r.status_code == 200, r.text
    assert (await api.client.delete(GUIDE, headers=EDITOR)).status_code == 204
    assert (await api.client.get(GUIDE)).status_code == 404
    assert (await api.client.get(path)).json()["series"] is None
    assert (await api.client.get("/api/v1/series")).json()["total"] == 0


async def test_positions_move_with_the_series(api: Api, content: dict[str, Any]) -> None:
    await api.create("/api/v1/series", {"name": "Caching guide"})
    await api.create("/api/v1/series", {"name": "Other"})
    a = await _chapter(api, "A", series="caching-guide")
    await _chapter(api, "B", series="caching-guide")
    path = f"/api/v1/articles/{a['slug']}"
    r = await api.client.patch(path, json={"series_position": None}, headers=EDITOR)
    assert r.json()["series"]["position"] == 3  # to the end of its series
    assert await _titles(api) == [("B", 2), ("A", 3)]
    r = await api.client.patch(path, json={"series": "other"}, headers=EDITOR)
    assert r.json()["series"] == {"slug": "other", "name": "Other", "position": 1}
    r = await api.client.patch(path, json={"series": "other", "title": "A2"}, headers=EDITOR)
    assert r.json()["series"]["position"] == 1  # the same series: its place is kept
    r = await api.client.patch(path, json={"series_position": 7}, headers=EDITOR)
    assert r.json()["series"]["position"] == 7


@pytest.mark.parametrize(
    ("body", "status", "member"),
    [
        ({"series": "nope"}, 409, "series"),
        ({"series_position": 2}, 400, "series_position"),
        ({"series": "caching-guide", "series_position": 0}, 400, None),
    ],
    ids=["unknown-series", "position-without-series", "position-below-one"],
)
async def test_bad_series_references_are_refused(
    api: Api, content: dict[str, Any], body: dict[str, Any], status: int, member: str | None
) -> None:
    await api.create("/api/v1/series", {"name": "Caching guide"})
    r = await api.client.post(
        "/api/v1/articles",
        json={"title": "T", "body": "b", "author": "ann", **body},
        headers=EDITOR,
    )
    assert r.status_code == status, (r.status_code, r.text)
    if member is not None:
        assert r.json().get("member") == member, r.json()


async def test_import_makes_each_guide_folder_a_series(api: Api, tmp_path: Path) -> None:
    guide = tmp_path / "tutorial"
    guide.mkdir()
    (guide / "index.rst").write_text(
        "The tutorial\n============\n\n.. toctree::\n\n   second.rst\n   first\n   ../about\n"
    )
    (guide / "first.rst").write_text("First steps\n===========\n\nText.\n")
    (guide / "second.rst").write_text("Second steps\n============\n\nText.\n")
    (guide / "unlisted.rst").write_text("Unlisted\n========\n\nText.\n")
    (tmp_path / "about.rst").write_text("About\n=====\n\nText.\n")
    await api.create("/api/v1/authors", {"username": "ann", "display_name": "Ann"})
    report = await import_tree(api.state.unit_of_work, tmp_path)
    assert report.created == 5 and not report.skipped
    await api.settle()
    r = await api.client.get("/api/v1/series/tutorial")
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "The tutorial"
    assert [(a["slug"], a["position"]) for a in r.json()["articles"]] == [
        ("tutorial-second", 1),
        ("tutorial-first", 2),
    ]
    unlisted = (await api.client.get("/api/v1/articles/tutorial-unlisted")).json()
    assert unlisted["series"] is None
    again = await import_tree(api.state.unit_of_work, tmp_path)
    assert again.unchanged == 5
