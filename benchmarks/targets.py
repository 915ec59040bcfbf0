"""The targets of the benchmark, declared once: what each measures, where, and how it is judged.

Everything else (the servers started, the statuses accepted, the anchors of the ratios, the
check column, the goals) is derived from :data:`TARGETS`.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.measure import Measurement


@dataclass(frozen=True)
class TargetSpec:
    """What a target is and how its answers are judged.

    Attributes:
        name: the target's name on the command line and in the tables.
        description: one line for the results page.
        server: the server it loads: ``constant``, ``redis_get``, ``asyncpg``, ``service``
            (whose article entries are all loaded first), ``service_tracked`` and
            ``service_untracked`` (two more workers on the same entries, which did not load
            them: hot-key tracking on and off) or ``service_miss`` (purged before each round).
        statuses: the statuses it may answer; any other is an error.
        connections: wrk's connections, or None for the command's ``--connections``.
        anchor: the target whose median its ratios are taken to, or None.
        checks: the shares shown in the check column: ``HIT`` and ``MISS`` (of ``X-Cache``),
            ``gzip`` (of ``Content-Encoding``), ``l1`` (``Cache-Status`` with ``detail=l1``:
            answered from the in-process tier), or a status code.
        p50_goal_ms: when set, the target's p50 goal in milliseconds (shown as met or not).
        ratio_goal: when set, the minimum ratio to the anchor that is the target's goal.
    """

    name: str
    description: str
    server: str
    statuses: tuple[str, ...] = ("200",)
    connections: int | None = None
    anchor: str | None = None
    checks: tuple[str, ...] = ()
    p50_goal_ms: float | None = None
    ratio_goal: float | None = None

    def check_share(self, check: str, m: Measurement) -> float:
        """Return the share of the run's answers that ``check`` (one of :attr:`checks`) counts."""
        if check in ("HIT", "MISS"):
            return m.share(m.caches, check)
        if check == "gzip":
            return m.share(m.encodings, check)
        if check == "l1":
            return m.share(m.details, check)
        return m.share(m.statuses, check)


#: Every target, in the order of a round.
TARGETS = (
    TargetSpec("constant", "Starlette answering constant bytes", "constant"),
    TargetSpec("redis_get", "Starlette + one redis-py GET of the article's stored entry",
               "redis_get", anchor="constant"),
    TargetSpec("asyncpg", "Starlette + one asyncpg join query per request, orjson, no cache",
               "asyncpg", anchor="redis_get"),
    TargetSpec("asyncpg_uniform", "asyncpg, slugs uniform (the base of miss)", "asyncpg"),
    TargetSpec("hit_zipf", "service GET of a cached article, Zipfian slugs", "service",
               anchor="redis_get", checks=("HIT",)),
    TargetSpec("hit_tracked", "hit_zipf on a second worker (tracking on, the default)",
               "service_tracked", anchor="redis_get", checks=("HIT",)),
    TargetSpec("hit_untracked", "hit_zipf on a third worker with hot-key tracking off",
               "service_untracked", anchor="redis_get", checks=("HIT",)),
    TargetSpec("hit_uniform", "service GET of a cached article, uniform slugs", "service",
               anchor="redis_get", checks=("HIT",)),
    TargetSpec("hit_gzip", "hit_zipf with Accept-Encoding: gzip", "service",
               anchor="redis_get", checks=("HIT", "gzip")),
    TargetSpec("revalidate_304", "If-None-Match with the current ETag, Zipfian over a sample",
               "service", statuses=("304", "200"), anchor="redis_get", checks=("304",)),
    TargetSpec("miss", "cold sweep: every request a new slug after a purge", "service_miss",
               anchor="asyncpg_uniform", checks=("MISS",), ratio_goal=0.9),
    TargetSpec("post", "article POST, unique slugs, one connection", "service",
               statuses=("201",), connections=1, p50_goal_ms=3),
    TargetSpec("patch", "article PATCH of a few articles, one connection", "service",
               connections=1, p50_goal_ms=3),
)  # fmt: skip

#: The targets by name.
SPECS = {spec.name: spec for spec in TARGETS}
