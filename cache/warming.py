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

from cache.background import stop_task
from cache.errors import REDIS_FAILURES, CacheError, translate_redis_errors
from cache.keys import KeyScheme
from cache.routing import AnyPipeline, RedisClient

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

# A job that says it runs while the lock does not name it lost its runner: it is recorded as
# failed (and as the newest that ended), atomically with its read. KEYS[1]: the lock, KEYS[2]:
# the id of the newest ended job; ARGV[1]: the job keys' prefix, ARGV[2]: now, ARGV[3]: how
# long a job is kept, seconds.
_LAPSE = """
local function read(id)
  if not id then return {} end
  local key = ARGV[1] .. id
  local state = redis.call('HGET', key, 'state')
  if (state == 'queued' or state == 'running') and redis.call('GET', KEYS[1]) ~= id then
    redis.call('HSET', key, 'state', 'failed', 'finished_at', ARGV[2],
               'error', 'the runner stopped renewing its lease')
    redis.call('EXPIRE', key, ARGV[3])
    redis.call('SET', KEYS[2], id, 'EX', ARGV[3])
  end
  return redis.call('HGETALL', key)
end
"""

# ARGV[4]: the job's id. Its state.
_READ = _LAPSE + "return read(ARGV[4])"

# The running job and the newest that ended (when it is another): {running, ended}.
_SUMMARY = (
    _LAPSE
    + """
local running = redis.call('GET', KEYS[1])
local current = read(running)
local ended = redis.call('GET', KEYS[2])
local last = {}
if ended and ended ~= running then last = read(ended) end
return {current, last}
"""
)

