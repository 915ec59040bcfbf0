"""The public reads, each through the cache: a hit never opens a database session.

Each method builds its key from validated input, and gives the cache a loader that runs one
statement on a miss and names the tags the answer depends on (see :mod:`service.keyspaces`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cache import Loaded, Lookup, ReadThroughCache
from service import repository as repo
from service.documents import (
    article_document,
    author_document,
    category_document,
    comment_threads,
    dumps,
    page_document,
    summary_document,
    tag_document,
)
from service.errors import NotFoundError
from service.keyspaces import (
    ARTICLES,
    AUTHOR,
    AUTHORS,
    CATEGORIES,
    CATEGORY,
    TAG,
    TAGS,
    ContentKeys,
    article_tag,
    embedded_tags,
    entity_tag,
    listed_tags,
)
from service.models import Author, Category, Tag
from service.schemas import ArticleListParams, PageParams

#: kind to (model, renderer, list namespace and tag)
_ENTITIES: dict[str, tuple[Any, Callable[[Any], dict[str, Any]], str]] = {
    AUTHOR: (Author, author_document, AUTHORS),
    CATEGORY: (Category, category_document, CATEGORIES),
    TAG: (Tag, tag_document, TAGS),
}


class ContentReader:
    """Reads the content through the cache. Safe to share between tasks.

    Args:
        sessions: makes the sessions that loaders read in (autocommit: one statement each).
        cache: the read-through cache.
        keys: the content namespaces.
    """

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], cache: ReadThroughCache, keys: ContentKeys
    ) -> None:
        self._sessions = sessions
        self._cache = cache
        self._keys = keys

    async def _read(self, fn: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
        async with self._sessions() as session:
            return await fn(session)

    async def article(self, slug: str) -> Lookup:
        """Return the visible article at ``slug``.

        Raises:
            NotFoundError: no visible article has that slug (not cached).
        """

        async def load() -> Loaded:
            row = await self._read(lambda s: repo.article_by_slug(s, slug))
            if row is None:
                raise NotFoundError(f"no article {slug!r}")
            return Loaded(dumps(article_document(row)), [article_tag(row.id), *embedded_tags(row)])

        return await self._cache.get_or_load(self._keys.article.key(slug), load)

    async def comments(self, slug: str) -> Lookup:
        """Return the comment threads of the visible article at ``slug``.

        Raises:
            NotFoundError: no visible article has that slug.
        """

        async def load() -> Loaded:
            found = await self._read(lambda s: repo.comments_of(s, slug))
            if found is None:
                raise NotFoundError(f"no article {slug!r}")
            article_id, comments = found
            return Loaded(dumps(comment_threads(comments)), [article_tag(article_id)])

        return await self._cache.get_or_load(self._keys.comments.key(slug), load)

    async def articles(self, params: ArticleListParams) -> Lookup:
        """Return a page of visible article summaries.

        Raises:
            NotFoundError: ``author``, ``category`` or ``tag`` names nothing.
        """
        values = params.model_dump()
        query = repo.ArticleFilter(**values)

        async def load() -> Loaded:
            page = await self._read(lambda s: repo.article_page(s, query))
            tags = {ARTICLES}
            for kind, entity_id in page.filter_ids.items():
                if entity_id is None:
                    raise NotFoundError(f"no {kind} {getattr(query, kind)!r}")
                tags.add(entity_tag(kind, entity_id))
            for row in page.rows:
                tags.update(embedded_tags(row))
            items = [summary_document(r) for r in page.rows]
            body = dumps(page_document(items, query.page, query.per_page, page.total))
            return Loaded(body, tags)

        return await self._cache.get_or_load(self._keys.articles.key_for_params(values), load)

    async def entity(self, kind: str, key: str) -> Lookup:
        """Return one author (``kind`` "author", by username), category or tag (by slug).

        Raises:
            NotFoundError: nothing has that key.
        """
        entity, render, _ = _ENTITIES[kind]

        async def load() -> Loaded:
            row = await self._read(lambda s: repo.entity_by_key(s, entity, key))
            if row is None:
                raise NotFoundError(f"no {kind} {key!r}")
            return Loaded(dumps(render(row)), listed_tags(kind, row.id))

        namespace = getattr(self._keys, kind)
        return await self._cache.get_or_load(namespace.key(key), load)

    async def entities(self, kind: str, params: PageParams) -> Lookup:
        """Return a page of authors (``kind`` "author"), categories or tags."""
        entity, render, list_tag = _ENTITIES[kind]

        async def load() -> Loaded:
            page = await self._read(
                lambda s: repo.entity_page(s, entity, params.page, params.per_page)
            )
            tags = {list_tag}
            for row in page.rows:
                tags.update(listed_tags(kind, row.id))
            items = [render(r) for r in page.rows]
            return Loaded(
                dumps(page_document(items, params.page, params.per_page, page.total)), tags
            )

        namespace = getattr(self._keys, list_tag)
        return await self._cache.get_or_load(namespace.key_for_params(params.model_dump()), load)
