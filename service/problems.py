"""RFC 9457 problem documents, and the one place where errors become them.

Every error answer is ``application/problem+json`` with ``type``, ``title``, ``status`` and
``detail``; a 5xx never carries a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ConfigDict, ValidationError, with_config
from pydantic_core import ErrorDetails
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from typing_extensions import TypedDict

from service.errors import ServiceError
from service.schemas import PATTERN_RULES

logger = logging.getLogger(__name__)

TYPE_BASE = "https://content-service.example/problems/"
MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = 2


# typing_extensions' TypedDict: pydantic describes it (in the OpenAPI document) on Python 3.11.
@with_config(ConfigDict(extra="forbid"))
class FailedMember(TypedDict):
    """One failed member of a 400 problem's ``errors`` list.

    ``member`` is the dotted path of the member or query parameter (null for the whole
    input); ``message`` says what is wrong with it.
    """

    member: str | None
    message: str


_TITLES = {
    400: "Invalid input",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    412: "Precondition failed",
    413: "Content too large",
    415: "Unsupported media type",
    500: "Internal error",
    503: "Service unavailable",
}


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    type_slug: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """Return a problem document response.

    Args:
        status: the HTTP status.
        detail: what went wrong in this occurrence, for a person.
        title: the problem type's summary; a standard one for ``status`` when None.
        type_slug: the last segment of the type URI; derived from the title when None.
        headers: extra response headers.
        **extra: more members of the document.
    """
    body = problem_bytes(status, detail, title=title, type_slug=type_slug, **extra)
    return Response(body, status, headers=headers, media_type=MEDIA_TYPE)


def problem_bytes(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    type_slug: str | None = None,
    **extra: Any,
) -> bytes:
    """Return the serialized problem document (RFC 9457) of :func:`problem`'s arguments."""
    title = title or _TITLES.get(status, "Error")
    type_slug = type_slug or title.lower().replace(" ", "-")
    body = {
        "type": TYPE_BASE + type_slug,
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    return orjson.dumps(body)


def error_bytes(exc: ServiceError) -> bytes:
    """Return the problem document that answers ``exc``, serialized (for a cached 404)."""
    return problem_bytes(exc.status, exc.detail, title=exc.title, type_slug=exc.slug, **exc.extra)


async def on_service_error(request: Request, exc: Exception) -> Response:
    """Answer a :class:`ServiceError` with its problem document."""
    assert isinstance(exc, ServiceError)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if exc.status == 503 else None
    if exc.status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="content-service"'}
    return problem(
        exc.status, exc.detail, title=exc.title, type_slug=exc.slug, headers=headers, **exc.extra
    )


def _rule(error: ErrorDetails) -> str:
    """The message of one failed check, for a person.

    A pattern's rule in words when :data:`service.schemas.PATTERN_RULES` has them; a
    validator's own message without pydantic's "Value error, " in front.
    """
    context = error.get("ctx", {})
    if error["type"] == "string_pattern_mismatch":
        rule = PATTERN_RULES.get(str(context.get("pattern")))
        if rule is not None:
            return rule
    if error["type"] == "value_error" and "error" in context:
        return str(context["error"])
    return error["msg"]


def failed_members(exc: ValidationError, *within: str) -> list[FailedMember]:
    """Return each failed check of ``exc``: the member's dotted path, and what it broke.

    Args:
        exc: the validation error.
        *within: path segments put in front of each member's (e.g. the path parameter's name).
    """
    return [
        {"member": ".".join((*within, *(str(p) for p in e["loc"]))) or None, "message": _rule(e)}
        for e in exc.errors(include_url=False, include_input=False)
    ]


def failures_detail(errors: list[FailedMember]) -> str:
    """Return the ``detail`` of a 400 problem that lists ``errors``, one clause each."""
    return "; ".join(
        f"{e['member']}: {e['message']}" if e["member"] else e["message"] for e in errors
    )


async def on_validation_error(request: Request, exc: Exception) -> Response:
    """Answer a pydantic validation error with a 400 listing each failed member."""
    assert isinstance(exc, ValidationError)
    errors = failed_members(exc)
    return problem(400, failures_detail(errors), errors=errors)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    """Answer Starlette's own errors (unknown path, wrong method) as problems."""
    assert isinstance(exc, HTTPException)
    return problem(exc.status_code, str(exc.detail), headers=exc.headers)


def _is_bad_data(exc: Exception) -> bool:
    """Whether PostgreSQL refused a value (SQLSTATE class 22, such as a NUL character)."""
    if isinstance(exc, DataError):
        return True
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return isinstance(sqlstate, str) and sqlstate.startswith("22")


async def on_database_error(request: Request, exc: Exception) -> Response:
    """Answer a database failure: 409 for a constraint a race broke, else 503 with Retry-After."""
    if isinstance(exc, IntegrityError):
        return problem(409, "the write conflicts with the current data; read it and try again")
    if _is_bad_data(exc):
        return problem(400, "the input holds a value the database cannot store or compare")
    logger.warning("database unavailable: %r", exc)
    return problem(
        503,
        "the database is unavailable; try again shortly",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def on_unexpected_error(request: Request, exc: Exception) -> Response:
    """Answer any other error with a bare 500 problem; the traceback goes to the log only."""
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "an unexpected error occurred; it has been logged")


#: The handlers to give ``Starlette(exception_handlers=...)``.
EXCEPTION_HANDLERS: dict[Any, Any] = {
    ServiceError: on_service_error,
    ValidationError: on_validation_error,
    HTTPException: on_http_exception,
    DBAPIError: on_database_error,  # IntegrityError and OperationalError are subclasses
    PoolTimeoutError: on_database_error,
    OSError: on_database_error,
    Exception: on_unexpected_error,
}
