"""The writes: each one unit of work, committed at its end, then invalidated before it answers.

The tags to invalidate are collected from the session's flushes by
:class:`cache.SessionTagCollector` (see :func:`service.keyspaces.tags_for_change`); this module
never names a cache key or tag.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cache import (
    BreakerState,
    CacheUnavailableError,
    CircuitBreaker,
    Invalidator,
    SessionTagCollector,
    coded_etags,
    etag_for,
)
from service import repository as repo
from service.documents import (
    ENTITY_DOCUMENTS,
    comment_document,
    dumps,
    written_article_document,
)
from service.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PreconditionFailedError,
)
from service.models import Article, Author, Comment, Tag
from service.schemas import (
    NULLABLE_ARTICLE_FIELDS,
    ArticleCreate,
    ArticlePatch,
    AuthorCreate,
    AuthorPatch,
    CategoryCreate,
    CategoryPatch,
    CommentCreate,
    TagCreate,
    TagPatch,
    derive_slug,
)
from service.statements import SessionReads

logger = logging.getLogger(__name__)


def if_match_holds(header: str, etag: str) -> bool:
    """Return whether an ``If-Match`` header admits the representation tagged ``etag``.

    The ETag of any stored content coding of it (:func:`cache.coded_etags`) is admitted too: a
    client that read the gzip or brotli bytes holds that one, for the same content.
    """
    candidates = {c.strip() for c in header.split(",")}
    return "*" in candidates or not candidates.isdisjoint((etag, *coded_etags(etag)))


class ContentWriter:
    """Writes the content and invalidates what each write made wrong. Safe to share.

    Each write's triggers also record it in the invalidation outbox (see
    :mod:`service.outbox`); the invalidation here is the fast path that makes the write's
    answer safe to read at once, and the outbox is its backstop.

    Args:
        sessions: makes the write sessions; its session class must have the collector installed.
        invalidator: applies the collected tags after each commit.
        redis_breaker: skipped while open; tripped when an invalidation fails.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        invalidator: Invalidator,
        redis_breaker: CircuitBreaker | None = None,
    ) -> None:
        self._sessions = sessions
        self._invalidator = invalidator
        self._breaker = redis_breaker
        self.invalidation_failures = 0

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """Yield a session in a transaction; commit at the end, then invalidate.

        Nothing is invalidated when the block raises (the transaction rolls back).
        """
        async with self._sessions() as session:
            async with session.begin():
                yield session
            tags = SessionTagCollector.take(session.sync_session)
        await self._invalidate(tags)

    async def _invalidate(self, tags: frozenset[str]) -> None:
        # Checked after the commit: while the breaker is open nothing is served from Redis, and
        # its recovery applies the outbox (where the triggers recorded this write) first.
        if self._breaker is not None and self._breaker.state is BreakerState.OPEN:
            return
        try:
            await self._invalidator.invalidate_tags(tags)
            return
        except CacheUnavailableError as exc:
            # Not retried: the write waits at most one Redis timeout, and the outbox holds it.
            logger.error("invalidation of %d tags failed: %r", len(tags), exc)
        self.invalidation_failures += 1
        # Redis may now hold what this write replaced: serve nothing from it until the
        # outbox has been applied.
        if self._breaker is not None:
            self._breaker.trip()

    # Articles -------------------------------------------------------------------------------

    async def create_article(self, data: ArticleCreate) -> dict[str, Any]:
        """Create an article and return its representation.

        Five round trips to PostgreSQL: the references (slug, author, category, tags and the
        clock) in one statement, the article's and its tag links' inserts, and the ``BEGIN``
        and ``COMMIT``; the answer is built from what the write holds.

        Raises:
            ConflictError: the slug is taken, or the author, category or a tag does not exist.
            InvalidInputError: no slug can be derived from the title.
        """
        slug = data.slug or derive_slug(data.title)
        if not slug:
            raise InvalidInputError("no slug can be derived from the title; give one")
        async with self.unit_of_work() as s:
            refs = await repo.references(
                s, slug=slug, author=data.author, category=data.category, tags=data.tags
            )
            if refs.slug_taken:
                raise ConflictError(f"the slug {slug!r} is taken", slug=slug)
            author = _existing(refs.author, "author", data.author)
            category = _optional(refs.category, data.category)
            tags = _all_tags(refs.tags, data.tags)
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
                author_id=author.id,
                category_id=None if category is None else category.id,
                created_at=refs.now,
                updated_at=refs.now,
            )
            article.tags = tags
            s.add(article)
            await s.flush()
            return written_article_document(article, author, category, tags, 0)

    async def patch_article(
        self, slug: str, patch: ArticlePatch, if_match: str | None
    ) -> dict[str, Any]:
        """Apply a JSON merge patch to the article at ``slug`` and return its representation.

        The article is locked and read with its author, category, tags and comment count in
        one statement; the references a patch names in one more; all its changes go out in
        one ``UPDATE`` (and the tag links' changes); the answer is built from what the write
        holds.

        Raises:
            NotFoundError: no article has that slug (of any status).
            PreconditionFailedError: ``if_match`` does not match its current ETag.
            InvalidInputError: a member is null that may not be.
            ConflictError: the new slug is taken, or the author, category or a tag it names
                does not exist.
        """
        fields = patch.model_fields_set
        for name in fields - NULLABLE_ARTICLE_FIELDS:
            if getattr(patch, name) is None:
                raise InvalidInputError(f"{name} may not be null", member=name)
        async with self.unit_of_work() as s:
            locked = await repo.article_for_update(s, slug)
            if locked is None:
                raise NotFoundError(f"no article {slug!r}")
            article, author, category = locked.article, locked.author, locked.category
            tags = list(article.tags)
            if if_match is not None:
                current = written_article_document(
                    article, author, category, tags, locked.comment_count
                )
                if not if_match_holds(if_match, etag_for(dumps(current))):
                    raise PreconditionFailedError("the article changed since that ETag")
            new_slug = patch.slug if "slug" in fields and patch.slug != slug else None
            named = {"author", "category", "tags"} & fields
            # Looked up before any attribute changes, so that no autoflush splits the UPDATE.
            if new_slug is not None or named:
                refs = await repo.references(
                    s,
                    slug=new_slug,
                    author=patch.author if "author" in fields else None,
                    category=patch.category if "category" in fields else None,
                    tags=patch.tags or [] if "tags" in fields else [],
                )
                if new_slug is not None and refs.slug_taken:
                    raise ConflictError(f"the slug {new_slug!r} is taken", slug=new_slug)
                if "author" in fields:
                    author = _existing(refs.author, "author", patch.author or "")
                if "category" in fields:
                    category = _optional(refs.category, patch.category)
                if "tags" in fields:
                    tags = _all_tags(refs.tags, patch.tags or [])
            if new_slug is not None:
                article.slug = new_slug
            for name in ("title", "summary", "body", "body_format", "status", "published_at"):
                if name in fields:
                    setattr(article, name, getattr(patch, name))
            if "status" in fields and "published_at" not in fields and article.published_at is None:
                article.published_at = _now_if_published(article.status, locked.now)
            if "author" in fields:
                article.author_id = author.id
            if "category" in fields:
                article.category_id = None if category is None else category.id
            if "tags" in fields:
                article.tags = tags
            article.updated_at = locked.now
            await s.flush()
            return written_article_document(article, author, category, tags, locked.comment_count)

    async def delete_article(self, slug: str) -> None:
        """Delete the article at ``slug`` with its comments.

        Raises:
            NotFoundError: no article has that slug.
        """
        async with self.unit_of_work() as s:
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
        async with self.unit_of_work() as s:
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
        async with self.unit_of_work() as s:
            comment = await repo.comment_by_id(s, comment_id)
            if comment is None:
                raise NotFoundError(f"no comment {comment_id}")
            await s.delete(comment)

    # Authors, categories, tags --------------------------------------------------------------

    async def create_entity(
        self, entity: Any, data: AuthorCreate | CategoryCreate | TagCreate
    ) -> dict[str, Any]:
        """Create an author, category or tag and return its representation.

        Raises:
            ConflictError: the username or slug is taken.
            InvalidInputError: no slug can be derived from the name.
        """
        values = data.model_dump()
        if entity is not Author and not values.get("slug"):
            values["slug"] = derive_slug(values["name"])
            if not values["slug"]:
                raise InvalidInputError("no slug can be derived from the name; give one")
        key = values[entity.key_name]
        async with self.unit_of_work() as s:
            if await repo.find_one(s, entity, key) is not None:
                raise ConflictError(f"{key!r} is taken")
            s.add(entity(**values))
            await s.flush()
            return await self._entity_document(s, entity, key)

    async def patch_entity(
        self, entity: Any, key: str, patch: AuthorPatch | CategoryPatch | TagPatch
    ) -> dict[str, Any]:
        """Apply a merge patch to an author, category or tag and return its representation.

        Raises:
            NotFoundError: nothing has that key.
            InvalidInputError: a member is null.
            ConflictError: the new username or slug is taken.
        """
        fields = patch.model_fields_set
        for name in fields:
            if getattr(patch, name) is None:
                raise InvalidInputError(f"{name} may not be null", member=name)
        key_attr = entity.key_name
        async with self.unit_of_work() as s:
            row = await repo.find_one(s, entity, key, lock=True)
            if row is None:
                raise NotFoundError(f"no {entity.__name__.lower()} {key!r}")
            new_key = getattr(patch, key_attr) if key_attr in fields else key
            if new_key != key and await repo.find_one(s, entity, new_key) is not None:
                raise ConflictError(f"{new_key!r} is taken")
            for name in fields:
                setattr(row, name, getattr(patch, name))
            await s.flush()
            return await self._entity_document(s, entity, new_key)

    async def delete_entity(self, entity: Any, key: str) -> None:
        """Delete an author (only one with no articles), a category or a tag.

        Raises:
            NotFoundError: nothing has that key.
            ConflictError: the author still has articles.
        """
        async with self.unit_of_work() as s:
            row = await repo.find_one(s, entity, key, lock=True)
            if row is None:
                raise NotFoundError(f"no {entity.__name__.lower()} {key!r}")
            if entity is Author and await repo.has_articles(s, row.id):
                raise ConflictError(f"author {key!r} still has articles")
            await s.delete(row)

    # Lookups of referenced rows -------------------------------------------------------------

    async def _entity_document(self, s: AsyncSession, entity: Any, key: str) -> dict[str, Any]:
        row = await repo.entity_by_key(SessionReads(s), entity, key)
        assert row is not None  # read in the transaction that wrote it
        return ENTITY_DOCUMENTS[entity](row)


# Checks of the references an article write names -----------------------------------------------
#
# A body that names a row that does not exist conflicts with the current data, as a foreign key
# that a concurrent delete broke does (see service.problems): a 409, and the same request
# succeeds once the row exists.


def _existing(found: repo.Named | None, kind: str, key: str) -> repo.Named:
    if found is None:
        raise ConflictError(f"{kind} {key!r} does not exist", member=kind)
    return found


def _optional(found: repo.Named | None, slug: str | None) -> repo.Named | None:
    return None if slug is None else _existing(found, "category", slug)


def _all_tags(found: list[Tag], slugs: list[str]) -> list[Tag]:
    missing = sorted(set(slugs) - {t.slug for t in found})
    if missing:
        raise ConflictError(f"unknown tags: {', '.join(missing)}", member="tags")
    return found


def _now_if_published(status: str, now: datetime) -> datetime | None:
    return now if status == "published" else None
