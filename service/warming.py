"""Cache warming of the content: which keys to warm, and how to load them in batches.

A warming request names a source:

* ``hot``: the hottest identities the :class:`cache.HotKeyTracker` saw, of one namespace or
  of all of them merged by their decayed scores;
* ``recent``: the ``limit`` newest visible articles and the first page of every list;
* ``keys``: identities given by the operator, ``namespace:identity`` (e.g. ``article:my-slug``).

Each identity is turned back into its key and loader by the :class:`service.reads.ContentReader`
(an identity that the key scheme hashed cannot be, and is skipped). The keys go through
:meth:`cache.filling.BatchFiller.fill` in batches of ``batch_size``, so that leases and stale-set
protection apply as to any read: articles with one statement per batch
(``slug = ANY(...)``), other namespaces one statement per key. At most ``concurrency`` batches
run at a time, each holding at most one PostgreSQL connection: warming never takes more of the
pool than that.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from pydantic import ValidationError

from cache import (
    BackgroundTask,
    CacheKey,
    CacheUnavailableError,
    FillReport,
    HotKeyTracker,
    JobProgress,
    Loaded,
    Loader,
    Pacer,
    ReadThroughCache,
    WarmingBusyError,
    WarmingJobs,
    every,
)
from service.admin_requests import WarmRequest, is_entry_key
from service.errors import InvalidInputError
from service.keyspaces import ARTICLE, ARTICLES, COMMENTS, NAMESPACES
from service.kinds import BY_NAME, KINDS
from service.reads import ContentReader
from service.schemas import ArticleListParams, PageParams

logger = logging.getLogger(__name__)

#: Each entity kind's list namespace, and the kind's name.
_LISTS = {kind.list_namespace: kind.name for kind in KINDS}


@dataclass(frozen=True, slots=True)
class Target:
    """One entry to warm: its namespace and identity (the key's part after the namespace)."""

    namespace: str
    identity: str


class ContentWarming:
    """Plans and runs warming jobs over the content. Safe to share between tasks.

    Args:
        reader: turns identities back into keys and loaders.
        cache: the read-through cache; its ``filler`` loads and stores the batches.
        tracker: the hot-key tracker (source ``hot``).
        jobs: the deployment's warming jobs.
        batch_size: keys per batch (one statement per batch of articles).
        concurrency: batches at a time (each holds at most one PostgreSQL connection).
        default_limit: keys per job when the request names no ``limit``.
        loop_share: the largest share of the event loop a job takes while requests want it
            (see :class:`cache.Pacer`); alone, a job runs at full speed.
        on_batch: called with (result, n) for "done", "skipped" and "error" after each batch,
            e.g. to count them in metrics; None for nothing.

    The owner calls :meth:`aclose` at shutdown.
    """

    def __init__(
        self,
        reader: ContentReader,
        cache: ReadThroughCache,
        tracker: HotKeyTracker,
        jobs: WarmingJobs,
        *,
        batch_size: int = 100,
        concurrency: int = 2,
        default_limit: int = 1000,
        loop_share: float = 0.2,
        on_batch: Callable[[str, int], None] | None = None,
    ) -> None:
        self._reader = reader
        self._cache = cache
        self._tracker = tracker
        self.jobs = jobs
        self._batch_size = batch_size
        self._concurrency = concurrency
        self._default_limit = default_limit
        self._loop_share = loop_share
        self.on_batch = on_batch
        self._refresher: BackgroundTask | None = None

    async def start(self, request: WarmRequest, *, fresh_for_seconds: float = 0.0) -> str:
        """Start a job for ``request``; return its id. The job plans, then fills.

        Args:
            request: what to warm (validated: a known namespace, or None).
            fresh_for_seconds: entries fresh for at least this long are skipped, in seconds.

        Raises:
            WarmingBusyError: a job already runs in the deployment.
            CacheUnavailableError: Redis failed.
        """
        spec: dict[str, str | int] = {"source": request.source}
        if request.namespace:
            spec["namespace"] = request.namespace
        spec["limit"] = request.limit or self._default_limit

        async def work(progress: JobProgress) -> None:
            targets = await self.plan(request)
            if not targets and request.source == "hot" and not request.namespace:
                # Nothing read yet (a new deployment): the newest content instead.
                targets = await self.plan(request.model_copy(update={"source": "recent"}))
            await self.fill(targets, progress, fresh_for_seconds=fresh_for_seconds)

        return await self.jobs.start(spec, work)

    async def try_start(
        self, request: WarmRequest, *, fresh_for_seconds: float = 0.0
    ) -> str | None:
        """Start a job as :meth:`start` does; None (logged) when one runs or Redis failed."""
        try:
            return await self.start(request, fresh_for_seconds=fresh_for_seconds)
        except WarmingBusyError as exc:
            logger.info("warming not started: job %s is running", exc.job_id)
        except CacheUnavailableError as exc:
            logger.warning("warming not started: %r", exc)
        return None

    def refresh_periodically(self, top_n: int, interval_seconds: float) -> None:
        """Every ``interval_seconds``, warm the ``top_n`` hottest keys that would expire first.

        Keys still fresh for more than twice the interval are skipped, so each run reloads
        only what would expire before the run after next. One job per deployment: a process
        whose turn finds a job running skips that turn. Stopped by :meth:`aclose`.
        """

        async def refresh() -> None:
            request = WarmRequest(source="hot", limit=top_n)
            await self.try_start(request, fresh_for_seconds=2 * interval_seconds)

        self._refresher = BackgroundTask(
            "warm-refresh", every(interval_seconds, refresh, at_once=False)
        )
        self._refresher.start()

    async def aclose(self) -> None:
        """Stop the periodic refresh and this process's running job."""
        if self._refresher is not None:
            await self._refresher.aclose()
        await self.jobs.aclose()

    async def plan(self, request: WarmRequest) -> list[Target]:
        """Return the entries ``request`` names, hottest or newest first, without duplicates.

        ``limit`` bounds the hot keys and the newest articles; ``recent`` adds the first page
        of each list, and ``keys`` are taken as given.

        Raises:
            CacheUnavailableError: Redis failed (source ``hot``).
            UnavailableError: PostgreSQL failed (source ``recent``).
        """
        limit = request.limit or self._default_limit
        namespaces = [request.namespace] if request.namespace else list(NAMESPACES)
        if request.source == "keys":
            targets = [parse_key(text, request.namespace) for text in request.keys or ()]
            found = [t for t in targets if t is not None]
        elif request.source == "recent":
            found = await self._recent(namespaces, limit)
        else:
            ranked = await asyncio.gather(*(self._tracker.top(ns, limit) for ns in namespaces))
            scored = (
                (score, Target(ns, identity))
                for ns, top in zip(namespaces, ranked, strict=True)
                for identity, score in top
            )
            found = [t for _, t in heapq.nlargest(limit, scored, key=lambda pair: pair[0])]
        return list(dict.fromkeys(found))

    async def _recent(self, namespaces: Sequence[str], limit: int) -> list[Target]:
        found: list[Target] = []
        if ARTICLE in namespaces:
            slugs = await self._reader.recent_slugs(limit)
            found += [_target(self._reader.article_key(slug)) for slug in slugs]
        if ARTICLES in namespaces:
            found.append(_target(self._reader.articles_load(ArticleListParams())[0]))
        for namespace, kind in _LISTS.items():
            if namespace in namespaces:
                found.append(_target(self._reader.entities_load(kind, PageParams())[0]))
        return found

    async def fill(
        self, targets: Sequence[Target], progress: JobProgress, *, fresh_for_seconds: float = 0.0
    ) -> None:
        """Load and store ``targets`` in batches, adding each batch's outcome to ``progress``.

        Identities that name no loadable entry are counted as skipped.

        Raises:
            CacheUnavailableError: Redis failed: the batch that found it is counted as errors,
                and the batches still to come are not run.
        """
        progress.total = len(targets)
        by_namespace: dict[str, list[Target]] = {}
        for target in targets:
            by_namespace.setdefault(target.namespace, []).append(target)
        batches = [
            group[i : i + self._batch_size]
            for group in by_namespace.values()
            for i in range(0, len(group), self._batch_size)
        ]
        slots = asyncio.Semaphore(self._concurrency)

        def count(done: int, skipped: int, errors: int) -> None:
            progress.add(done=done, skipped=skipped, errors=errors)
            if self.on_batch is not None:
                for result, n in (("done", done), ("skipped", skipped), ("error", errors)):
                    if n:
                        self.on_batch(result, n)

        async def run(batch: list[Target]) -> None:
            async with slots:
                pacer = Pacer(self._loop_share / self._concurrency)
                try:
                    report, unresolved = await self._fill_batch(batch, fresh_for_seconds, pacer)
                except CacheUnavailableError:
                    count(0, 0, len(batch))
                    raise
            count(report.stored, report.skipped + report.rejected + unresolved, report.errors)

        # The first batch that finds Redis failing ends the job: the others are cancelled.
        try:
            async with asyncio.TaskGroup() as group:
                for batch in batches:
                    group.create_task(run(batch))
        except* CacheUnavailableError as failed:
            raise failed.exceptions[0] from None

    async def _fill_batch(
        self, batch: Sequence[Target], fresh_for_seconds: float, pacer: Pacer
    ) -> tuple[FillReport, int]:
        """Fill one batch (one namespace); return the report and the unresolvable count."""
        namespace = batch[0].namespace
        if namespace == ARTICLE:
            slugs = {
                self._reader.article_key(unquote(t.identity)): unquote(t.identity) for t in batch
            }

            async def load_articles(keys: Sequence[CacheKey]) -> Mapping[CacheKey, Loaded]:
                loaded = await self._reader.load_articles([slugs[k] for k in keys], pacer)
                return {k: loaded[slugs[k]] for k in keys if slugs[k] in loaded}

            report = await self._cache.filler.fill(
                list(slugs), load_articles, fresh_for_seconds=fresh_for_seconds, pacer=pacer
            )
            return report, len(batch) - len(slugs)
        loaders: dict[CacheKey, Loader] = {}
        for target in batch:
            resolved = self._resolve(target)
            if resolved is not None:
                loaders[resolved[0]] = resolved[1]

        async def load_each(keys: Sequence[CacheKey]) -> Mapping[CacheKey, Loaded]:
            results: dict[CacheKey, Loaded] = {}
            for key in keys:  # one at a time: one connection per batch
                await pacer.pause()
                loaded = await loaders[key]()
                if loaded.status == 200:
                    results[key] = loaded
            return results

        report = await self._cache.filler.fill(
            list(loaders), load_each, fresh_for_seconds=fresh_for_seconds, pacer=pacer
        )
        return report, len(batch) - len(loaders)

    def _resolve(self, target: Target) -> tuple[CacheKey, Loader] | None:
        """Return the key and loader of ``target``; None when its identity names none."""
        namespace, identity = target.namespace, target.identity
        try:
            if namespace == COMMENTS:
                resolved = self._reader.comments_load(unquote(identity))
            elif namespace in BY_NAME:
                resolved = self._reader.entity_load(namespace, unquote(identity))
            elif namespace == ARTICLES:
                params = ArticleListParams.model_validate(_query(identity))
                resolved = self._reader.articles_load(params)
            elif namespace in _LISTS:
                params_ = PageParams.model_validate(_query(identity))
                resolved = self._reader.entities_load(_LISTS[namespace], params_)
            else:
                return None
        except (ValidationError, InvalidInputError):
            # A parameter out of its rule, or a list cursor that is malformed or foreign.
            return None
        # A hashed identity, or one not in canonical form, would warm another entry.
        return resolved if resolved[0].identity == identity else None


def _target(key: CacheKey) -> Target:
    return Target(key.namespace, key.identity)


def _query(identity: str) -> dict[str, str]:
    return {} if identity == "-" else dict(parse_qsl(identity, keep_blank_values=True))


def parse_key(text: str, namespace: str | None) -> Target | None:
    """Parse ``namespace:identity``, or a bare identity of ``namespace``; None when neither."""
    if is_entry_key(text):
        name, _, identity = text.partition(":")
        return Target(name, identity)
    if namespace is not None:
        return Target(namespace, text)
    return None
