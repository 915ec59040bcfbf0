"""Filling the cache in batches: the warming path's loads, under the read path's leases.

:meth:`BatchFiller.fill` takes the load leases of a batch of keys in one auto-pipelined round
trip, skips the entries still fresh (or being loaded by another process), calls one batch
loader for the rest (with the newest of their leases' watermarks as
:func:`cache.watermarks.required_position`), and writes each result as its own entry under its
own lease with the :class:`cache.entries.EntryWriter` reads use, so that a write that raced the
load makes its store fail, exactly as for a read's load (see :mod:`cache.leases`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cache.breaker import CircuitBreaker
from cache.entries import BatchLoader, EntryWriter, fresh_entry, wall_clock_ms
from cache.errors import CacheUnavailableError
from cache.keys import CacheKey
from cache.leases import Lease, LeaseStore
from cache.pacing import Pacer
from cache.watermarks import requiring

logger = logging.getLogger(__name__)

#: Entries stored per event-loop pass.
_FILL_CHUNK = 8


@dataclass(frozen=True, slots=True)
class FillReport:
    """What :meth:`BatchFiller.fill` did with each key of a batch.

    Attributes:
        stored: loaded and stored.
        skipped: already fresh for long enough, being loaded by another process, or not
            returned by the loader.
        rejected: loaded, but the store was refused: an invalidation raced the load.
        errors: the load or the store failed.
    """

    stored: int = 0
    skipped: int = 0
    rejected: int = 0
    errors: int = 0


class BatchFiller:
    """Fills batches of entries. Safe to share between tasks.

    Args:
        leases: the lease store batches take leases and store with; give it an auto-pipeline
            of its own, so that a batch's large stores never share a write (and Redis's time)
            with the reads' ``MGET``.
        writer: writes the entries.
        breaker: the Redis circuit breaker; None for none.
        load_lease_ms: how long a load lease lasts, in milliseconds.
    """

    def __init__(
        self,
        leases: LeaseStore,
        writer: EntryWriter,
        *,
        breaker: CircuitBreaker | None = None,
        load_lease_ms: int = 5000,
    ) -> None:
        self._leases = leases
        self._writer = writer
        self._breaker = breaker
        self._load_lease_ms = load_lease_ms

    async def fill(
        self,
        keys: Sequence[CacheKey],
        loader: BatchLoader,
        *,
        fresh_for_seconds: float = 0.0,
        pacer: Pacer | None = None,
    ) -> FillReport:
        """Load the entries at ``keys`` that are not fresh for ``fresh_for_seconds`` more.

        The warming path: one lease per key, taken for the whole batch in one auto-pipelined
        round trip; one ``loader`` call for the keys whose lease was won; each result stored
        as its own entry under its own lease, so that a write that raced the load makes its
        store fail (counted as rejected) exactly as for a read's load. Nothing is counted as
        a hit or a miss.

        Args:
            keys: the entries to fill (distinct).
            loader: loads the keys whose lease was won, in one call.
            fresh_for_seconds: an entry still fresh for at least this long is skipped, in
                seconds; 0 skips every fresh entry.
            pacer: paces the stores (compressing is the costly part) so that reads keep the
                event loop; None yields between chunks of stores only.

        Returns:
            What became of the keys. A loader that raises is logged and its keys counted as
            errors (their leases released); a store that fails counts as an error too.

        Raises:
            CacheUnavailableError: Redis failed, or its breaker is open (nothing was loaded).
        """
        if self._breaker is not None and not self._breaker.allows():
            raise CacheUnavailableError("the Redis breaker is open")
        grants = await asyncio.gather(
            *(
                self._leases.take(k.redis_key, load_lease_ms=self._load_lease_ms, return_value=True)
                for k in keys
            ),
            return_exceptions=True,
        )
        to_load: list[tuple[CacheKey, Lease]] = []
        fresh: list[tuple[CacheKey, Lease]] = []
        failure: BaseException | None = None
        skipped = 0
        horizon_ms = wall_clock_ms() + fresh_for_seconds * 1000
        for key, grant in zip(keys, grants, strict=True):
            if isinstance(grant, BaseException):
                failure = grant
            elif not grant.lease.loads:
                skipped += 1  # another process is loading it
            elif (entry := fresh_entry(grant.value)) and entry.fresh_until_ms >= horizon_ms:
                fresh.append((key, grant.lease))
            else:
                to_load.append((key, grant.lease))
        if failure is not None:
            await self._release_all(fresh + to_load)
            raise CacheUnavailableError("a lease of a warming batch failed") from failure
        if fresh:
            await self._release_all(fresh)
        skipped += len(fresh)
        if not to_load:
            return FillReport(skipped=skipped)
        try:
            return await self._fill_won(to_load, loader, skipped, pacer)
        except BaseException:
            # Cancelled (the job was): free the leases, or readers of these keys would wait
            # for a load that is not coming. A lease whose store ran is already gone.
            await self._release_all(to_load)
            raise

    async def _fill_won(
        self,
        to_load: Sequence[tuple[CacheKey, Lease]],
        loader: BatchLoader,
        skipped: int,
        pacer: Pacer | None,
    ) -> FillReport:
        started = time.monotonic()
        # One statement for the batch: it must reflect the newest of the leases' watermarks.
        marks = [lease.watermark for _, lease in to_load]
        required = None if None in marks else max(m for m in marks if m is not None)
        try:
            with requiring(required):
                results = await loader([key for key, _ in to_load])
        except Exception as exc:
            logger.warning("warming load of %d keys failed: %r", len(to_load), exc)
            await self._release_all(to_load)
            return FillReport(skipped=skipped, errors=len(to_load))
        load_ms = (time.monotonic() - started) * 1000
        absent = [(key, lease) for key, lease in to_load if key not in results]
        if absent:
            await self._release_all(absent)
        found = [(key, lease) for key, lease in to_load if key in results]
        outcomes: list[bool | None] = []
        # A few stores per loop pass: compressing a whole batch at once would hold up reads.
        for i in range(0, len(found), _FILL_CHUNK):
            if pacer is not None and i:
                await pacer.pause()
            stores = await asyncio.gather(
                *(
                    self._writer.write(self._leases, lease, key, results[key], load_ms)
                    for key, lease in found[i : i + _FILL_CHUNK]
                )
            )
            outcomes += [outcome for _, outcome, _ in stores]
        return FillReport(
            stored=outcomes.count(True),
            skipped=skipped + len(absent),
            rejected=outcomes.count(False),
            errors=outcomes.count(None),
        )

    async def _release_all(self, won: Sequence[tuple[CacheKey, Lease]]) -> None:
        """Release the load leases of a fill (taken from its lease store)."""
        leases = self._leases
        with contextlib.suppress(CacheUnavailableError):
            await asyncio.gather(*(leases.release(lease, k.redis_key) for k, lease in won))
