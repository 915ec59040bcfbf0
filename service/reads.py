"""The public reads, each through the cache: a hit never opens a database session.

Each method builds its key from validated input, and gives the cache a loader that runs one
statement on a miss and names the tags the answer depends on (see :mod:`service.keyspaces`).
A load's statement runs on the pooled connection's asyncpg connection, compiled once (see
:class:`service.statements.DriverReads`); its rows are rendered to bytes with no ORM object
or SQLAlchemy ``Row`` in between. With read replicas, a load runs on a replica that has
replayed every write invalidated before the load's lease, else on the primary (see
:mod:`service.replicas`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from cache import (
    CacheKey,
    CircuitBreaker,
    Loaded,
    Loader,
    Lookup,
    Pacer,
    PendingHit,
    ReadThroughCache,
)
from service import repository as repo
from service.documents import (
    article_document,
    comment_threads,
    dumps,
    entity_document,
    page_document,
    summary_document,
)
from service.errors import NotFoundError, UnavailableError, is_unreachable
from service.keyspaces import (
    ARTICLE,
    ARTICLES,
    ContentKeys,
    absent_tag,
    article_tag,
    embedded_tags,
    entity_tag,
    listed_tags,
)
from service.kinds import BY_NAME
from service.pages import RANK, TEXT, TIME, decode_cursor, encode_cursor, query_digest
from service.problems import error_bytes
from service.replicas import ReplicaSet
from service.schemas import ArticleListParams, PageParams
from service.statements import DriverReads, Reads, Row

#: The kind of cursor value of each row column an order is keyed on.
_KEY_KINDS = {
    "published_at": TIME,
    "updated_at": TIME,
    "title": TEXT,
    "rank": RANK,
}


def _next_cursor(page: repo.Page, digest: str, column: str) -> str | None:
    """Return the cursor of the page's last row when more rows follow it, else None."""
    if not page.more or not page.rows:
        return None
    last = page.rows[-1]
    return encode_cursor(digest, [last[column]], last["id"])


#: Rows rendered between two pauses of a paced load.
_RENDER_CHUNK = 8


def _article_loaded(row: Row) -> Loaded:
    tags = [article_tag(row["id"]), *embedded_tags(row)]
    return Loaded(dumps(article_document(row)), tags)


