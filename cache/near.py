"""The near cache: an in-process tier (L1) in front of Redis (L2), bounded in bytes.

:class:`NearStore` holds decoded entries under their Redis keys, evicting by S3-FIFO (Yang,
Zhang, Qiu, Yue and Rashmi, "FIFO queues are all you need for cache eviction", SOSP 2023): a
new key enters a small FIFO queue (10 % of the bytes); a key read again while there moves to the
main queue when it reaches the small queue's tail, one that was not is evicted and remembered in
a ghost queue (keys only); a key found in the ghost queue enters the main queue directly. The
main queue evicts from its tail, giving keys read since their last pass one more (a frequency
of at most 3). One-hit wonders under Zipf traffic thus never push the hot keys out.

:class:`NearCache` adds what makes it safe to answer from it (see ``docs/near-cache.md``):

* **A fence.** It answers only while its holder's lease is valid (:meth:`NearCache.grant`,
  set by :class:`cache.bus.InvalidationBus`): a holder that stops hearing invalidations stops
  answering before any writer stops waiting for it.
* **Refused racing fills.** A read takes :meth:`NearCache.mark` before it asks Redis; its fill
  is refused when an invalidation of its key (or of everything) was applied since, since the
  value it read from Redis may be what that invalidation replaced, and when the read began
  more than :data:`FILL_WINDOW_SECONDS` ago.
* **A doorkeeper.** A key read from Redis is kept only the second time it is read within a
  while (or when the store holds or recently evicted it): the tail of a Zipf workload, read
  once in a long time, costs no fill and no eviction (the doorkeeper of TinyLFU: Einziger,
  Friedman and Manes, "TinyLFU: A Highly Efficient Cache Admission Policy", 2017).
* **A bounded age.** An entry is held at most :data:`MAX_AGE_SECONDS` after its fill, so that
  an invalidation's tombstones (see :mod:`cache.invalidation`) outlive every copy of what it
  deleted.

Entries keep the rules of Redis's copy: an entry is answered fresh until its ``fresh_until_ms``,
stale within its namespace's stale-while-revalidate period after that, and dropped past it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from cache.codec import Entry

#: Bytes counted for each entry besides its bodies, ETags and key: the Python objects that hold
#: it (the entry and its representations, the queue nodes, the item). Measured with
#: ``tracemalloc`` for entries with two encoded representations (740 bytes); see docs/near-cache.md.
ENTRY_OVERHEAD_BYTES = 800

#: How long an entry is held at most after its fill, in seconds (then read from Redis again).
MAX_AGE_SECONDS = 10.0
#: A fill whose read began longer ago than this is refused, in seconds.
FILL_WINDOW_SECONDS = 1.0

#: The small queue's share of the bytes (S3-FIFO's 10 %).
_SMALL_SHARE = 0.1
#: The highest frequency an entry counts (S3-FIFO's 2-bit counter).
_MAX_FREQUENCY = 3
#: Keys remembered in the ghost queue, at least; else as many as the main queue holds.
_MIN_GHOSTS = 1024
#: Keys the doorkeeper remembers, per byte of the bound (one per 4 KiB), and at least.
_SEEN_PER_BYTE = 1 / 4096
_MIN_SEEN = 1024
#: Drops remembered key by key for refusing fills; past this, every fill begun before is refused.
_MAX_DROPS = 4096

try:
    _BOOT_CLOCK = time.CLOCK_BOOTTIME

    def boot_clock() -> float:
        """Seconds on a clock that keeps counting while the machine is suspended (Linux)."""
        return time.clock_gettime(_BOOT_CLOCK)

except AttributeError:  # not Linux
    boot_clock = time.monotonic


def doorkeeper_size(max_bytes: int) -> int:
    """Return how many keys the doorkeeper of a near cache bounded at ``max_bytes`` remembers."""
    return max(_MIN_SEEN, int(max_bytes * _SEEN_PER_BYTE))


def uncounted_keys(max_bytes: int, entries: int) -> int:
    """Return how many keys a near cache keeps besides its ``entries``, at most.

    Its ghost queue, its doorkeeper and its recent drops: what ``max_bytes`` does not count.
    """
    return max(_MIN_GHOSTS, entries) + doorkeeper_size(max_bytes) + _MAX_DROPS


def entry_size(key: str, entry: Entry) -> int:
    """Return the bytes an entry is counted for: bodies, ETags, key and the fixed overhead."""
    size = len(entry.body) + len(entry.etag) + len(key) + ENTRY_OVERHEAD_BYTES
    for rep in entry.encoded:
        size += len(rep.body) + len(rep.etag)
    return size


class _Item:
    __slots__ = ("entry", "frequency", "held_until", "keep_until_ms", "main", "namespace", "size")

    def __init__(
        self, entry: Entry, size: int, keep_until_ms: int, namespace: str, main: bool
    ) -> None:
        self.entry = entry
        self.size = size
        self.keep_until_ms = keep_until_ms
        self.held_until = 0.0
        self.namespace = namespace
        self.frequency = 0
        self.main = main


@dataclass(frozen=True, slots=True)
class NearFigures:
    """A near cache's state at one moment.

    Attributes:
        max_bytes: its bound, in bytes.
        bytes: the bytes its entries are counted for (see :func:`entry_size`).
        entries: how many entries it holds.
        evictions: entries evicted to stay within ``max_bytes`` so far.
        fills_refused: fills refused because an invalidation raced their read so far.
        invalidations: invalidation messages applied so far.
        lease_valid: whether it answers now (its holder's lease is valid, or the lease check
            is off).
    """

    max_bytes: int
    bytes: int
    entries: int
    evictions: int
    fills_refused: int
    invalidations: int
    lease_valid: bool


class NearStore:
    """Entries under their keys, bounded in bytes, evicted by S3-FIFO. Not thread-safe.

    Args:
        max_bytes: the bound on the sum of the entries' sizes (see :func:`entry_size`), > 0.

    Raises:
        ValueError: ``max_bytes`` is not > 0.

    Attributes:
        bytes: the sum of the sizes of the entries held.
        evictions: how many entries were evicted so far.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be > 0")
        self.max_bytes = max_bytes
        self._small_max = int(max_bytes * _SMALL_SHARE)
        self._items: dict[str, _Item] = {}
        self._small: OrderedDict[str, _Item] = OrderedDict()
        self._main: OrderedDict[str, _Item] = OrderedDict()
        self._ghosts: OrderedDict[str, None] = OrderedDict()
        self._small_bytes = 0
        self.bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def is_remembered(self, key: str) -> bool:
        """Whether ``key`` is held, or was evicted recently (it is in the ghost queue)."""
        return key in self._items or key in self._ghosts

    def get(self, key: str) -> _Item | None:
        """Return the item at ``key`` (counting the read for eviction), or None."""
        item = self._items.get(key)
        if item is not None and item.frequency < _MAX_FREQUENCY:
            item.frequency += 1
        return item

    def put(
        self, key: str, entry: Entry, keep_until_ms: int, namespace: str, held_until: float = 0.0
    ) -> bool:
        """Hold ``entry`` at ``key`` until ``keep_until_ms`` (ms since the epoch).

        ``held_until`` is kept with it for the caller (a :func:`boot_clock` time).

        Returns:
            False when the entry alone is larger than both the small queue and a quarter of
            the bound (it is not held).
        """
        size = entry_size(key, entry)
        old = self._items.get(key)
        if old is not None:
            self._remove(key, old)
        if size > max(self._small_max, 1) and size > self.max_bytes // 4:
            return False
        main = key in self._ghosts
        if main:
            del self._ghosts[key]
        item = _Item(entry, size, keep_until_ms, namespace, main)
        item.held_until = held_until
        if old is not None:
            item.frequency = old.frequency
        self._items[key] = item
        self.bytes += size
        if main:
            self._main[key] = item
        else:
            self._small[key] = item
            self._small_bytes += size
        while self.bytes > self.max_bytes:
            self._evict()
        return True

    def discard(self, key: str) -> None:
        """Drop the entry at ``key``, if held."""
        item = self._items.get(key)
        if item is not None:
            self._remove(key, item)

    def discard_namespace(self, namespace: str) -> None:
        """Drop every entry of ``namespace``."""
        for key, item in [(k, i) for k, i in self._items.items() if i.namespace == namespace]:
            self._remove(key, item)

    def clear(self) -> None:
        """Drop every entry (the ghost queue too)."""
        self._items.clear()
        self._small.clear()
        self._main.clear()
        self._ghosts.clear()
        self._small_bytes = 0
        self.bytes = 0

    def _remove(self, key: str, item: _Item) -> None:
        del self._items[key]
        self.bytes -= item.size
        if item.main:
            del self._main[key]
        else:
            del self._small[key]
            self._small_bytes -= item.size

    def _evict(self) -> None:
        if self._small and (self._small_bytes >= self._small_max or not self._main):
            self._evict_small()
        else:
            self._evict_main()

    def _evict_small(self) -> None:
        key, item = self._small.popitem(last=False)
        self._small_bytes -= item.size
        if item.frequency > 0:
            # Read again while in the small queue: it moves to the main queue.
            item.main = True
            item.frequency = 0
            self._main[key] = item
            return
        del self._items[key]
        self.bytes -= item.size
        self.evictions += 1
        self._ghosts[key] = None
        limit = max(_MIN_GHOSTS, len(self._main))
        while len(self._ghosts) > limit:
            self._ghosts.popitem(last=False)

    def _evict_main(self) -> None:
        while True:
            key, item = self._main.popitem(last=False)
            if item.frequency > 0:
                item.frequency -= 1
                self._main[key] = item  # one more pass
                continue
            del self._items[key]
            self.bytes -= item.size
            self.evictions += 1
            return


