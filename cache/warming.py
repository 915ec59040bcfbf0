"""Warming jobs: one at a time per deployment, with their state in Redis.

A job is started by :meth:`WarmingJobs.start`, which takes the deployment's warming lock
(``{prefix}:warm:lock``, ``SET NX PX``: its value is the job's id, its TTL the runner's lease)
and runs the caller's work in a task of the calling process. The runner renews its lease (at
least every third of ``lease_seconds``) and writes its progress with each renewal. The job's
state is a hash at ``{prefix}:warm:job:{id}``, so any process of any instance answers
:meth:`WarmingJobs.get`. A job whose runner died (the lock no longer names it while the job
says it is running) is reported, and recorded, as ``failed`` once its lease lapses.

States: ``queued`` → ``running`` → ``done``, ``failed`` or ``cancelled``. Cancelling sets a flag
in the job's hash that the runner reads when it renews its lease, and the work stops at its next
await.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from cache.background import stop_task
from cache.errors import REDIS_FAILURES, CacheError, translate_redis_errors
from cache.keys import KeyScheme

logger = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
ACTIVE_STATES = (QUEUED, RUNNING)
_COUNTS = ("total", "done", "skipped", "errors")

# KEYS: lock, job; ARGV: job id, lease ms. 0: the lock is lost; 1: renewed; 2: cancel asked.
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('HGET', KEYS[2], 'cancel_requested') == '1' then return 2 end
return 1
"""

# KEYS: job, lock; ARGV: job id, now. A job that says it runs while the lock does not name it
# lost its runner: it is recorded as failed, atomically with the read.
_READ = """
local state = redis.call('HGET', KEYS[1], 'state')
if (state == 'queued' or state == 'running') and redis.call('GET', KEYS[2]) ~= ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', 'failed', 'finished_at', ARGV[2],
             'error', 'the runner stopped renewing its lease')
end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: lock, newest; ARGV: job key prefix, now. The running job and the newest (when it is
# another), each read as _READ reads one.
_SUMMARY = """
local function read(id)
  if not id then return {} end
  local key = ARGV[1] .. id
  local state = redis.call('HGET', key, 'state')
  if (state == 'queued' or state == 'running') and redis.call('GET', KEYS[1]) ~= id then
    redis.call('HSET', key, 'state', 'failed', 'finished_at', ARGV[2],
               'error', 'the runner stopped renewing its lease')
  end
  return redis.call('HGETALL', key)
end
local running = redis.call('GET', KEYS[1])
local newest = redis.call('GET', KEYS[2])
local last = {}
if newest and newest ~= running then last = read(newest) end
return {read(running), last}
"""

# KEYS: lock; ARGV: job id
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class WarmingBusyError(CacheError):
    """A warming job is already running in the deployment; ``job_id`` names it."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"warming job {job_id} is running")
        self.job_id = job_id


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JobProgress:
    """The progress of the running job, as its work reports it. Counts are in keys."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.skipped = 0
        self.errors = 0
        self.started = time.monotonic()

    def add(self, *, done: int = 0, skipped: int = 0, errors: int = 0) -> None:
        """Add the outcome of a batch."""
        self.done += done
        self.skipped += skipped
        self.errors += errors

    def fields(self) -> dict[str, int]:
        """Return the counts as stored in the job's hash."""
        return {
            "total": self.total,
            "done": self.done,
            "skipped": self.skipped,
            "errors": self.errors,
        }


#: The work of a job: fills the cache, reporting into the progress it is given.
JobWork = Callable[[JobProgress], Awaitable[None]]