def _timestamp(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


T = TypeVar("T")


class ContentReader:
    """Reads the content through the cache. Safe to share between tasks.

    Args:
        engine: the engine whose pool loads read on (each load is one statement, outside any
            transaction).
        cache: the read-through cache.
        keys: the content namespaces.
        negative_ttl_seconds: how long a 404 is cached, in seconds.
        database_breaker: stops loads from trying an unreachable primary; None for none.
        replicas: the replicas loads may run on instead of ``engine`` (which counts the loads
            that ran on it); None for none.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        cache: ReadThroughCache,
        keys: ContentKeys,
        *,
        negative_ttl_seconds: float = 5.0,
        database_breaker: CircuitBreaker | None = None,
        replicas: ReplicaSet | None = None,
    ) -> None:
        self._reads = DriverReads(engine)
        self._cache = cache
        self._keys = keys
        self._negative_ttl = negative_ttl_seconds
        self._breaker = database_breaker
        self._replicas = replicas

    async def _read(self, fn: Callable[[Reads], Awaitable[T]]) -> T:
        """Run ``fn`` on a replica that may serve the running load, else on the primary.

        Raises:
            UnavailableError: the primary is unreachable (or its breaker is open), and no
                replica served.
            sqlalchemy.exc.TimeoutError: no connection came free in the pool's timeout.
            sqlalchemy.exc.DBAPIError: the statement failed on a reachable server (a bad
                input, a statement timeout): not counted by the breaker.
        """
        replicas = self._replicas
        if replicas is None:
            return await self._read_primary(fn)
        return await replicas.read(fn, lambda: self._read_primary(fn))

    async def _read_primary(self, fn: Callable[[Reads], Awaitable[T]]) -> T:
        """Run ``fn`` on the primary; raises as :meth:`_read`."""
        breaker = self._breaker
        if breaker is not None and not breaker.allows():
            raise UnavailableError("the database is unavailable")
        try:
            result = await fn(self._reads)
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            if breaker is not None:
                breaker.record_failure()
            raise UnavailableError("the database is unavailable") from exc
        if breaker is not None and breaker.failures:
            breaker.record_success()
        return result

    def _absent(
        self, kind: str, key: str, detail: str, expires_at: datetime | None = None
    ) -> Loaded:
        """A cached 404, invalidated by whatever may make ``key`` of ``kind`` exist."""
        return Loaded(
            error_bytes(NotFoundError(detail)),
            [absent_tag(kind, key)],
            status=404,
            ttl_seconds=self._negative_ttl,
            expires_at=_timestamp(expires_at),
        )

    def _absent_article(self, slug: str, scheduled: Row | None) -> Loaded:
        """The cached 404 of ``slug``; of a ``scheduled`` row, until its ``published_at``."""
        moment = None if scheduled is None else scheduled["published_at"]
        return self._absent(ARTICLE, slug, f"no article {slug!r}", moment)

    async def article(self, slug: str, *, after: PendingHit[Any] | None = None) -> Lookup:
        """Return the visible article at ``slug``; a 404 lookup when none is (cached briefly).

        A scheduled article's 404 lives no longer than its ``published_at``. ``after``: the
        :meth:`article_hit` of this read that was no hit (its Redis read is taken, see
        :meth:`cache.ReadThroughCache.get_or_load`).
        """
        return await self._cache.get_or_load(*self.article_load(slug), after=after)

    def article_hit(self, slug: str) -> Lookup | PendingHit[Lookup] | None:
        """Return the visible article at ``slug`` if it is a hit, without a task.

        Args:
            slug: the article's slug (a valid path key).

        Returns:
            See :meth:`cache.ReadThroughCache.get_hit`: the hit now (from the near cache),
            once Redis answers (a :class:`cache.PendingHit`), or None; where there is no hit,
            :meth:`article` answers.
        """
        return self._cache.get_hit(*self.article_load(slug))

    def article_load(self, slug: str) -> tuple[CacheKey, Loader]:
        """Return the key and the loader of the article at ``slug`` (see :meth:`article`)."""

        async def load() -> Loaded:
            row = await self._read(lambda s: repo.article_by_slug(s, slug))
            if row is None or not row["visible"]:
                return self._absent_article(slug, row)
            return _article_loaded(row)

        return self._keys.article.key(slug), load

    def article_key(self, slug: str) -> CacheKey:
        """Return the key of the article at ``slug``."""
        return self._keys.article.key(slug)

    async def recent_slugs(self, limit: int) -> list[str]:
        """Return the slugs of the ``limit`` newest visible articles, newest first.

        Raises:
            UnavailableError: the database is unreachable.
        """
        return await self._read(lambda s: repo.recent_article_slugs(s, limit))

    async def load_articles(
        self, slugs: Sequence[str], pacer: Pacer | None = None
    ) -> dict[str, Loaded]:
        """Load the visible articles among ``slugs`` with one statement, by slug.

        Slugs of no visible article are left out (the warming path stores no absence). With
        ``pacer``, rendering pauses every few rows so that reads keep the event loop.

        Raises:
            UnavailableError: the database is unreachable.
        """
        rows = await self._read(lambda s: repo.articles_by_slugs(s, slugs))
        loaded: dict[str, Loaded] = {}
        for i, row in enumerate(rows):
            if pacer is not None and i and not i % _RENDER_CHUNK:
                await pacer.pause()
            if row["visible"]:
                loaded[row["slug"]] = _article_loaded(row)
        return loaded

    async def comments(self, slug: str) -> Lookup:
        """Return the comment threads of the visible article at ``slug``; else a 404 lookup."""
        return await self._cache.get_or_load(*self.comments_load(slug))

    def comments_load(self, slug: str) -> tuple[CacheKey, Loader]:
        """Return the key and the loader of :meth:`comments`."""

        async def load() -> Loaded:
            row = await self._read(lambda s: repo.comments_of(s, slug))
            if row is None or not row["visible"]:
                return self._absent_article(slug, row)
            return Loaded(dumps(comment_threads(row["comments"])), [article_tag(row["id"])])

        return self._keys.comments.key(slug), load

    async def articles(self, params: ArticleListParams) -> Lookup:
        """Return a page of visible article summaries.

        A 404 lookup when ``author``, ``category`` or ``tag`` names nothing. The page lives no
        longer than the next scheduled publication. With ``cursor``, the page that follows the
        cursor's row (keyset; ``page`` is null in the answer).

        Raises:
            InvalidInputError: the cursor is malformed or belongs to another query.
        """
        return await self._cache.get_or_load(*self.articles_load(params))

    def articles_load(self, params: ArticleListParams) -> tuple[CacheKey, Loader]:
        """Return the key and the loader of :meth:`articles`.

        Raises:
            InvalidInputError: the cursor is malformed or belongs to another query.
        """
        values = params.model_dump()
        cursor = values.pop("cursor")
        digest = query_digest(ARTICLES, values)
        column = repo.KEYSET[params.sort if params.sort or params.q else "-published_at"][0]
        after = None
        if cursor is not None:
            after = decode_cursor(cursor, digest, [_KEY_KINDS[column]])
            values["page"] = None
        query = repo.ArticleFilter(**{**values, "page": params.page}, after=after)

        async def load() -> Loaded:
            page = await self._read(lambda s: repo.article_page(s, query))
            tags = {ARTICLES}
            for kind, entity_id in page.filter_ids.items():
                if entity_id is None:
                    name = getattr(query, kind)
                    return self._absent(kind, name, f"no {kind} {name!r}")
                tags.add(entity_tag(kind, entity_id))
            for row in page.rows:
                tags.update(embedded_tags(row))
            items = [summary_document(r) for r in page.rows]
            number = None if after is not None else query.page
            body = dumps(
                page_document(
                    items, number, query.per_page, page.total, _next_cursor(page, digest, column)
                )
            )
            return Loaded(body, tags, expires_at=_timestamp(page.next_publication))

        return self._keys.articles.key_for_params({**values, "cursor": cursor}), load

    async def entity(self, kind: str, key: str) -> Lookup:
        """Return one entity of ``kind`` (an entity kind's name) by its key.

        A 404 lookup when nothing has that key. Its ``article_count`` lives no longer than the
        next scheduled publication.
        """
        return await self._cache.get_or_load(*self.entity_load(kind, key))

    def entity_load(self, kind: str, key: str) -> tuple[CacheKey, Loader]:
        """Return the key and the loader of :meth:`entity`.

        Raises:
            KeyError: ``kind`` names no entity kind.
        """
        entity_kind = BY_NAME[kind]

        async def load() -> Loaded:
            row = await self._read(lambda s: repo.entity_by_key(s, entity_kind, key))
            if row is None:
                return self._absent(kind, key, f"no {kind} {key!r}")
            tags = list(listed_tags(kind, row["id"]))
            if entity_kind.position_column:
                tags.extend(article_tag(a["id"]) for a in row["articles"])
            return Loaded(
                dumps(entity_document(entity_kind, row, item=True)),
                tags,
                expires_at=_timestamp(row["next_publication"]),
            )

        return self._keys.items[kind].key(key), load

    async def entities(self, kind: str, params: PageParams) -> Lookup:
        """Return a page of the entities of ``kind`` (an entity kind's name), by key.

        The page lives no longer than the next scheduled publication. With ``cursor``, the page
        that follows the cursor's row (keyset; ``page`` is null in the answer).

        Raises:
            InvalidInputError: the cursor is malformed or belongs to another query.
        """
        return await self._cache.get_or_load(*self.entities_load(kind, params))

    def entities_load(self, kind: str, params: PageParams) -> tuple[CacheKey, Loader]:
        """Return the key and the loader of :meth:`entities`.

        Raises:
            InvalidInputError: the cursor is malformed or belongs to another query.
            KeyError: ``kind`` names no entity kind.
        """
        entity_kind = BY_NAME[kind]
        list_tag = entity_kind.list_namespace
        values = params.model_dump()
        digest = query_digest(list_tag, values)
        column = entity_kind.key
        after = None
        if params.cursor is not None:
            after = decode_cursor(params.cursor, digest, [TEXT])
            values["page"] = None

        async def load() -> Loaded:
            page = await self._read(
                lambda s: repo.entity_page(s, entity_kind, params.page, params.per_page, after)
            )
            tags = {list_tag}
            for row in page.rows:
                tags.update(listed_tags(kind, row["id"]))
            items = [entity_document(entity_kind, r) for r in page.rows]
            number = None if after is not None else params.page
            next_cursor = _next_cursor(page, digest, column)
            body = dumps(page_document(items, number, params.per_page, page.total, next_cursor))
            return Loaded(body, tags, expires_at=_timestamp(page.next_publication))

        return self._keys.lists[kind].key_for_params(values), load
