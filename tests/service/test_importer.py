"""``content-service import`` on a small tree, and on the CPython documentation when installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.importer import import_tree
from tests.apps import Api

FIXTURES = Path(__file__).parent.parent / "fixtures" / "docs"
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html/_sources")


async def test_import_reads_titles_authors_categories_and_tags(api: Api) -> None:
    report = await import_tree(api.state.unit_of_work, FIXTURES)
    assert (report.created, report.updated, report.unchanged) == (4, 0, 0)
    page = (await api.client.get("/api/v1/articles?sort=title")).json()
    by_slug = {a["slug"]: a for a in page["items"]}
    assert set(by_slug) == {"library-os-path", "guides-whatsnew", "guides-caching", "about"}
    os_path = (await api.client.get("/api/v1/articles/library-os-path")).json()
    assert os_path["title"] == "os.path --- Common pathname manipulations"
    assert os_path["category"] == {"slug": "library", "name": "Library"}
    assert os_path["tags"] == [{"slug": "os-path", "name": "os.path"}]
    assert os_path["summary"].startswith(
        "This module implements some useful functions on pathnames."
    )
    assert os_path["body_format"] == "rst" and os_path["body"].startswith(":mod:`os.path`")
    whatsnew = by_slug["guides-whatsnew"]
    assert whatsnew["title"] == "What's New In Python 3.2"
    assert whatsnew["author"]["display_name"] == "Raymond Hettinger"
    assert {t["slug"] for t in whatsnew["tags"]} == {"asyncio", "concurrent-futures"}
    caching = (await api.client.get("/api/v1/articles/guides-caching")).json()
    assert caching["title"] == "Caching with **Redis**" and caching["body_format"] == "markdown"
    assert caching["author"]["username"] == "ann-lee"
    assert {t["slug"] for t in caching["tags"]} == {"redis", "caching"}
    assert by_slug["about"]["category"] is None
    assert by_slug["about"]["author"]["username"] == "python-docs"


async def test_import_twice_changes_nothing(api: Api) -> None:
    await import_tree(api.state.unit_of_work, FIXTURES)
    await api.state.relay.drain_all()  # the import's outbox rows, applied before the read
    await api.client.get("/api/v1/articles")
    again = await import_tree(api.state.unit_of_work, FIXTURES)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 4)
    assert (await api.client.get("/api/v1/articles")).headers["x-cache"] == "HIT"


async def test_reimport_of_an_edited_file_invalidates_it(api: Api, tmp_path: Path) -> None:
    doc = tmp_path / "note.md"
    doc.write_text("# First title\n\nbody\n")
    await import_tree(api.state.unit_of_work, tmp_path)
    assert (await api.client.get("/api/v1/articles/note")).json()["title"] == "First title"
    doc.write_text("# Second title\n\nbody\n")
    report = await import_tree(api.state.unit_of_work, tmp_path)
    assert report.updated == 1
    assert (await api.client.get("/api/v1/articles/note")).json()["title"] == "Second title"


@pytest.mark.corpus
@pytest.mark.skipif(not PYTHON_DOCS.is_dir(), reason="python3.11-doc is not installed")
async def test_python_documentation_is_served_and_second_pass_is_all_hits(api: Api) -> None:
    report = await import_tree(api.state.unit_of_work, PYTHON_DOCS)
    assert report.created == 497 and not report.skipped
    slugs: list[str] = []
    page = 1
    while True:
        body: dict[str, Any] = (
            await api.client.get(f"/api/v1/articles?per_page=100&page={page}")
        ).json()
        slugs += [a["slug"] for a in body["items"]]
        if page >= body["pages"]:
            break
        page += 1
    assert len(slugs) == len(set(slugs)) == 497
    await api.settle()
    await api.client.post(
        "/admin/cache/purge",
        json={"namespace": "all"},
        headers={"Authorization": "Bearer admin-token"},
    )
    first = [await api.client.get(f"/api/v1/articles/{s}") for s in slugs]
    assert {r.status_code for r in first} == {200}
    assert {r.headers["x-cache"] for r in first} == {"MISS"}
    second = [await api.client.get(f"/api/v1/articles/{s}") for s in slugs]
    assert {r.headers["x-cache"] for r in second} == {"HIT"}
    assert [r.content for r in second] == [r.content for r in first]
    article = (await api.stats())["cache"]["namespaces"]["article"]
    assert (article["hits"], article["misses"], article["hit_ratio"]) == (497, 497, 0.5)
    assert api.state.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