#: What :meth:`NearCache.mark` returns: the invalidations applied so far and when it was taken.
NearMark = tuple[int, float]


class NearCache:
    """The near cache of one process: a :class:`NearStore` behind a lease fence.

    Safe to share between the tasks of one event loop (no method awaits).

    Args:
        max_bytes: its bound, in bytes (> 0; see :func:`entry_size` for what an entry counts).
        lease_check: False answers without a valid lease (the best effort of other near caches:
            for comparison only; see docs/near-cache.md).
    """

    def __init__(self, max_bytes: int, *, lease_check: bool = True) -> None:
        self._store = NearStore(max_bytes)
        self._lease_check = lease_check
        self._valid_until = -1.0
        self._generation = 0
        self._floor = 0
        self._drops: dict[str, int] = {}
        self._seen: set[str] = set()
        self._seen_limit = doorkeeper_size(max_bytes)
        self.fills_refused = 0
        self.invalidations = 0

    @property
    def is_lease_checked(self) -> bool:
        """Whether it answers only under a valid lease."""
        return self._lease_check

    def lookup(self, key: str, now_ms: int) -> Entry | None:
        """Return the entry at ``key`` if it may be answered (a valid lease, not past its keep).

        Args:
            key: the entry's Redis key.
            now_ms: the wall clock, ms since the epoch.
        """
        now = boot_clock()
        if self._lease_check and now >= self._valid_until:
            return None
        item = self._store.get(key)
        if item is None:
            return None
        if now_ms >= item.keep_until_ms or now >= item.held_until:
            self._store.discard(key)
            return None
        return item.entry

    def mark(self) -> NearMark:
        """Return the mark a read takes before it asks Redis, for :meth:`fill`."""
        return self._generation, boot_clock()

    def fill(
        self, key: str, namespace: str, entry: Entry, keep_until_ms: int, mark: NearMark
    ) -> bool:
        """Hold ``entry``, read from Redis after ``mark``, unless an invalidation raced the read.

        Args:
            key: the entry's Redis key.
            namespace: its namespace (for purges).
            entry: the entry as Redis holds it.
            keep_until_ms: when it can no longer be answered, even stale (ms since the epoch).
            mark: :meth:`mark` taken before the read began.

        Returns:
            Whether it is held: False when an invalidation of ``key`` (or of everything) was
            applied since ``mark``, or ``mark`` is older than :data:`FILL_WINDOW_SECONDS`
            (counted in ``fills_refused``), or the entry is too large.
        """
        generation, began = mark
        now = boot_clock()
        if (
            generation < self._floor
            or self._drops.get(key, -1) > generation
            or now - began > FILL_WINDOW_SECONDS
        ):
            self.fills_refused += 1
            return False
        return self._store.put(key, entry, keep_until_ms, namespace, now + MAX_AGE_SECONDS)

    def is_admitted(self, key: str) -> bool:
        """Whether a fill of ``key`` read from Redis should be tried (the doorkeeper).

        True when ``key`` is held or was evicted recently, or was asked about before since the
        doorkeeper last forgot (it forgets everything once it remembers ``max_bytes / 4096``
        keys); else it remembers ``key`` and returns False.
        """
        if self._store.is_remembered(key):
            return True
        seen = self._seen
        if key in seen:
            seen.discard(key)
            return True
        if len(seen) >= self._seen_limit:
            seen.clear()
        seen.add(key)
        return False

    def discard(self, key: str) -> None:
        """Drop the entry at ``key`` (it expired); not an invalidation."""
        self._store.discard(key)

    def invalidate(self, keys: list[str]) -> None:
        """Drop the entries at ``keys`` and refuse the fills of reads begun before."""
        self.invalidations += 1
        self._generation += 1
        generation = self._generation
        drops = self._drops
        if len(drops) + len(keys) > _MAX_DROPS:
            drops.clear()
            self._floor = generation
        store = self._store
        for key in keys:
            store.discard(key)
            drops[key] = generation

    def invalidate_namespace(self, namespace: str) -> None:
        """Drop every entry of ``namespace`` and refuse every fill begun before."""
        self.invalidations += 1
        self._store.discard_namespace(namespace)
        self._refuse_all_begun()

    def clear(self) -> None:
        """Drop every entry and refuse every fill begun before (a purge, or a lost channel)."""
        self.invalidations += 1
        self._store.clear()
        self._refuse_all_begun()

    def _refuse_all_begun(self) -> None:
        self._generation += 1
        self._floor = self._generation
        self._drops.clear()

    def grant(self, valid_until: float) -> None:
        """Answer until ``valid_until`` (:func:`boot_clock` seconds): the lease is valid so long."""
        self._valid_until = valid_until

    def revoke(self) -> None:
        """Stop answering now (the lease is lost or in doubt)."""
        self._valid_until = -1.0

    @property
    def has_valid_lease(self) -> bool:
        """Whether it answers now."""
        return not self._lease_check or boot_clock() < self._valid_until

    def figures(self) -> NearFigures:
        """Return its state now."""
        store = self._store
        return NearFigures(
            max_bytes=store.max_bytes,
            bytes=store.bytes,
            entries=len(store),
            evictions=store.evictions,
            fills_refused=self.fills_refused,
            invalidations=self.invalidations,
            lease_valid=self.has_valid_lease,
        )
