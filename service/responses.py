"""Rendering of cached answers: the stored bytes, their ETag, and the cache headers.

Also the parsing that every endpoint shares: query parameters and JSON bodies.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from cache import Lookup
from service.documents import dumps
from service.errors import ContentTooLargeError, InvalidInputError, UnsupportedMediaTypeError

M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 4 * 1024 * 1024
JSON = "application/json"
_JSON_BYTES = JSON.encode()
_PROBLEM = b"application/problem+json"


def etag_matches(header: str, etag: str) -> bool:
    """Return whether ``If-None-Match`` names ``etag`` (weak comparison, RFC 9110 13.1.2)."""
    if header.strip() == "*":
        return True
    return any(c.strip().removeprefix("W/") == etag for c in header.split(","))


class CachedResponse(Response):
    """The answer to a cached read: 304 when ``If-None-Match`` names its ETag.

    A cached absence (status 404) is a problem document, never a 304.

    Headers: ``ETag``; ``Cache-Control: public, max-age=N`` with N the smaller of the cap and
    the seconds the entry stays fresh; ``X-Cache`` with where the answer came from.

    Starlette's ``Response`` would take a dict, lower-case and encode each header; here the
    four or five headers of a cached answer are known, so they are written once, encoded.
    """

    def __init__(self, request: Request, lookup: Lookup, max_age_cap_seconds: int) -> None:
        max_age = min(max_age_cap_seconds, lookup.fresh_for_seconds)
        headers = [
            (b"etag", lookup.etag.encode("ascii")),
            (b"cache-control", b"public, max-age=%d" % max_age),
            (b"x-cache", lookup.state.value.encode("ascii")),
        ]
        inm = request.headers.get("if-none-match")
        if inm is not None and lookup.status == 200 and etag_matches(inm, lookup.etag):
            self.status_code, self.body = 304, b""
        else:
            self.status_code, self.body = lookup.status, lookup.body
            headers.append((b"content-length", b"%d" % len(lookup.body)))
            headers.append((b"content-type", _JSON_BYTES if lookup.status == 200 else _PROBLEM))
        self.raw_headers = headers
        self.background = None


def json_response(
    document: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """Return an uncached JSON answer (``Cache-Control: no-store``)."""
    body = dumps(document)
    return Response(
        body, status, headers={"Cache-Control": "no-store", **(headers or {})}, media_type=JSON
    )


def query(request: Request, model: type[M]) -> M:
    """Validate the query string with ``model``; a repeated or unknown parameter is a 400.

    Raises:
        InvalidInputError: a parameter is given twice.
        pydantic.ValidationError: a parameter is unknown or breaks its rule.
    """
    items = request.query_params.multi_items()
    params = dict(items)
    if len(params) != len(items):
        raise InvalidInputError("a query parameter is given more than once")
    return model.model_validate(params)


def no_query(request: Request) -> None:
    """Refuse any query parameter on an endpoint that takes none.

    Raises:
        InvalidInputError: some parameter was given.
    """
    if request.scope["query_string"] and request.query_params:
        names = ", ".join(sorted(request.query_params.keys()))
        raise InvalidInputError(f"unknown query parameters: {names}")


async def body(request: Request, model: type[M]) -> M:
    """Read and validate a JSON object body.

    Raises:
        UnsupportedMediaTypeError: the content type is not JSON.
        ContentTooLargeError: the body is over :data:`MAX_BODY_BYTES`.
        InvalidInputError: the body is not a JSON object.
        pydantic.ValidationError: a member is unknown or breaks its rule.
    """
    media = request.headers.get("content-type", JSON).split(";")[0].strip().lower()
    if media != JSON and not (media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaTypeError("send the body as application/json")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ContentTooLargeError(f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInputError("the body must be a JSON object")
    return model.model_validate(data)
