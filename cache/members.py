"""A registry of live members with a heartbeat: each member's latest report, in one Redis hash.

Each member (a worker process, say) writes ``{"reported_at": <Unix seconds>, "report": {...}}``
as JSON to the field named after it in ``{prefix}:members:{group}``, with every statistics
flush (it is a :class:`cache.FlushPart`, so the heartbeat costs no round trip of its own), and
renews the hash's lifetime. A member whose report is older than ``stale_after_seconds`` is
left out on read; the reader deletes such fields (see :meth:`MemberRegistry.prune`), and when
every member stops, the hash expires on its own. A member that stops cleanly deletes its field
at once (:meth:`MemberRegistry.leave`).

Report times come from each member's clock: members on different hosts rely on their clocks
agreeing to well within ``stale_after_seconds``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cache.errors import REDIS_FAILURES
from cache.keys import KeyScheme
from cache.routing import AnyPipeline, RedisClient

logger = logging.getLogger(__name__)

# KEYS: the group's hash; ARGV: member, report, staleness horizon (Unix seconds), hash TTL ms.
# Writes the member's report and deletes the members that stopped reporting (killed workers),
# so that the hash stays as small as the group even when nobody reads it.
_HEARTBEAT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local fields = redis.call('HGETALL', KEYS[1])
local horizon = tonumber(ARGV[3])
for i = 1, #fields, 2 do
  local ok, doc = pcall(cjson.decode, fields[i + 1])
  if not ok or type(doc) ~= 'table' or tonumber(doc['reported_at']) == nil
     or tonumber(doc['reported_at']) < horizon then
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""


@dataclass(frozen=True, slots=True)
class MemberReport:
    """One live member's latest report.

    Attributes:
        member: the member's name, unique in its group.
        reported_at: when it wrote the report, Unix time in seconds (its own clock).
        report: what it reported (a JSON object).
    """

    member: str
    reported_at: float
    report: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Members:
    """What one read of a group found.

    Attributes:
        live: the live members' reports, by member name.
        stale: the names of members whose report is too old (to :meth:`MemberRegistry.prune`).
    """

    live: list[MemberReport]
    stale: list[str]


class MemberRegistry:
    """One member's view of its group: it reports itself, and reads the group's live members.

    Safe to share between tasks of one event loop. Register it with
    :meth:`cache.CacheStats.add_flush_part` to report with every flush; call :meth:`leave`
    after the last flush.

    Args:
        redis: where the group's hash lives.
        scheme: the key scheme (its ``members(group)`` key holds the hash).
        group: the group's name, such as ``workers``.
        member: this member's name, unique in the group.
        report: called at each heartbeat; returns this member's figures (JSON-able values).
        stale_after_seconds: a report older than this, in seconds, is not live.
        clock: returns the Unix time in seconds.
    """

    def __init__(
        self,
        redis: RedisClient,
        scheme: KeyScheme,
        group: str,
        member: str,
        report: Callable[[], Mapping[str, Any]],
        *,
        stale_after_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self.key = scheme.members(group)
        self.member = member
        self._report = report
        self.stale_after_seconds = stale_after_seconds
        self._clock = clock
        self._left = False
        #: Whether the last heartbeat reached Redis (None before the first).
        self.reported: bool | None = None

    def report_now(self) -> MemberReport:
        """Return this member's report as of now (no I/O)."""
        return MemberReport(self.member, self._clock(), dict(self._report()))

    def add_to(self, pipe: AnyPipeline) -> Callable[[bool], None] | None:
        """Queue this member's heartbeat: its report and the hash's new lifetime.

        Returns:
            None once the member has left; else a callback that records the outcome.
        """
        if self._left:
            return None
        now = self.report_now()
        value = json.dumps({"reported_at": now.reported_at, "report": now.report})
        # EVAL, not EVALSHA: the flush's pipeline cannot retry a NOSCRIPT reply. Twice the
        # staleness: a dead group's hash outlives its last report, then vanishes.
        pipe.eval(
            _HEARTBEAT,
            1,
            self.key,
            self.member,
            value,
            now.reported_at - self.stale_after_seconds,
            int(self.stale_after_seconds * 2000),
        )
        return self._record

    def _record(self, ok: bool) -> None:
        self.reported = ok

    def queue_read(self, pipe: AnyPipeline) -> None:
        """Queue the read of the group (one ``HGETALL``); pass its reply to :meth:`parse`."""
        pipe.hgetall(self.key)

    def parse(self, reply: Mapping[bytes | str, bytes | str], now: float | None = None) -> Members:
        """Return the live and the stale members found in the reply of :meth:`queue_read`.

        Args:
            reply: the group's hash, member name to JSON report.
            now: the Unix time to judge staleness at, in seconds; the clock's when None.

        Returns:
            The live members sorted by name, and the stale ones (a field that is not a report
            counts as stale, so that it gets deleted).
        """
        horizon = (self._clock() if now is None else now) - self.stale_after_seconds
        live: list[MemberReport] = []
        stale: list[str] = []
        for field, value in reply.items():
            name = field.decode() if isinstance(field, bytes) else field
            try:
                doc = json.loads(value)
                reported_at = float(doc["reported_at"])
                report = dict(doc["report"])
            except (ValueError, TypeError, KeyError):
                stale.append(name)
                continue
            if reported_at < horizon:
                stale.append(name)
            else:
                live.append(MemberReport(name, reported_at, report))
        live.sort(key=lambda m: m.member)
        return Members(live, stale)

    async def members(self) -> Members:
        """Read the group in a round trip of its own.

        Raises:
            redis.exceptions.RedisError: Redis failed.
        """
        return self.parse(await self._redis.hgetall(self.key))

    async def prune(self, names: list[str]) -> None:
        """Delete the fields of ``names`` (stale members); fail-open, a failure is logged."""
        if not names:
            return
        try:
            await self._redis.hdel(self.key, *names)
        except REDIS_FAILURES as exc:
            logger.warning("stale members not pruned: %r", exc)

    async def leave(self) -> None:
        """Stop reporting and delete this member's field; fail-open, a failure is logged.

        Without the delete, the member drops out after ``stale_after_seconds``.
        """
        self._left = True
        try:
            await self._redis.hdel(self.key, self.member)
        except REDIS_FAILURES as exc:
            logger.warning("member %s did not leave its group: %r", self.member, exc)
