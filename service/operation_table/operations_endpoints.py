"""The operations endpoints' operations: for operators and their tools, not the content.

This document (``/openapi.json``), liveness and readiness, the statistics (``/stats``,
``/metrics``), the dashboard and its files, and cache administration (purge, warming jobs).
"""

from __future__ import annotations

from service import operations_representations as ops
from service import representations as rep
from service.admin_requests import PurgeRequest, WarmRequest
from service.endpoints.admin import WARM_PATH
from service.endpoints.dashboard import FILES
from service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from service.operation_table.answers import BAD_BODY, NO_QUERY, REDIS_DOWN, link, problems, writes
from service.operation_table.declarations import ADMIN, STATS, STRING, Answer, Operation
from service.operation_table.parameters import IF_NONE_MATCH, path_parameter
from service.problems import MEDIA_TYPE as PROBLEM


def operations_endpoints() -> tuple[Operation, ...]:
    """Return the operations endpoints' operations, in the document's order.

    The dashboard's file names and media types are those it serves
    (:data:`service.endpoints.dashboard.FILES`).
    """
    job = f"{WARM_PATH}/{{job_id}}"
    job_id = path_parameter("job_id", "the job's id, as its start answered", STRING)
    no_store = ("Cache-Control",)
    files = sorted(name for name in FILES if name != "index.html")
    file_types = tuple(sorted({FILES[name][1].split(";")[0] for name in files}))
    stats_problems = problems(
        {
            400: NO_QUERY,
            401: "a stats token is set and the request bears neither it nor an admin token",
        }
    )
    return (
        Operation(
            "GET",
            "/openapi.json",
            "getOpenApiDocument",
            "documentation",
            "This document",
            {
                200: Answer(
                    "the OpenAPI 3.1 document",
                    schema={"type": "object"},
                    headers=("ETag", "Cache-Control"),
                ),
                304: Answer(
                    "If-None-Match names the current ETag: no body",
                    media_types=(),
                    headers=("ETag", "Cache-Control"),
                ),
            },
            parameters=(IF_NONE_MATCH,),
        ),
        Operation(
            "GET",
            "/health/live",
            "getLiveness",
            "health",
            "Liveness: 200 while the process runs",
            {200: Answer("the process runs", ops.Liveness, headers=no_store)},
        ),
        Operation(
            "GET",
            "/health/ready",
            "getReadiness",
            "health",
            "Readiness: whether a load balancer should send this instance requests",
            {
                200: Answer(
                    "ok, or degraded while one of Redis and PostgreSQL does not answer",
                    ops.Readiness,
                    headers=no_store,
                ),
                503: Answer(
                    "starting, draining after SIGTERM, or neither Redis nor PostgreSQL answers "
                    "(the problem's readiness member says which)",
                    rep.Problem,
                    (PROBLEM,),
                    headers=("Retry-After",),
                ),
            },
        ),
        Operation(
            "GET",
            "/stats",
            "getStats",
            "statistics",
            "Cache, rates, pools per worker, Redis, outbox, breakers and warming",
            {200: Answer("the figures", ops.Stats, headers=no_store), **stats_problems},
            description=(
                "Cache counters are totals over every worker and instance sharing the Redis, "
                "since the last purge of all; pool figures are sums over the live workers, each "
                "listed. A poll costs no PostgreSQL query."
            ),
            security=STATS,
        ),
        Operation(
            "GET",
            "/metrics",
            "getMetrics",
            "statistics",
            "Prometheus text exposition of this instance (the sum of its workers)",
            {
                200: Answer(
                    "the metrics",
                    media_types=(METRICS_CONTENT_TYPE.split(";")[0],),
                    schema=STRING,
                    headers=no_store,
                ),
                **stats_problems,
            },
            security=STATS,
        ),
        Operation(
            "GET",
            "/dashboard",
            "getDashboard",
            "dashboard",
            "The operators' dashboard (its script polls /stats, asking for the stats token)",
            {200: Answer("the page", media_types=("text/html",), schema=STRING, headers=no_store)},
        ),
        Operation(
            "GET",
            "/dashboard/{name}",
            "getDashboardFile",
            "dashboard",
            "A script or stylesheet of the dashboard",
            {
                200: Answer(
                    "the file", media_types=file_types, schema=STRING, headers=("ETag", *no_store)
                ),
                304: Answer(
                    "If-None-Match names the file's ETag: no body",
                    media_types=(),
                    headers=("ETag", *no_store),
                ),
                **problems({404: "the dashboard has no such file"}),
            },
            parameters=(path_parameter("name", "the file's name", {"enum": files}), IF_NONE_MATCH),
        ),
        Operation(
            "POST",
            "/admin/cache/purge",
            "purgeCache",
            "cache",
            "Delete the entries of one namespace, or of all (which also resets the counters)",
            {
                200: Answer("what was purged", ops.Purged, headers=no_store),
                **problems({400: f"{BAD_BODY}; or the namespace is unknown"}),
                **writes("admin", down=REDIS_DOWN),
            },
            body=PurgeRequest,
            security=ADMIN,
        ),
        Operation(
            "POST",
            WARM_PATH,
            "startWarming",
            "cache",
            "Start a warming job (one at a time per deployment)",
            {
                202: Answer(
                    "the job is queued",
                    ops.WarmingStarted,
                    headers=("Location", *no_store),
                    links=(link("job", "getWarmingJob", "job_id", "/job_id"),),
                ),
                **problems(
                    {
                        400: f"{BAD_BODY}; or the namespace is unknown, source keys comes without "
                        "keys, keys without source keys, or a key is not namespace:identity",
                        409: "a job runs: the problem's job_id member names it",
                    }
                ),
                **writes("admin", down=REDIS_DOWN),
            },
            description="No body at all: the hottest keys of every namespace.",
            body=WarmRequest,
            body_required=False,
            security=ADMIN,
        ),
        Operation(
            "GET",
            job,
            "getWarmingJob",
            "cache",
            "A warming job's state and progress",
            {
                200: Answer("the job", ops.WarmingJob, headers=no_store),
                **problems({400: NO_QUERY, 404: "no such job (or it ended too long ago)"}),
                **writes("admin", body=False, down=REDIS_DOWN),
            },
            parameters=(job_id,),
            security=ADMIN,
        ),
        Operation(
            "DELETE",
            job,
            "cancelWarmingJob",
            "cache",
            "Cancel a queued or running warming job",
            {
                202: Answer(
                    "cancelling: the job stops at its next step", ops.WarmingJob, headers=no_store
                ),
                **problems(
                    {
                        400: NO_QUERY,
                        404: "no such job (or it ended too long ago)",
                        409: "the job has ended: nothing to cancel",
                    }
                ),
                **writes("admin", body=False, down=REDIS_DOWN),
            },
            parameters=(job_id,),
            security=ADMIN,
        ),
    )
