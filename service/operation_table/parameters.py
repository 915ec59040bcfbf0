"""The parameters the operations share, and the description of the lists' query parameters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter

from service.operation_table.declarations import STRING, Parameter
from service.schemas import PathKey, RowId

#: The rule of a key path parameter (a slug or a name), as the endpoints check it (``path_key``).
PATH_KEY: Mapping[str, Any] = TypeAdapter(PathKey).json_schema()
#: The rule of a row id path parameter, as the endpoints check it (``path_id``).
ROW_ID: Mapping[str, Any] = TypeAdapter(RowId).json_schema()

#: The conditional read: every cached read takes it.
IF_NONE_MATCH = Parameter(
    "If-None-Match",
    "header",
    STRING,
    "an ETag of an earlier answer: 304 when it is still current",
    required=False,
)

#: How a list is paged: the description of the operations that take a page model's query.
PAGE_QUERIES = (
    "Offset pages: page (1-based) and per_page; a page that reaches past MAX_PAGE_DEPTH rows "
    "(default 10000) is a 400 whose detail points to cursor. Deeper: give a page's "
    "next_cursor as cursor (with the same other parameters, never with page) for the "
    "following page by keyset, at the same cost at any depth; page is then null. A "
    "malformed or foreign cursor is a 400. Every page carries a Link header."
)


def path_parameter(name: str, description: str, schema: Mapping[str, Any] = PATH_KEY) -> Parameter:
    """Return a required path parameter.

    Args:
        name: its name in the path template (``{name}``).
        description: what it names.
        schema: its rule; a key's (:data:`PATH_KEY`) unless given.
    """
    return Parameter(name, "path", schema, description)
