"""The writes: each one unit of work, committed at its end, then invalidated before it answers.

The tags to invalidate are collected from the session's flushes by
:class:`cache.SessionTagCollector` (see :func:`service.keyspaces.tags_for_change`); this module
never names a cache key or tag.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from slugify import slugify
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cache import (
    BreakerState,
    CacheUnavailableError,
    CircuitBreaker,
    Invalidator,
    SessionTagCollector,
    etag_for,
)
from service import repository as repo
from service.documents import (
    ENTITY_DOCUMENTS,
    article_document,
    comment_document,
    dumps,
)
from service.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PreconditionFailedError,
)
from service.models import Article, Author, Category, Comment, Tag
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
)

logger = logging.getLogger(__name__)


def if_match_holds(header: str, etag: str) -> bool:
    """Return whether an ``If-Match`` header admits the representation tagged ``etag``."""
    candidates = [c.strip() for c in header.split(",")]
    return "*" in candidates or etag in candidates


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

        Raises:
            InvalidInputError: the author, category or a tag does not exist, or no slug can be
                derived from the title.
            ConflictError: the slug is taken.
        """
        slug = data.slug or slugify(data.title, max_length=200, word_boundary=True)
        if not slug:
            raise InvalidInputError("no slug can be derived from the title; give one")
        async with self.unit_of_work() as s:
            if await repo.slug_taken(s, slug):
                raise ConflictError(f"the slug {slug!r} is taken", slug=slug)
            article = Article(
                slug=slug,
                title=data.title,
                summary=data.summary,
                body=data.body,
                body_format=data.body_format,
                status=data.status,
                published_at=data.published_at or _now_if_published(data.status),
                author_id=(await self._existing(s, Author, data.author)).id,
                category_id=await self._category_id(s, data.category),
            )
            article.tags = await self._tags(s, data.tags)
            s.add(article)
            await s.flush()
            return await self._article_document(s, slug)

    async def patch_article(
        self, slug: str, patch: ArticlePatch, if_match: str | None
    ) -> dict[str, Any]:
        """Apply a JSON merge patch to the article at ``slug`` and return its representation.

        Raises:
            NotFoundError: no article has that slug (of any status).
            PreconditionFailedError: ``if_match`` does not match its current ETag.
            InvalidInputError: a member is null that may not be, or names nothing.
            ConflictError: the new slug is taken.
        """
        fields = patch.model_fields_set
        for name in fields - NULLABLE_ARTICLE_FIELDS:
            if getattr(patch, name) is None:
                raise InvalidInputError(f"{name} may not be null", member=name)
        async with self.unit_of_work() as s:
            article = await repo.article_for_update(s, slug)
            if article is None:
                raise NotFoundError(f"no article {slug!r}")
            if if_match is not None:
                current = etag_for(dumps(await self._article_document(s, slug)))
                if not if_match_holds(if_match, current):
                    raise PreconditionFailedError("the article changed since that ETag")
            if "slug" in fields and patch.slug != slug:
                if await repo.slug_taken(s, patch.slug or ""):
                    raise ConflictError(f"the slug {patch.slug!r} is taken", slug=patch.slug)
                article.slug = patch.slug or slug
            for name in ("title", "summary", "body", "body_format", "status", "published_at"):
                if name in fields:
                    setattr(article, name, getattr(patch, name))
            if "status" in fields and "published_at" not in fields and article.published_at is None:
                article.published_at = _now_if_published(article.status)
            if "author" in fields:
                article.author_id = (await self._existing(s, Author, patch.author or "")).id
            if "category" in fields:
                article.category_id = await self._category_id(s, patch.category)
            if "tags" in fields:
                article.tags = await self._tags(s, patch.tags or [])
            article.updated_at = func.now()
            await s.flush()
            return await self._article_document(s, article.slug)

    async def delete_article(self, slug: str) -> None:
        """Delete the article at ``slug`` with its comments.

        Raises:
            NotFoundError: no article has that slug.
        """
        async with self.unit_of_work() as s:
            article = await repo.article_for_update(s, slug)
            if article is None:
                raise NotFoundError(f"no article {slug!r}")
            await s.delete(article)

    # Comments -------------------------------------------------------------------------------

    async def create_comment(self, slug: str, data: CommentCreate) -> dict[str, Any]:
        """Add a comment to the visible article at ``slug`` and return it.

        Raises:
            NotFoundError: no visible article has that slug.
            InvalidInputError: ``parent_id`` is not a comment of that article.
        """
        async with self.unit_of_work() as s:
            article_id = await repo.article_id_of_visible(s, slug)
            if article_id is None:
                raise NotFoundError(f"no article {slug!r}")
            if data.parent_id is not None:
                parent = await repo.comment_by_id(s, data.parent_id)
                if parent is None or parent.article_id != article_id:
                    raise InvalidInputError(
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
            values["slug"] = slugify(values["name"], max_length=200, word_boundary=True)
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

    async def _existing(self, s: AsyncSession, entity: Any, key: str) -> Any:
        row = await repo.find_one(s, entity, key)
        if row is None:
            name = entity.__name__.lower()
            raise InvalidInputError(f"{name} {key!r} does not exist", member=name)
        return row

    async def _category_id(self, s: AsyncSession, slug: str | None) -> int | None:
        return None if slug is None else (await self._existing(s, Category, slug)).id

    async def _tags(self, s: AsyncSession, slugs: list[str]) -> list[Tag]:
        wanted = sorted(set(slugs))
        found = await repo.tags_by_slugs(s, wanted)
        missing = sorted(set(wanted) - {t.slug for t in found})
        if missing:
            raise InvalidInputError(f"unknown tags: {', '.join(missing)}", member="tags")
        return found

    async def _article_document(self, s: AsyncSession, slug: str) -> dict[str, Any]:
        row = await repo.article_by_slug(repo.SessionReads(s), slug, only_visible=False)
        assert row is not None  # read in the transaction that wrote or locked it
        return article_document(row)

    async def _entity_document(self, s: AsyncSession, entity: Any, key: str) -> dict[str, Any]:
        row = await repo.entity_by_key(repo.SessionReads(s), entity, key)
        assert row is not None  # read in the transaction that wrote it
        return ENTITY_DOCUMENTS[entity](row)


def _now_if_published(status: str) -> Any:
    # The database's clock, the one that visibility is judged by.
    return func.now() if status == "published" else None
