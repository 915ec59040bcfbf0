"""The table of the service's operations: what each takes and every answer it can give.

Every operation is declared once here, as the route table (:mod:`service.routes`) declares its
endpoints: method, path, ``operationId``, tag, query model, path and header parameters, body
model, answers by status (each with its model or media type, headers and links) and security.
Models are those the service validates with (:mod:`service.schemas`) and the representations
of its answers (:mod:`service.representations`, :mod:`service.operations_representations`).

The table's modules:

* :mod:`~service.operation_table.declarations`: the types it is declared in (:class:`Operation`,
  :class:`Answer`, :class:`Parameter`, :class:`Link`) and the security requirements and schemes;
* :mod:`~service.operation_table.headers`: ``components/headers`` and the sets answers share;
* :mod:`~service.operation_table.answers`: the shared answers (problems, writes, cached reads,
  written representations, deletes) and problem texts;
* :mod:`~service.operation_table.parameters`: the shared path and header parameters;
* :mod:`~service.operation_table.articles`: the articles' and comments' operations;
* :mod:`~service.operation_table.taxonomy`: the entity kinds' operations, made by one loop over
  :data:`service.kinds.KINDS`;
* :mod:`~service.operation_table.operations_endpoints`: this document, health, statistics, the
  dashboard and cache administration.

Two things are added to every operation by :func:`operations`, from the code that makes them
true rather than per operation: ``X-Request-ID`` on every answer, and on the paths the rate
limits count (:func:`service.ratelimits.is_limited`) the ``RateLimit-Policy`` and
``RateLimit`` headers and the ``429``.

:mod:`service.openapi` renders the table as the OpenAPI document.
"""

from __future__ import annotations

import dataclasses
import functools

from service.kinds import KINDS
from service.operation_table.answers import problems
from service.operation_table.articles import article_operations
from service.operation_table.declarations import (
    ADMIN,
    EDITOR,
    JSON,
    SECURITY_SCHEMES,
    STATS,
    Answer,
    Link,
    Operation,
    Parameter,
    Security,
)
from service.operation_table.headers import HEADERS, RATE_LIMIT_HEADERS
from service.operation_table.operations_endpoints import operations_endpoints
from service.operation_table.taxonomy import kind_operations
from service.ratelimits import is_limited

__all__ = [
    "ADMIN",
    "EDITOR",
    "HEADERS",
    "JSON",
    "SECURITY_SCHEMES",
    "STATS",
    "Answer",
    "Link",
    "Operation",
    "Parameter",
    "Security",
    "kind_operations",
    "operations",
]


def _as_served(op: Operation) -> Operation:
    """Return ``op`` with what every answer gets: ``X-Request-ID``, and the rate limits'."""
    answers = dict(op.answers)
    added: tuple[str, ...] = ("X-Request-ID",)
    if is_limited(op.path):
        limit = "RATE_LIMIT_READS" if op.method == "GET" else "RATE_LIMIT_WRITES"
        answers |= problems({429: f"over {limit} (only when it is set)"})
        added += RATE_LIMIT_HEADERS
    return dataclasses.replace(
        op,
        answers={
            status: dataclasses.replace(answer, headers=(*answer.headers, *added))
            for status, answer in sorted(answers.items())
        },
    )


@functools.cache
def operations() -> tuple[Operation, ...]:
    """Return every operation of the service, in the document's order (built once).

    Raises:
        ValueError: two operations share an ``operationId``, or a method and path.
    """
    by_kind = tuple(op for kind in KINDS for op in kind_operations(kind))
    declared = (*article_operations(), *by_kind, *operations_endpoints())
    for attribute in ("operation_id", "route"):
        names = [getattr(op, attribute) for op in declared]
        if len(set(names)) != len(names):
            raise ValueError(f"{attribute} is not unique: {sorted(names)}")
    return tuple(_as_served(op) for op in declared)
