"""The JSON representations of the content, and their one serializer.

Documents are plain dicts in the contract's field order, built from rows by column label.
:func:`dumps` serializes them once, with orjson, into the bytes that are both cached and sent:
times come out as RFC 3339 in UTC with a ``Z`` suffix, to the second.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from service.kinds import KINDS, LINKED, REFERENCED, EntityKind
from service.models import Article, Comment, Tag
from service.repository import Reference
from service.statements import Row

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_OMIT_MICROSECONDS


def dumps(document: object) -> bytes:
    """Return ``document`` as compact UTF-8 JSON bytes."""
    return orjson.dumps(document, option=_OPTIONS)


def _embedded(row: Row, kind: EntityKind) -> dict[str, Any] | None:
    if row[kind.label("id")] is None:
        return None
    doc = {name: row[kind.label(name)] for name in kind.embedded}
    if kind.position_column:
        doc["position"] = row[kind.label("position")]
    return doc


def summary_document(row: Row) -> dict[str, Any]:
    """Return an article summary from a row with the repository's summary columns.

    Each kind an article refers to is embedded under its name (an object, or null), and the
    linked kind under its plural (a list), in the registry's order.
    """
    doc: dict[str, Any] = {
        "id": row["id"],
        "slug": row["slug"],
        "title": row["title"],
        "summary": row["summary"],
    }
    for kind in KINDS:
        if kind.article_column is None:
            doc[kind.plural] = [{n: t[n] for n in kind.embedded} for t in row[kind.plural]]
        else:
            doc[kind.name] = _embedded(row, kind)
    doc["published_at"] = row["published_at"]
    doc["updated_at"] = row["updated_at"]
    return doc


def article_document(row: Row) -> dict[str, Any]:
    """Return an article's full representation from a row of ``repository.article_by_slug``."""
    doc = summary_document(row)
    doc["body"] = row["body"]
    doc["body_format"] = row["body_format"]
    doc["status"] = row["status"]
    doc["comment_count"] = row["comment_count"]
    doc["created_at"] = row["created_at"]
    return doc


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


def written_article_document(
    article: Article,
    references: Mapping[str, Reference | None],
    linked: Iterable[Tag],
    comment_count: int,
) -> dict[str, Any]:
    """Return the representation of an article a write holds, as a read would render it.

    Built from the write's own objects, with no query, as the row :func:`article_document`
    renders; times in UTC (a client's offset is not kept by PostgreSQL).

    Args:
        article: the ORM ``Article``, flushed (its ``id`` set; no attribute expired).
        references: the entity of each referenced kind it refers to, or None, by kind name.
        linked: its ORM ``Tag``s, ordered by slug in the database's collation.
        comment_count: how many comments it has.
    """
    row: dict[str, Any] = {
        "id": article.id,
        "slug": article.slug,
        "title": article.title,
        "summary": article.summary,
        LINKED.plural: [{n: getattr(t, n) for n in LINKED.embedded} for t in linked],
        "published_at": _utc(article.published_at),
        "updated_at": _utc(article.updated_at),
        "body": article.body,
        "body_format": article.body_format,
        "status": article.status,
        "comment_count": comment_count,
        "created_at": _utc(article.created_at),
    }
    for kind in REFERENCED:
        found = references.get(kind.name)
        row[kind.label("id")] = None if found is None else found.id
        for name in kind.embedded:
            row[kind.label(name)] = None if found is None else found.values[name]
        if kind.position_column:
            row[kind.label("position")] = getattr(article, kind.position_column)
    return article_document(row)


COMMENT_FIELDS = ("id", "parent_id", "author_name", "body", "created_at")


def project(row: Row, fields: tuple[str, ...]) -> dict[str, Any]:
    """Return ``{field: row[field]}`` for ``fields``, in their order."""
    return {name: row[name] for name in fields}


def entity_document(kind: EntityKind, row: Row, *, item: bool = False) -> dict[str, Any]:
    """Return the representation of an entity of ``kind`` from a row with its ``article_count``.

    With ``item``, a series' representation also lists its articles (the row's ``articles``,
    in order, as ``slug``, ``title`` and ``position``).
    """
    doc = project(row, kind.fields)
    if item and kind.position_column:
        doc["articles"] = [
            {"slug": a["slug"], "title": a["title"], "position": a["position"]}
            for a in row["articles"]
        ]
    return doc


def comment_document(comment: Comment) -> dict[str, Any]:
    """Return one new comment (an ORM ``Comment``) with no replies."""
    return {**{name: getattr(comment, name) for name in COMMENT_FIELDS}, "replies": []}


def comment_threads(comments: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Return ``{"items": [top-level comments with nested replies], "total": n}``.

    Args:
        comments: every comment of one article as dicts, oldest first; each reply comes after
            its parent (a reply cannot be older than what it answers).
    """
    by_id: dict[int, dict[str, Any]] = {}
    roots: list[dict[str, Any]] = []
    for c in comments:
        node = {**c, "replies": []}
        by_id[node["id"]] = node
        parent = by_id.get(node["parent_id"]) if node["parent_id"] is not None else None
        (parent["replies"] if parent is not None else roots).append(node)
    return {"items": roots, "total": len(by_id)}


def page_document(
    items: list[Any], page: int | None, per_page: int, total: int, next_cursor: str | None = None
) -> dict[str, Any]:
    """Return the contract's page: items, page, per_page, total, pages, next_cursor.

    ``pages`` is ceil(total / per_page); ``page`` is None for a page reached by cursor.
    ``next_cursor`` is the last member, so that :func:`service.pages.next_cursor_of` finds it
    at the body's end without parsing.
    """
    return {
        "items": items,
        "page": page,
        "per_page": per_page,
        "total": total,
        "pages": math.ceil(total / per_page),
        "next_cursor": next_cursor,
    }
