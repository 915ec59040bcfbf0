"""The OpenAPI document."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from service.openapi import openapi_document
from service.responses import json_response


async def openapi(request: Request) -> Response:
    """The OpenAPI 3.1 document of the service."""
    return json_response(openapi_document())