# KEYS: job; ARGV: field, value, ... Written only while the job is queued or running, so that
# nothing overwrites the end a reader recorded for a lapsed runner. 1 when written.
_UPDATE = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# KEYS: job, lock, newest ended; ARGV: job id, seconds kept, field, value, ... The job's end:
# written while it is active, kept for ARGV[2] seconds from now; the lock released if it is
# the job's.
_FINISH = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'queued' or state == 'running' then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3))
  redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
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
        keep_seconds: how long a job's state is kept after it ended, in seconds.
        progress_interval_seconds: time between two progress writes (and lease renewals),
            in seconds; at most a third of ``lease_seconds`` is used.

    The owner calls :meth:`aclose` at shutdown; it stops this process's runners, whose jobs
    are then recorded as failed.
    """

    def __init__(
        self,
        redis: RedisClient,
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
        self._read = redis.register_script(_READ)
        self._update = redis.register_script(_UPDATE)
        self._finish = redis.register_script(_FINISH)
        self._runners: dict[str, asyncio.Task[None]] = {}

    async def start(self, spec: Mapping[str, str | int], work: JobWork) -> str:
        """Start a job that runs ``work`` in a task of this process; return its id.

        Args:
            spec: what the job is, stored with its state and answered with it (e.g.
                ``{"source": "hot", "limit": 1000}``; ``limit`` is answered as an integer).
            work: fills the cache and reports into the :class:`JobProgress` it is given; it
                is cancelled when the job is cancelled or its lease is lost.

        Raises:
            WarmingBusyError: another job runs in the deployment.
            CacheUnavailableError: Redis failed (no job was started).
        """
        job_id = secrets.token_hex(8)
        lock = self._scheme.warming_lock
        with translate_redis_errors("start a warming job"):
            while not await self._redis.set(lock, job_id, nx=True, px=self._lease_ms):
                running = await self._redis.get(lock)
                if running is not None:  # else it lapsed since: try again
                    raise WarmingBusyError(_text(running))
            state: dict[Any, Any] = {
                **{k: str(v) for k, v in spec.items()},
                "job_id": job_id,
                "state": QUEUED,
                "instance": self._instance,
                "created_at": _now_text(),
                **dict.fromkeys(_COUNTS, "0"),
            }
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.hset(self._scheme.warming_job(job_id), mapping=state)
                    pipe.expire(self._scheme.warming_job(job_id), self._keep_seconds)
                    await pipe.execute()
            except BaseException:
                with contextlib.suppress(*REDIS_FAILURES):
                    await self._end(job_id, {"state": FAILED, "error": "could not start"})
                raise
        runner = asyncio.get_running_loop().create_task(
            self._run(job_id, work), name=f"warming-{job_id}"
        )
        self._runners[job_id] = runner
        runner.add_done_callback(lambda _: self._runners.pop(job_id, None))
        return job_id

    async def wait(self) -> None:
        """Wait until the jobs this process runs have ended."""
        if self._runners:
            await asyncio.wait(set(self._runners.values()))

    async def get(self, job_id: str) -> dict[str, Any] | None:
        """Return the state of ``job_id``; None when no such job is known.

        A job that claims to run while the lock no longer names it is recorded as failed.

        Returns:
            ``{"job_id", "state", "source", "total", "done", "skipped", "errors",
            "keys_per_second", "eta_seconds", "created_at", "started_at", "finished_at",
            "error", "cancel_requested", ...spec}``; times are RFC 3339 strings or None, the
            rate in keys per second, the ETA in seconds or None, ``error`` a text or None.

        Raises:
            CacheUnavailableError: Redis failed.
        """
        with translate_redis_errors("read a warming job"):
            raw = await self._read(keys=self._lapse_keys(), args=[*self._lapse_args(), job_id])
        return _fields(raw)

    def queue_summary(self, pipe: AnyPipeline) -> None:
        """Queue the read of the running job and the newest that ended on ``pipe`` (one reply).

        Its reply goes to :meth:`summary`, so that a caller with a pipeline of its own reads
        the jobs in the same round trip. A lapsed runner's job is recorded as failed there.
        """
        # EVAL, not EVALSHA: a pipeline of the caller's cannot retry a NOSCRIPT reply, and
        # Redis compiles the script once and keeps it by its digest anyway.
        pipe.eval(_SUMMARY, 2, *self._lapse_keys(), *self._lapse_args())

    async def summary(self, reply: list[Any] | None = None) -> dict[str, Any]:
        """Return the running job and the newest one that ended.

        Args:
            reply: the reply of what :meth:`queue_summary` queued; None reads it here.

        Returns:
            ``{"state": "running" or "idle", "current": job or None, "last_run": job or None}``,
            each job as :meth:`get` answers it.

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
        return {"state": "running" if current else "idle", "current": current, "last_run": last}

    @staticmethod
    def is_active(job: Mapping[str, Any]) -> bool:
        """Whether ``job`` (as :meth:`get` answers it) is queued or running."""
        return job["state"] in ACTIVE_STATES

    async def cancel(self, job_id: str) -> dict[str, Any] | None:
        """Ask the runner of ``job_id`` to stop; return the job's state (None: unknown).

        A job that is no longer queued or running is left as it is (see its ``state``); the
        runner stops at its next lease renewal, and records the job as cancelled.

        Raises:
            CacheUnavailableError: Redis failed.
        """
        job = await self.get(job_id)
        if job is None or job["state"] not in ACTIVE_STATES:
            return job
        with translate_redis_errors("cancel a warming job"):
            await self._update(
                keys=[self._scheme.warming_job(job_id)], args=["cancel_requested", "1"]
            )
        job["cancel_requested"] = True
        return job

    async def aclose(self) -> None:
        """Stop this process's runners; their jobs are recorded as failed."""
        for job_id, runner in list(self._runners.items()):
            await stop_task(runner)
            # A runner stopped before its first step recorded nothing: its job ends here.
            with contextlib.suppress(*REDIS_FAILURES):
                await self._end(job_id, {"state": FAILED, "error": "the process shut down"})
        self._runners.clear()

    def _lapse_keys(self) -> list[str]:
        return [self._scheme.warming_lock, self._scheme.warming_last]

    def _lapse_args(self) -> list[str | int]:
        return [self._scheme.warming_job(""), _now_text(), self._keep_seconds]

    async def _end(self, job_id: str, fields: Mapping[str, object]) -> None:
        """Record the end of ``job_id`` (if it is still active) and release its lock.

        Raises:
            Redis errors.
        """
        pairs = [str(x) for kv in {**fields, "finished_at": _now_text()}.items() for x in kv]
        await self._finish(
            keys=[
                self._scheme.warming_job(job_id),
                self._scheme.warming_lock,
                self._scheme.warming_last,
            ],
            args=[job_id, self._keep_seconds, *pairs],
        )

    async def _write(self, job_id: str, fields: Mapping[str, object]) -> None:
        """Write ``fields`` while the job is active (fail-open: a failed write is skipped)."""
        pairs = [str(x) for kv in fields.items() for x in kv]
        with contextlib.suppress(*REDIS_FAILURES):
            await self._update(keys=[self._scheme.warming_job(job_id)], args=pairs)

    async def _run(self, job_id: str, work: JobWork) -> None:
        progress = JobProgress()
        final: dict[str, object] = {}
        worker = asyncio.current_task()
        assert worker is not None
        stopped_for: list[str] = []

        async def renew_forever() -> None:
            while True:
                await asyncio.sleep(min(self._lease_ms / 3000, self._progress_interval))
                try:
                    verdict = await self._renew(
                        keys=[self._scheme.warming_lock, self._scheme.warming_job(job_id)],
                        args=[job_id, self._lease_ms],
                    )
                except REDIS_FAILURES as exc:
                    logger.warning("warming job %s could not renew its lease: %r", job_id, exc)
                    continue
                if verdict != 1:
                    stopped_for.append(CANCELLED if verdict == 2 else FAILED)
                    worker.cancel()
                    return
                await self._write(job_id, progress.fields())

        renewal = asyncio.get_running_loop().create_task(renew_forever())
        try:
            await self._write(job_id, {"state": RUNNING, "started_at": _now_text()})
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
            try:
                await self._end(job_id, {**progress.fields(), **final})
            except REDIS_FAILURES as exc:
                logger.warning("warming job %s: its end was not recorded: %r", job_id, exc)
            logger.info("warming job %s %s: %s", job_id, final["state"], progress.fields())


def _fields(raw: list[Any] | None) -> dict[str, Any] | None:
    """Return a job from an ``HGETALL`` reply (a flat list); None for an empty one."""
    if not raw:
        return None
    return _typed({_text(raw[i]): _text(raw[i + 1]) for i in range(0, len(raw), 2)})


def _typed(job: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(job)
    for name in (*_COUNTS, "limit"):
        if name in job or name in _COUNTS:
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
