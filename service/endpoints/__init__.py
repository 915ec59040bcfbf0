"""The HTTP endpoints: parse the request, call the reader or writer, render the answer."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cache import etag_for
from service.documents import dumps
from service.responses import JSON
from service.state import AppState


def ctx(request: Request) -> AppState:
    """Return the app's lifespan state."""
    state: AppState = request.app.state.ctx
    return state


def written(document: Any, status: int = 200, location: str | None = None) -> Response:
    """Return the answer to a write: the new representation, its ETag, never cached."""
    body = dumps(document)
    headers = {"ETag": etag_for(body), "Cache-Control": "no-store"}
    if location is not None:
        headers["Location"] = location
    return Response(body, status, headers=headers, media_type=JSON)
