"""The response headers the operations' answers name (``components/headers``), and their sets.

An :class:`~service.operation_table.declarations.Answer` names its headers by their key in
:data:`HEADERS`; the tuples here are the sets the reads and writes share.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.operation_table.declarations import STRING


def header(
    description: str, schema: Mapping[str, Any] = STRING, *, required: bool = True
) -> dict[str, Any]:
    """Return a header object of ``components/headers``.

    Args:
        description: what the header carries.
        schema: the JSON Schema of its value (copied).
        required: whether it is always sent where an answer lists it.
    """
    return {"description": description, "required": required, "schema": dict(schema)}


#: ``components/headers``; ``required`` says the header is always sent where it is listed.
HEADERS: dict[str, dict[str, Any]] = {
    "ETag": header("strong validator of the body (one per content coding)"),
    "Cache-Control": header(
        "public, max-age=N (seconds) on cached reads; no-store on writes and operations "
        "answers; no-cache on what is revalidated (this document, the dashboard's files)"
    ),
    "X-Cache": header(
        "how the service's cache answered", {"enum": ["HIT", "MISS", "STALE", "BYPASS"]}
    ),
    "Cache-Status": header(
        "RFC 9211, e.g. content-service; hit; ttl=30 or content-service; fwd=miss; stored"
    ),
    "Server-Timing": header("cache;dur=ms and, when PostgreSQL was read, db;dur=ms"),
    "Vary": header("Accept-Encoding"),
    "Content-Encoding": header(
        "when the client accepts it: the body as compressed once, when it was stored",
        {"enum": ["gzip", "br"]},
        required=False,
    ),
    "Link": header(
        'RFC 8288: rel="first", rel="next" (cursor=) while a next page exists, rel="prev" on '
        "an offset page past the first"
    ),
    "Location": header("the path of what was made"),
    "X-Request-ID": header(
        "the request's id, also in its log lines: the client's when sane (1 to 128 letters, "
        "digits and -_.:), else a new one"
    ),
    "RateLimit-Policy": header(
        'draft-ietf-httpapi-ratelimit-headers, e.g. "reads";q=100;w=1 (quota, window in '
        "seconds); sent when RATE_LIMIT_READS or RATE_LIMIT_WRITES limits the request",
        required=False,
    ),
    "RateLimit": header(
        'e.g. "reads";r=42;t=1 (remaining, seconds until reset); sent with RateLimit-Policy',
        required=False,
    ),
    "Retry-After": header("seconds to wait before trying again", {"type": "integer", "minimum": 0}),
    "WWW-Authenticate": header('Bearer realm="content-service"'),
}

#: What a read through the cache sends, on its 200 and its 304.
CACHED = ("ETag", "Cache-Control", "X-Cache", "Cache-Status", "Server-Timing", "Vary")
#: What a read's 200 sends: :data:`CACHED`, and Content-Encoding when compressed.
CACHED_READ = (*CACHED, "Content-Encoding")
#: What a write's answer sends: the ETag of what was written, never cached.
WRITTEN = ("ETag", "Cache-Control")
#: What every answer on a rate-limited path sends (see :func:`service.ratelimits.is_limited`).
RATE_LIMIT_HEADERS = ("RateLimit-Policy", "RateLimit")
