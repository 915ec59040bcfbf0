"""The JSON representations of the content, and their one serializer.

Documents are plain dicts in the contract's field order, built from rows by column label.
:func:`dumps` serializes them once, with orjson, into the bytes that are both cached and sent:
times come out as RFC 3339 in UTC with a ``Z`` suffix, to the second.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from service.models import Author, Category, Tag
from service.repository import Named
from service.statements import Row

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_OMIT_MICROSECONDS


def dumps(document: Any) -> bytes:
    """Return ``document`` as compact UTF-8 JSON bytes."""
    return orjson.dumps(document, option=_OPTIONS)


def summary_document(row: Row) -> dict[str, Any]:
    """Return an article summary from a row with the repository's summary columns."""
    return {
        "id": row["id"],
        "slug": row["slug"],
        "title": row["title"],
        "summary": row["summary"],
        "author": {
            "id": row["author_id"],
            "username": row["author_username"],
            "display_name": row["author_display_name"],
        },
        "category": (
            {"slug": row["category_slug"], "name": row["category_name"]}
            if row["category_id"] is not None
            else None
        ),
        "tags": [{"slug": t["slug"], "name": t["name"]} for t in row["tags"]],
        "published_at": row["published_at"],
        "updated_at": row["updated_at"],
    }


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
    article: Any,
    author: Named,
    category: Named | None,
    tags: Iterable[Any],
    comment_count: int,
) -> dict[str, Any]:
    """Return the representation of an article a write holds, as a read would render it.

    Built from the write's own objects, with no query, as the row :func:`article_document`
    renders; times in UTC (a client's offset is not kept by PostgreSQL).

    Args:
        article: the ORM ``Article``, flushed (its ``id`` set; no attribute expired).
        author: its author.
        category: its category, or None.
        tags: its ORM ``Tag``s, ordered by slug in the database's collation.
        comment_count: how many comments it has.
    """
    return article_document(
        {
            "id": article.id,
            "slug": article.slug,
            "title": article.title,
            "summary": article.summary,
            "author_id": author.id,
            "author_username": author.key,
            "author_display_name": author.name,
            "category_id": None if category is None else category.id,
            "category_slug": None if category is None else category.key,
            "category_name": None if category is None else category.name,
            "tags": [{"slug": t.slug, "name": t.name} for t in tags],
            "published_at": _utc(article.published_at),
            "updated_at": _utc(article.updated_at),
            "body": article.body,
            "body_format": article.body_format,
            "status": article.status,
            "comment_count": comment_count,
            "created_at": _utc(article.created_at),
        }
    )


#: The fields of each representation that is a plain projection of one row, in order.
AUTHOR_FIELDS = ("id", "username", "display_name", "bio", "article_count", "created_at")
CATEGORY_FIELDS = ("id", "slug", "name", "description", "article_count")
TAG_FIELDS = ("id", "slug", "name", "article_count")
COMMENT_FIELDS = ("id", "parent_id", "author_name", "body", "created_at")


def project(row: Row, fields: tuple[str, ...]) -> dict[str, Any]:
    """Return ``{field: row[field]}`` for ``fields``, in their order."""
    return {name: row[name] for name in fields}


def author_document(row: Row) -> dict[str, Any]:
    """Return an author's representation from a row with its ``article_count``."""
    return project(row, AUTHOR_FIELDS)


def category_document(row: Row) -> dict[str, Any]:
    """Return a category's representation from a row with its ``article_count``."""
    return project(row, CATEGORY_FIELDS)


def tag_document(row: Row) -> dict[str, Any]:
    """Return a tag's representation from a row with its ``article_count``."""
    return project(row, TAG_FIELDS)


def comment_document(comment: Any) -> dict[str, Any]:
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


#: The representation of an author, category or tag row, by model.
ENTITY_DOCUMENTS: dict[Any, Callable[[Row], dict[str, Any]]] = {
    Author: author_document,
    Category: category_document,
    Tag: tag_document,
}
