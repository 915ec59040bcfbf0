"""The OpenAPI document."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from service.openapi import openapi_body
from service.responses import JSON, etag_matches


async def openapi(request: Request) -> Response:
    """The OpenAPI 3.1 document of the service, serialized once; 304 for its ETag.

    Clients revalidate (``no-cache``): the document changes with the deployed code.
    """
    document = openapi_body()
    headers = {"ETag": document.etag, "Cache-Control": "no-cache"}
    if etag_matches(request.headers.get("if-none-match", ""), document.etag):
        return Response(status_code=304, headers=headers)
    return Response(document.body, headers=headers, media_type=JSON)
