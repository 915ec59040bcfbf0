"""The service's exception tree; each error knows the problem document it answers with.

Raised by the content service and the endpoints; turned into RFC 9457 problem documents at one
place (:mod:`service.problems`). Errors of asyncpg and SQLAlchemy are translated there too.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ServiceError(Exception):
    """Root of the service's errors.

    Attributes:
        status: the HTTP status it answers with.
        title: a short, fixed summary of the problem type.
        slug: the last segment of the problem type URI.
        detail: what happened in this occurrence.
        extra: more members of the problem document.
    """

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    slug: ClassVar[str] = "internal-error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class InvalidInputError(ServiceError):
    """A parameter or body member is unknown or breaks its rule."""

    status = 400
    title = "Invalid input"
    slug = "invalid-input"


class UnauthorizedError(ServiceError):
    """No bearer token, or one that is not configured."""

    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class ForbiddenError(ServiceError):
    """A token whose role is too low for the action."""

    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFoundError(ServiceError):
    """The resource, or the entity a filter names, does not exist (or is not visible)."""

    status = 404
    title = "Not found"
    slug = "not-found"


class ConflictError(ServiceError):
    """The write clashes with the current state (a slug taken, an author with articles)."""

    status = 409
    title = "Conflict"
    slug = "conflict"


class PreconditionFailedError(ServiceError):
    """``If-Match`` does not match the current representation."""

    status = 412
    title = "Precondition failed"
    slug = "precondition-failed"


class UnavailableError(ServiceError):
    """PostgreSQL cannot be reached, or no connection came free in time."""

    status = 503
    title = "Service unavailable"
    slug = "unavailable"


class UnsupportedMediaTypeError(ServiceError):
    """A write body that is not JSON."""

    status = 415
    title = "Unsupported media type"
    slug = "unsupported-media-type"


class ContentTooLargeError(ServiceError):
    """A write body over the size limit of :mod:`service.responses`."""

    status = 413
    title = "Content too large"
    slug = "content-too-large"


def is_unreachable(exc: BaseException) -> bool:
    """Return whether ``exc`` says PostgreSQL cannot be reached (not that a statement failed).

    True for socket errors and timeouts, and for SQLAlchemy's operational and interface errors
    and errors that invalidated their connection (asyncpg's lost connections and refused
    starts arrive as those).
    """
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(exc, OSError | InterfaceError | OperationalError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated
