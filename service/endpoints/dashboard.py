"""The operators' dashboard: one HTML page, its script and its styles, served from the package.

The page holds no figures: its script polls ``/stats`` (asking the operator for the stats token
when one is set), so the page and its files are served to anyone. Every file is read from the
installed package once, on its first request, and kept in memory; nothing is built at import.
The page forbids inline script and every origin but the service's own
(:data:`CONTENT_SECURITY_POLICY`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response

from cache import etag_for
from service.errors import NotFoundError
from service.responses import etag_matches

#: URL name under ``/dashboard/`` to (file under ``service/dashboard/``, media type).
FILES: dict[str, tuple[str, str]] = {
    "index.html": ("index.html", "text/html; charset=utf-8"),
    "app.js": ("app.js", "text/javascript; charset=utf-8"),
    "app.css": ("app.css", "text/css; charset=utf-8"),
    "uplot.min.js": ("vendor/uplot.min.js", "text/javascript; charset=utf-8"),
    "uplot.min.css": ("vendor/uplot.min.css", "text/css; charset=utf-8"),
}

#: Only the service's own files and requests; no inline script or style, no frames, no forms.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'none'"
)

_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class DashboardFile:
    """One file of the dashboard as served: its bytes, media type and ETag."""

    body: bytes
    media_type: str
    etag: str


@functools.cache
def dashboard_file(name: str) -> DashboardFile:
    """Return the file served as ``/dashboard/<name>``, read from the package on first use.

    Args:
        name: a key of :data:`FILES`.

    Raises:
        KeyError: ``name`` is not a dashboard file.
        OSError: the installed package lacks the file (a wheel built without its package data).
    """
    path, media_type = FILES[name]
    body = resources.files("service").joinpath("dashboard", *path.split("/")).read_bytes()
    return DashboardFile(body, media_type, etag_for(body))


async def page(request: Request) -> Response:
    """The dashboard's HTML page; never stored by browsers or proxies."""
    file = dashboard_file("index.html")
    headers = {**_SECURITY_HEADERS, "Cache-Control": "no-store"}
    return Response(file.body, headers=headers, media_type=file.media_type)


async def static_file(request: Request) -> Response:
    """A script or stylesheet of the page, revalidated by ETag (304 when it has not changed).

    Raises:
        NotFoundError: the name is not one of the dashboard's files.
    """
    name = request.path_params["name"]
    if name not in FILES or name == "index.html":
        raise NotFoundError(f"the dashboard has no file {name!r}")
    file = dashboard_file(name)
    headers = {**_SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": file.etag}
    if etag_matches(request.headers.get("if-none-match", ""), file.etag):
        return Response(status_code=304, headers=headers)
    return Response(file.body, headers=headers, media_type=file.media_type)
