"""The writes of articles and comments, with their rules, each in one unit of work.

Each runs in :class:`service.unit_of_work.UnitOfWork` (commit, then invalidate); the writes of
the other entity kinds are in :mod:`service.entity_writes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cache import coded_etags, etag_for
from service import repository as repo
from service.documents import comment_document, dumps, written_article_document
from service.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PreconditionFailedError,
)
from service.kinds import BY_NAME, LINKED, REFERENCED
from service.models import Article, Comment, Tag
from service.schemas import (
    ArticleCreate,
    ArticlePatch,
    CommentCreate,
    derive_slug,
)
from service.unit_of_work import UnitOfWork


def if_match_holds(header: str, etag: str) -> bool:
    """Return whether an ``If-Match`` header admits the representation tagged ``etag``.

    The ETag of any stored content coding of it (:func:`cache.coded_etags`) is admitted too: a
    client that read the gzip or brotli bytes holds that one, for the same content.
    """
    candidates = {c.strip() for c in header.split(",")}
    return "*" in candidates or not candidates.isdisjoint((etag, *coded_etags(etag)))


Found = dict[str, repo.Reference | None]


class ArticleWrites:
    """Writes articles and their comments. Safe to share.

    Args:
        unit_of_work: runs each write and invalidates after its commit.
    """

    def __init__(self, unit_of_work: UnitOfWork) -> None:
        self._unit_of_work = unit_of_work

    async def create_article(self, data: ArticleCreate) -> dict[str, Any]:
        """Create an article and return its representation.

        Five round trips to PostgreSQL: the references (slug, author, category, series, tags
        and the clock) in one statement, the article's and its tag links' inserts, and the
        ``BEGIN`` and ``COMMIT``; the answer is built from what the write holds.

        Raises:
            ConflictError: the slug is taken, or the author, category, series or a tag does not
                exist.
            InvalidInputError: a ``series_position`` comes without a series.
        """
        # The model refuses a title with nothing to derive a slug from when no slug is given.
        slug = data.slug or derive_slug(data.title)
        keys = {kind.name: getattr(data, kind.name) for kind in REFERENCED}
        _check_positions(data, keys)
        linked_keys: list[str] = getattr(data, LINKED.plural)
        async with self._unit_of_work() as s:
            refs = await repo.references(s, slug=slug, keys=keys, linked=linked_keys)
            if refs.slug_taken:
                raise ConflictError(f"the slug {slug!r} is taken", slug=slug)
            found = {name: _existing(refs.found[name], name, key) for name, key in keys.items()}
            linked = _all_linked(refs.linked, linked_keys)
            # The transaction's now(): the value the database's own clock gives its statements.
            published_at = data.published_at or _now_if_published(data.status, refs.now)
            article = Article(
                slug=slug,
                title=data.title,
                summary=data.summary,
                body=data.body,
                body_format=data.body_format,
                status=data.status,
                published_at=published_at,
                created_at=refs.now,
                updated_at=refs.now,
            )
            for kind in REFERENCED:
                _refer(article, kind.name, found[kind.name], data, moved=True)
            article.tags = linked
            s.add(article)
            await s.flush()
            return written_article_document(article, found, linked, 0)

    async def patch_article(
        self, slug: str, patch: ArticlePatch, if_match: str | None
    ) -> dict[str, Any]:
        """Apply a JSON merge patch to the article at ``slug`` and return its representation.

        The article is locked and read with what it refers to, its tags and comment count in
        one statement; the references a patch names in one more; all its changes go out in
        one ``UPDATE`` (and the tag links' changes); the answer is built from what the write
        holds. A new series without a ``series_position``, or a null ``series_position``, puts
        the article at the end of its series.

        Raises:
            NotFoundError: no article has that slug (of any status).
            PreconditionFailedError: ``if_match`` does not match its current ETag.
            InvalidInputError: a ``series_position`` is given for an article in no series.
            ConflictError: the new slug is taken, or the author, category, series or a tag it
                names does not exist.
        """
        # The model refuses null for the members that may not be cleared.
        fields = patch.model_fields_set
        async with self._unit_of_work() as s:
            locked = await repo.article_for_update(s, slug)
            if locked is None:
                raise NotFoundError(f"no article {slug!r}")
            article = locked.article
            found: Found = dict(locked.references)
            linked = list(article.tags)
            if if_match is not None:
                current = written_article_document(article, found, linked, locked.comment_count)
                if not if_match_holds(if_match, etag_for(dumps(current))):
                    raise PreconditionFailedError("the article changed since that ETag")
            new_slug = patch.slug if "slug" in fields and patch.slug != slug else None
            asked = _asked_references(patch, fields, found)
            _check_positions(patch, {**_keys_of(found), **asked})
            moved: set[str] = set()
            # Looked up before any attribute changes, so that no autoflush splits the UPDATE.
            if new_slug is not None or asked or LINKED.plural in fields:
                linked_keys: list[str] = getattr(patch, LINKED.plural) or []
                refs = await repo.references(s, slug=new_slug, keys=asked, linked=linked_keys)
                if new_slug is not None and refs.slug_taken:
                    raise ConflictError(f"the slug {new_slug!r} is taken", slug=new_slug)
                for name, key in asked.items():
                    before, after = found[name], _existing(refs.found[name], name, key)
                    if before is None or after is None or before.id != after.id:
                        moved.add(name)
                    found[name] = after
                if LINKED.plural in fields:
                    linked = _all_linked(refs.linked, linked_keys)
            if new_slug is not None:
                article.slug = new_slug
            for name in ("title", "summary", "body", "body_format", "status", "published_at"):
                if name in fields:
                    setattr(article, name, getattr(patch, name))
            if "status" in fields and "published_at" not in fields and article.published_at is None:
                article.published_at = _now_if_published(article.status, locked.now)
            for kind in REFERENCED:
                if kind.name in asked:
                    _refer(article, kind.name, found[kind.name], patch, moved=kind.name in moved)
            if LINKED.plural in fields:
                article.tags = linked
            article.updated_at = locked.now
            await s.flush()
            return written_article_document(article, found, linked, locked.comment_count)

    async def delete_article(self, slug: str) -> None:
        """Delete the article at ``slug`` with its comments.

        Raises:
            NotFoundError: no article has that slug.
        """
        async with self._unit_of_work() as s:
            locked = await repo.article_for_update(s, slug)
            if locked is None:
                raise NotFoundError(f"no article {slug!r}")
            await s.delete(locked.article)

    # Comments -------------------------------------------------------------------------------

    async def create_comment(self, slug: str, data: CommentCreate) -> dict[str, Any]:
        """Add a comment to the visible article at ``slug`` and return it.

        Raises:
            NotFoundError: no visible article has that slug.
            ConflictError: ``parent_id`` is not a comment of that article.
        """
        async with self._unit_of_work() as s:
            article_id = await repo.article_id_of_visible(s, slug)
            if article_id is None:
                raise NotFoundError(f"no article {slug!r}")
            if data.parent_id is not None:
                parent = await repo.comment_by_id(s, data.parent_id)
                if parent is None or parent.article_id != article_id:
                    raise ConflictError(
                        f"parent_id {data.parent_id} is not a comment of this article",
                        member="parent_id",
                    )
            comment = Comment(article_id=article_id, **data.model_dump())
            s.add(comment)
            await s.flush()
            await s.refresh(comment)
            return comment_document(comment)

    async def delete_comment(self, comment_id: int) -> None:
        """Delete a comment and its replies.

        Raises:
            NotFoundError: no comment has that id.
        """
        async with self._unit_of_work() as s:
            comment = await repo.comment_by_id(s, comment_id)
            if comment is None:
                raise NotFoundError(f"no comment {comment_id}")
            await s.delete(comment)


# The rules of the references an article write names -------------------------------------------
#
# A body that names a row that does not exist conflicts with the current data, as a foreign key
# that a concurrent delete broke does (see service.problems): a 409, and the same request
# succeeds once the row exists.


def _existing(found: repo.Reference | None, kind: str, key: str | None) -> repo.Reference | None:
    """Return ``found``; None when no key was given. Raises ConflictError for a dangling key."""
    if key is None:
        return None
    if found is None:
        raise ConflictError(f"{kind} {key!r} does not exist", member=kind)
    return found


def _asked_references(patch: ArticlePatch, fields: set[str], found: Found) -> dict[str, str | None]:
    """The referenced kinds a patch changes, with the key of each (None to clear it).

    A null position of a kind with positions asks for the current entity again, to learn
    the position after its last article.
    """
    asked: dict[str, str | None] = {}
    for kind in REFERENCED:
        if kind.name in fields:
            asked[kind.name] = getattr(patch, kind.name)
        elif kind.position_column in fields and found[kind.name] is not None:
            current = found[kind.name]
            assert current is not None
            asked[kind.name] = current.values[kind.key]
    return asked


def _keys_of(found: Found) -> dict[str, str | None]:
    """The key of each referenced entity, by kind name."""
    return {
        kind.name: None if (ref := found[kind.name]) is None else ref.values[kind.key]
        for kind in REFERENCED
    }


def _check_positions(data: ArticleCreate | ArticlePatch, keys: Mapping[str, str | None]) -> None:
    """Refuse a position for a kind the article will not refer to."""
    for kind in REFERENCED:
        column = kind.position_column
        if column and getattr(data, column) is not None and keys.get(kind.name) is None:
            raise InvalidInputError(f"{column} needs a {kind.name}", member=column)


def _refer(
    article: Article,
    kind_name: str,
    found: repo.Reference | None,
    data: ArticleCreate | ArticlePatch,
    *,
    moved: bool,
) -> None:
    """Point the article at ``found`` (or at nothing), and place it in it when it has positions.

    The position is the one ``data`` gives; else the end of the entity's articles when the
    article ``moved`` to it or its position was set to null; else it stays.
    """
    kind = BY_NAME[kind_name]
    setattr(article, kind.article_column or "", None if found is None else found.id)
    column = kind.position_column
    if not column:
        return
    given: int | None = getattr(data, column)
    if found is None:
        setattr(article, column, None)
    elif given is not None:
        setattr(article, column, given)
    elif moved or column in data.model_fields_set:
        setattr(article, column, found.next_position)


def _all_linked(found: list[Tag], keys: list[str]) -> list[Tag]:
    missing = sorted(set(keys) - {getattr(t, LINKED.key) for t in found})
    if missing:
        raise ConflictError(f"unknown {LINKED.plural}: {', '.join(missing)}", member="tags")
    return found


def _now_if_published(status: str, now: datetime) -> datetime | None:
    return now if status == "published" else None
