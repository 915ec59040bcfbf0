"""Cache administration: purge, and warming jobs."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cache import CacheUnavailableError, WarmingBusyError
from service.admin_requests import PurgeRequest, WarmRequest
from service.endpoints import ctx
from service.errors import ConflictError, NotFoundError, UnavailableError
from service.responses import body, json_response, no_query

WARM_PATH = "/admin/cache/warm"


async def purge(request: Request) -> Response:
    """Delete the entries of one namespace, or everything (``all``, which also resets stats)."""
    state = ctx(request)
    state.auth.require(request, "admin")
    no_query(request)
    data = await body(request, PurgeRequest)
    try:
        if data.namespace == "all":
            purged = await state.invalidator.purge(None)
            await state.stats.reset()
            if state.settings.warm_after_purge:
                await state.warming.try_start(WarmRequest())
        else:
            purged = await state.invalidator.purge(data.namespace)
    except CacheUnavailableError as exc:
        raise UnavailableError("Redis is unavailable; nothing could be purged") from exc
    return json_response({"purged": purged})


async def warm_start(request: Request) -> Response:
    """Start a warming job: 202 with its id and ``Location``; 409 while another one runs."""
    state = ctx(request)
    state.auth.require(request, "admin")
    no_query(request)
    # The body's rules (known namespace; keys with source "keys" only, each parseable) are
    # the model's: see service.admin_requests.WarmRequest.
    data = await body(request, WarmRequest, empty=WarmRequest())
    try:
        job_id = await state.warming.start(data)
    except WarmingBusyError as exc:
        raise ConflictError(f"warming job {exc.job_id} is running", job_id=exc.job_id) from exc
    except CacheUnavailableError as exc:
        raise UnavailableError("Redis is unavailable; no warming job was started") from exc
    location = f"{WARM_PATH}/{job_id}"
    return json_response(
        {"job_id": job_id, "state": "queued", "location": location},
        202,
        headers={"Location": location},
    )


async def warm_job(request: Request) -> Response:
    """GET: the job's state; DELETE: cancel it (202). 404 for an unknown job."""
    state = ctx(request)
    state.auth.require(request, "admin")
    no_query(request)
    job_id = request.path_params["job_id"]
    try:
        if request.method == "DELETE":
            job = await state.warming.jobs.cancel(job_id)
        else:
            job = await state.warming.jobs.get(job_id)
    except CacheUnavailableError as exc:
        raise UnavailableError("Redis is unavailable; warming jobs cannot be read") from exc
    if job is None:
        raise NotFoundError(f"no warming job {job_id!r}")
    if request.method == "DELETE":
        if not state.warming.jobs.is_active(job):
            raise ConflictError(f"warming job {job_id} is {job['state']}; nothing to cancel")
        return json_response(job, 202)
    return json_response(job)
