"""Rendering of cached answers: the stored bytes, their ETag, and the cache headers.

Also the parsing that every endpoint shares: query parameters and JSON bodies.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from cache import CacheState, Lookup
from service.documents import dumps
from service.errors import ContentTooLargeError, InvalidInputError, UnsupportedMediaTypeError
from service.schemas import MAX_JSON_DEPTH, MAX_JSON_STRING_CHARS

M = TypeVar("M", bound=BaseModel)

JSON = "application/json"
_JSON_BYTES = JSON.encode()
_PROBLEM = b"application/problem+json"


def etag_matches(header: str, etag: str) -> bool:
    """Return whether ``If-None-Match`` names ``etag`` (weak comparison, RFC 9110 13.1.2)."""
    if header.strip() == "*":
        return True
    return any(c.strip().removeprefix("W/") == etag for c in header.split(","))


_SERVER_ORDER = {"br": 0, "gzip": 1, "identity": 2}


@functools.lru_cache(maxsize=256)
def accepted_codings(header: str) -> tuple[str, ...]:
    """Return the codings an ``Accept-Encoding`` value accepts, most preferred first.

    Preference is the client's quality value (RFC 9110 12.5.3), then the service's order
    (``br``, ``gzip``, ``identity``). ``identity`` is acceptable, last, unless refused with
    ``q=0`` (directly or through ``*``); ``*`` stands for any coding not named. Parsed once per
    distinct header value (the 256 most recent).
    """
    weights: dict[str, float] = {}
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        weight = 1.0
        name, _, value = params.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                weight = float(value)
            except ValueError:
                weight = 0.0
        weights[coding] = weight
    star = weights.get("*")
    ranked = []
    for coding, order in _SERVER_ORDER.items():
        # Identity, unless named, is acceptable but the least preferred (RFC 9110 12.5.3).
        unnamed = star if star is not None else (0.001 if coding == "identity" else 0.0)
        weight = weights.get(coding, unnamed)
        if weight > 0:
            ranked.append((-weight, order, coding))
    return tuple(coding for *_, coding in sorted(ranked))


def choose_representation(
    lookup: Lookup, accept_encoding: str | None
) -> tuple[bytes, str, bytes | None]:
    """Return (body, ETag, coding) of the representation of ``lookup`` to answer with.

    The coding is None for identity. Identity is answered when nothing better is stored or
    accepted, even when the client refused it: a 406 would help nobody.
    """
    if accept_encoding and lookup.encoded:
        for coding in accepted_codings(accept_encoding):
            if coding == "identity":
                break
            for rep in lookup.encoded:
                if rep.coding == coding:
                    return rep.body, rep.etag, _CODING_BYTES[coding]
    return lookup.body, lookup.etag, None


_CODING_BYTES = {"gzip": b"gzip", "br": b"br"}
_VARY = (b"vary", b"accept-encoding")
_CACHE_STATUS = {
    CacheState.HIT: b"content-service; hit",
    CacheState.STALE: b"content-service; hit; detail=stale",
    CacheState.MISS: b"content-service; fwd=miss",
    CacheState.BYPASS: b"content-service; fwd=bypass",
}
_X_CACHE = {state: state.value.encode("ascii") for state in CacheState}


def cache_status(lookup: Lookup) -> bytes:
    """Return the ``Cache-Status`` value (RFC 9211) of ``lookup``.

    ``hit; ttl=N`` (N: seconds it stays fresh; ``hit; ttl=N; detail=l1`` from the near cache),
    ``hit; detail=stale``, ``fwd=miss`` with
    ``stored`` when the load was stored, ``fwd=bypass`` when Redis was not used.
    """
    value = _CACHE_STATUS[lookup.state]
    if lookup.state is CacheState.HIT:
        if lookup.near:
            return b"%s; ttl=%d; detail=l1" % (value, lookup.fresh_for_seconds)
        return b"%s; ttl=%d" % (value, lookup.fresh_for_seconds)
    if lookup.stored:
        return value + b"; stored"
    return value


def server_timing(lookup: Lookup, elapsed_ms: float) -> bytes:
    """Return the ``Server-Timing`` value: ``cache;dur=`` and, when a load ran, ``db;dur=``.

    Args:
        lookup: the answer.
        elapsed_ms: how long the whole read took, in milliseconds; the cache's share is that
            less the load's.
    """
    load_ms = lookup.load_ms
    if load_ms is None:
        return b"cache;dur=%.2f" % elapsed_ms
    return b"cache;dur=%.2f, db;dur=%.2f" % (max(elapsed_ms - load_ms, 0.0), load_ms)


class CachedResponse(Response):
    """The answer to a cached read: 304 when ``If-None-Match`` names its ETag.

    A cached absence (status 404) is a problem document, never a 304.

    Headers: ``ETag`` (of the coding answered), ``Cache-Control: public, max-age=N`` with N the
    smaller of the cap and the seconds the entry stays fresh; ``X-Cache``; ``Cache-Status``;
    ``Server-Timing``; ``Vary: Accept-Encoding``; ``Content-Encoding`` when the body is
    compressed (from bytes compressed when the entry was stored, never per request).

    Starlette's ``Response`` would take a dict, lower-case and encode each header; here the
    headers of a cached answer are known, so they are written once, encoded.

    Args:
        request_headers: the headers of the request answered (the ASGI scope's).
        lookup: what the cache answered.
        max_age_cap_seconds: the cap of ``max-age``, in seconds.
        elapsed_ms: how long the read took, in milliseconds (for ``Server-Timing``).
        link: the ``Link`` header's value, or None for none.
    """

    def __init__(
        self,
        request_headers: Iterable[tuple[bytes, bytes]],
        lookup: Lookup,
        max_age_cap_seconds: int,
        elapsed_ms: float,
        link: bytes | None = None,
    ) -> None:
        max_age = min(max_age_cap_seconds, lookup.fresh_for_seconds)
        inm = accept = None
        for name, value in request_headers:
            if name == b"accept-encoding":
                accept = value.decode("latin-1")
            elif name == b"if-none-match":
                inm = value.decode("latin-1")
        body, etag, coding = choose_representation(lookup, accept)
        headers = [
            (b"etag", etag.encode("ascii")),
            (b"cache-control", b"public, max-age=%d" % max_age),
            (b"x-cache", _X_CACHE[lookup.state]),
            (b"cache-status", cache_status(lookup)),
            (b"server-timing", server_timing(lookup, elapsed_ms)),
            _VARY,
        ]
        if link is not None:
            headers.append((b"link", link))
        if inm is not None and lookup.status == 200 and etag_matches(inm, etag):
            self.status_code, self.body = 304, b""
        else:
            self.status_code, self.body = lookup.status, body
            if coding is not None:
                headers.append((b"content-encoding", coding))
            headers.append((b"content-length", b"%d" % len(body)))
            headers.append((b"content-type", _JSON_BYTES if lookup.status == 200 else _PROBLEM))
        self.raw_headers = headers
        self.background = None


@dataclass(frozen=True, slots=True)
class FastAnswer:
    """An answer given without an ASGI task (see :mod:`service.fast_path`).

    Attributes:
        status: the HTTP status.
        headers: the app's headers, (lower-case name, value) bytes, in order; they include
            ``content-length`` when there is a body.
        body: the body (empty for a 304).
    """

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes | memoryview


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


async def body(request: Request, model: type[M], *, empty: M | None = None) -> M:
    """Read and validate a JSON object body; ``empty``, when given, stands for no body at all.

    Raises:
        UnsupportedMediaTypeError: the content type is not JSON.
        ContentTooLargeError: the body is over the ``MAX_BODY_BYTES`` setting.
        InvalidInputError: the body is not a JSON object, is nested deeper than
            :data:`MAX_JSON_DEPTH` or holds a string over :data:`MAX_JSON_STRING_CHARS`.
        pydantic.ValidationError: a member is unknown or breaks its rule.
    """
    media = request.headers.get("content-type", JSON).split(";")[0].strip().lower()
    if media != JSON and not (media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaTypeError("send the body as application/json")
    max_bytes: int = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ContentTooLargeError(f"the body is over {max_bytes} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > max_bytes:
            raise ContentTooLargeError(f"the body is over {max_bytes} bytes")
    if not raw and empty is not None:
        return empty
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInputError("the body must be a JSON object")
    check_json_bounds(data)
    return model.model_validate(data)


def check_json_bounds(document: Any) -> None:
    """Check a decoded JSON document's nesting depth and string lengths.

    Raises:
        InvalidInputError: nested deeper than :data:`MAX_JSON_DEPTH`, or a string (value or
            member name) over :data:`MAX_JSON_STRING_CHARS` characters.
    """
    level = [document]
    depth = 0
    while level:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            raise InvalidInputError(f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
        below: list[Any] = []
        for node in level:
            members = node.items() if isinstance(node, dict) else enumerate(node)
            for name, value in members:
                if isinstance(value, dict | list):
                    below.append(value)
                elif isinstance(value, str) and len(value) > MAX_JSON_STRING_CHARS:
                    raise InvalidInputError(f"a string is over {MAX_JSON_STRING_CHARS} characters")
                if isinstance(name, str) and len(name) > MAX_JSON_STRING_CHARS:
                    raise InvalidInputError(
                        f"a member name is over {MAX_JSON_STRING_CHARS} characters"
                    )
        level = below