class WarmingJobs:
    """Starts, runs, reports and cancels warming jobs. Safe to share between tasks.

    Args:
        redis: where the lock and the jobs' state live.
        scheme: the key scheme.
        instance: names the runner in a job's state (e.g. ``host:pid``).
        lease_seconds: the runner's lease, in seconds: a dead runner's job is failed this long
            after its last renewal, at most.
        keep_seconds: how long a job's state is kept after it was last updated, in seconds.
        progress_interval_seconds: time between two progress writes (and lease renewals),
            in seconds; at most a third of ``lease_seconds`` is used.

    The owner calls :meth:`aclose` at shutdown; it stops this process's runner, whose job is
    then recorded as failed.
    """

    def __init__(
        self,
        redis: Redis,
        scheme: KeyScheme,
        *,
        instance: str,
        lease_seconds: float = 10.0,
        keep_seconds: float = 86_400.0,
        progress_interval_seconds: float = 0.5,
    ) -> None:
        self._redis = redis
        self._scheme = scheme
        self._instance = instance
        self._lease_ms = int(lease_seconds * 1000)
        self._keep_seconds = int(keep_seconds)
        self._progress_interval = progress_interval_seconds
        self._renew = redis.register_script(_RENEW)
        self._unlock = redis.register_script(_UNLOCK)
        self._read = redis.register_script(_READ)
        self._runner: asyncio.Task[None] | None = None

    async def start(self, spec: Mapping[str, str | int], work: JobWork) -> str:
        """Start a job described by ``spec`` (stored with its state) that runs ``work``.

        Returns:
            The new job's id.

        Raises:
            WarmingBusyError: another job runs in the deployment.
            CacheUnavailableError: Redis failed.
        """
        job_id = secrets.token_hex(8)
        lock = self._scheme.warming_lock
        with translate_redis_errors("start a warming job"):
            if not await self._redis.set(lock, job_id, nx=True, px=self._lease_ms):
                running = await self._redis.get(lock)
                raise WarmingBusyError(_text(running) if running else "unknown")
            state: dict[Any, Any] = {
                **{k: str(v) for k, v in spec.items()},
                "job_id": job_id,
                "state": QUEUED,
                "instance": self._instance,
                "created_at": _now_text(),
                **dict.fromkeys(_COUNTS, "0"),
            }
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(self._scheme.warming_job(job_id), mapping=state)
                pipe.expire(self._scheme.warming_job(job_id), self._keep_seconds)
                pipe.set(self._scheme.warming_last, job_id, ex=self._keep_seconds)
                await pipe.execute()
        self._runner = asyncio.get_running_loop().create_task(
            self._run(job_id, work), name=f"warming-{job_id}"
        )
        return job_id

    async def wait(self) -> None:
        """Wait until this process's running job, if any, has ended."""
        if self._runner is not None:
            await asyncio.wait({self._runner})

    async def get(self, job_id: str) -> dict[str, Any] | None:
        """Return the state of ``job_id``; None when no such job is known.

        A job that claims to run while the lock no longer names it is recorded as failed.

        Returns:
            ``{"job_id", "state", "total", "done", "skipped", "errors", "keys_per_second",
            "eta_seconds", "created_at", "started_at", "finished_at", ...spec}``; times are
            RFC 3339 strings or None, rates in keys per second, the ETA in seconds or None.

        Raises:
            CacheUnavailableError: Redis failed.
        """
        with translate_redis_errors("read a warming job"):
            raw = await self._read(
                keys=[self._scheme.warming_job(job_id), self._scheme.warming_lock],
                args=[job_id, _now_text()],
            )
        return _fields(raw)

    async def current(self) -> dict[str, Any] | None:
        """Return the running job's state, or None when none runs.

        Raises:
            CacheUnavailableError: Redis failed.
        """
        with translate_redis_errors("read the warming lock"):
            holder = await self._redis.get(self._scheme.warming_lock)
        return None if holder is None else await self.get(_text(holder))

    async def last(self) -> dict[str, Any] | None:
        """Return the newest job's state (running or not), or None.

        Raises:
            CacheUnavailableError: Redis failed.
        """
        with translate_redis_errors("read the last warming job"):
            newest = await self._redis.get(self._scheme.warming_last)
        return None if newest is None else await self.get(_text(newest))

    def queue_summary(self, pipe: Pipeline) -> None:
        """Queue the read of the running and the newest job on ``pipe`` (one script, one reply).

        Its reply goes to :meth:`summary`, so that a caller with a pipeline of its own reads
        the jobs in the same round trip. A lapsed runner's job is recorded as failed there.
        """
        # EVAL, not EVALSHA: a pipeline of the caller's cannot retry a NOSCRIPT reply, and
        # Redis compiles the script once and keeps it by its digest anyway.
        pipe.eval(
            _SUMMARY,
            2,
            self._scheme.warming_lock,
            self._scheme.warming_last,
            self._scheme.warming_job(""),
            _now_text(),
        )

    async def summary(self, reply: list[Any] | None = None) -> dict[str, Any]:
        """Return the running job and the newest one that ended.

        Args:
            reply: the reply of what :meth:`queue_summary` queued; None reads it here.

        Returns:
            ``{"state": "running" or "idle", "current": job or None, "last_run": job or None}``.

        Raises:
            CacheUnavailableError: Redis failed.
        """
        if reply is None:
            with translate_redis_errors("read the warming jobs"):
                async with self._redis.pipeline(transaction=False) as pipe:
                    self.queue_summary(pipe)
                    (reply,) = await pipe.execute()
        current, last = (_fields(raw) for raw in reply)
        if current is not None and current["state"] not in ACTIVE_STATES:
            current = None  # it ended while it was read
        if last is not None and last["state"] in ACTIVE_STATES:
            last = None
        return {"state": "running" if current else "idle", "current": current, "last_run": last}

    async def cancel(self, job_id: str) -> dict[str, Any] | None:
        """Ask the runner of ``job_id`` to stop; return the job's state (None: unknown).

        A job that is no longer queued or running is left as it is (see its ``state``).

        Raises:
            CacheUnavailableError: Redis failed.
        """
        job = await self.get(job_id)
        if job is None or job["state"] not in ACTIVE_STATES:
            return job
        with translate_redis_errors("cancel a warming job"):
            await self._redis.hset(self._scheme.warming_job(job_id), "cancel_requested", "1")
        job["cancel_requested"] = True
        return job

    async def aclose(self) -> None:
        """Stop this process's runner, if one runs; its job is recorded as failed."""
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        await stop_task(runner)
        # A runner cancelled before its first step recorded nothing: its job ends here.
        job_id = runner.get_name().removeprefix("warming-")
        with contextlib.suppress(*REDIS_FAILURES):
            state = await self._redis.hget(self._scheme.warming_job(job_id), "state")
            if state is not None and _text(state) in ACTIVE_STATES:
                await self._write(
                    self._scheme.warming_job(job_id),
                    {"state": FAILED, "error": "the process shut down", "finished_at": _now_text()},
                )
                await self._unlock(keys=[self._scheme.warming_lock], args=[job_id])

    async def _run(self, job_id: str, work: JobWork) -> None:
        key = self._scheme.warming_job(job_id)
        progress = JobProgress()
        final: dict[str, str] = {}
        worker = asyncio.current_task()
        assert worker is not None
        stopped_for: list[str] = []

        async def renew_forever() -> None:
            while True:
                await asyncio.sleep(min(self._lease_ms / 3000, self._progress_interval))
                try:
                    verdict = await self._renew(
                        keys=[self._scheme.warming_lock, key], args=[job_id, self._lease_ms]
                    )
                except REDIS_FAILURES as exc:
                    logger.warning("warming job %s could not renew its lease: %r", job_id, exc)
                    continue
                if verdict != 1:
                    stopped_for.append(CANCELLED if verdict == 2 else FAILED)
                    worker.cancel()
                    return
                await self._write(key, progress.fields())

        renewal = asyncio.get_running_loop().create_task(renew_forever())
        try:
            await self._write(key, {"state": RUNNING, "started_at": _now_text()})
            await work(progress)
            final = {"state": DONE}
        except asyncio.CancelledError:
            reason = stopped_for[0] if stopped_for else FAILED
            final = {"state": reason}
            if reason == FAILED:
                final["error"] = "the runner stopped (lease lost or process shutting down)"
        except Exception as exc:
            logger.exception("warming job %s failed", job_id)
            final = {"state": FAILED, "error": repr(exc)[:500]}
        finally:
            await stop_task(renewal)
            final.setdefault("state", FAILED)
            final["finished_at"] = _now_text()
            with contextlib.suppress(*REDIS_FAILURES):
                await self._write(key, {**progress.fields(), **final})
                await self._unlock(keys=[self._scheme.warming_lock], args=[job_id])
            logger.info("warming job %s %s: %s", job_id, final["state"], progress.fields())

    async def _write(self, key: str, fields: Mapping[str, object]) -> None:
        with contextlib.suppress(*REDIS_FAILURES):
            await self._redis.hset(key, mapping={k: str(v) for k, v in fields.items()})


def _fields(raw: list[Any] | None) -> dict[str, Any] | None:
    """Return a job from an ``HGETALL`` reply (a flat list); None for an empty one."""
    if not raw:
        return None
    return _typed({_text(raw[i]): _text(raw[i + 1]) for i in range(0, len(raw), 2)})


def _typed(job: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(job)
    for name in _COUNTS:
        out[name] = int(job.get(name, "0"))
    out.pop("cancel_requested", None)
    out["cancel_requested"] = job.get("cancel_requested") == "1"
    for name in ("started_at", "finished_at"):
        out.setdefault(name, None)
    out.setdefault("error", None)
    processed = out["done"] + out["skipped"] + out["errors"]
    rate, eta = 0.0, None
    if out["started_at"]:
        end = out["finished_at"] or _now_text()
        elapsed = (_parse(end) - _parse(out["started_at"])).total_seconds()
        rate = processed / elapsed if elapsed > 0 else 0.0
        if out["state"] in ACTIVE_STATES and rate > 0:
            eta = max(0.0, (out["total"] - processed) / rate)
    out["keys_per_second"] = round(rate, 1)
    out["eta_seconds"] = None if eta is None else round(eta, 1)
    return out


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
