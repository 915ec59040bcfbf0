"""The outbox's row tagger covers every tag the ORM tagger names, write by write.

Both taggers describe the same writes: the ORM one from attribute history at flush, the row
one from the images the triggers put in the outbox. If the row tagger missed a tag, a write
made by plain SQL would leave that entry wrong.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from service.keyspaces import tags_for_row_change
from tests.apps import EDITOR, Api


async def outbox_tags(api: Api) -> set[str]:
    """Take the outbox's rows (the relay is stopped) and return their tags."""
    async with api.state.engine.begin() as conn:
        rows = (
            await conn.execute(
                text("DELETE FROM cache_outbox RETURNING table_name, op, old_row, new_row")
            )
        ).all()
    tags: set[str] = set()
    for row in rows:
        tags |= tags_for_row_change(row.table_name, row.op, row.old_row, row.new_row)
    return tags


async def test_row_tags_cover_orm_tags(api: Api, content: dict[str, Any]) -> None:
    await api.state.relay.aclose()
    await outbox_tags(api)
    seen: list[frozenset[str]] = []
    unit_of_work: Any = api.state.unit_of_work
    invalidate = unit_of_work._invalidate

    async def recording(tags: frozenset[str]) -> None:
        seen.append(tags)
        await invalidate(tags)

    unit_of_work._invalidate = recording
    article = "/api/v1/articles/hello-world"
    writes = [
        ("post", "/api/v1/articles", {"title": "Second", "body": "b", "author": "ann",
                                      "category": "guides", "tags": ["caching"],
                                      "status": "published"}),
        ("patch", article, {"title": "Renamed"}),
        ("patch", article, {"status": "draft"}),
        ("patch", article, {"tags": ["async-io"]}),
        ("patch", article, {"slug": "moved", "category": None}),
        ("post", "/api/v1/articles/second/comments", {"author_name": "x", "body": "hi"}),
        ("patch", "/api/v1/authors/ann", {"display_name": "Ann B"}),
        ("patch", "/api/v1/tags/caching", {"slug": "caches"}),
        ("post", "/api/v1/categories", {"name": "New"}),
        ("post", "/api/v1/series", {"name": "Guide"}),
        ("patch", "/api/v1/articles/second", {"series": "guide"}),
        ("patch", "/api/v1/articles/second", {"series_position": 5}),
        ("patch", "/api/v1/series/guide", {"slug": "the-guide"}),
        ("delete", "/api/v1/series/the-guide", None),
        ("delete", "/api/v1/articles/moved", None),
        ("delete", "/api/v1/tags/async-io", None),
    ]  # fmt: skip
    for method, path, body in writes:
        seen.clear()
        r = await api.client.request(method.upper(), path, headers=EDITOR, json=body)
        assert r.status_code < 300, (path, r.text)
        orm = set().union(*seen)
        rows = await outbox_tags(api)
        assert orm and orm <= rows, (method, path, orm - rows)
