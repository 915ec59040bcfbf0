"""The answers the operations share: problems, and those of writes and cached reads.

Each builder returns answers by status, to be merged (``{**a, **b}``) into an operation's
``answers``; a later status overrides an earlier one. The texts here are the problem
descriptions more than one operation gives.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel

from service import representations as rep
from service.operation_table.declarations import Answer, Link
from service.operation_table.headers import CACHED, CACHED_READ, WRITTEN
from service.problems import MEDIA_TYPE as PROBLEM

#: The headers every problem of a status carries (see :mod:`service.problems`).
_PROBLEM_HEADERS = {401: ("WWW-Authenticate",), 429: ("Retry-After",), 503: ("Retry-After",)}

#: The 400 of an operation that takes no query parameters.
NO_QUERY = "a query parameter was given: this takes none"
#: The 400 of an operation with a JSON body (operations add their own rules after ``; or``).
BAD_BODY = (
    "the body is not a JSON object, has an unknown member, or a member breaks its rule "
    "(errors lists each failed member); or a query parameter was given"
)
#: The 400 of a list (a paged read).
LIST_400 = (
    "an unknown or repeated parameter, a value outside its rule, page with cursor, a "
    "malformed or foreign cursor, or a page past MAX_PAGE_DEPTH"
)
#: The 503 of a write to PostgreSQL.
DB_DOWN = "PostgreSQL is unavailable, or no pooled connection came free in time"
#: The 503 of a read through the cache.
READ_DOWN = "PostgreSQL is unavailable and nothing usable is cached"
#: The 503 of the cache administration.
REDIS_DOWN = "Redis is unavailable"


def problems(by_status: Mapping[int, str]) -> dict[int, Answer]:
    """Return a problem answer (``application/problem+json``) per status, with its text.

    Args:
        by_status: status to the description of when the operation gives it.

    Returns:
        Status to its answer, in ``by_status``'s order; a 401 carries ``WWW-Authenticate``,
        a 429 and a 503 ``Retry-After``.
    """
    return {
        status: Answer(text, rep.Problem, (PROBLEM,), headers=_PROBLEM_HEADERS.get(status, ()))
        for status, text in by_status.items()
    }


def writes(role: str, *, body: bool = True, down: str = DB_DOWN) -> dict[int, Answer]:
    """Return the problems every write of ``role`` can give: auth, (body), unavailable.

    Args:
        role: the lowest role allowed (``editor``, ``admin``), named in the 403.
        body: whether it takes a body (then 413 and 415 too).
        down: the description of its 503.

    Returns:
        The 401, 403 and 503 answers, and with ``body`` the 413 and 415.
    """
    answers = problems(
        {
            401: "no bearer token, or one that is not configured",
            403: f"the token's role is below {role}",
            503: down,
        }
    )
    if body:
        answers |= problems(
            {
                413: "the body is over MAX_BODY_BYTES",
                415: "the body is not application/json (nor another +json type)",
            }
        )
    return answers


def cached_read(
    model: type[BaseModel], *, paged: bool = False, links: tuple[Link, ...] = ()
) -> dict[int, Answer]:
    """Return the answers of a read through the cache: 200, 304 and 503.

    Args:
        model: the 200's body.
        paged: whether it is a list (its 200 and 304 then carry ``Link``).
        links: the 200's links.
    """
    headers = (*CACHED_READ, "Link") if paged else CACHED_READ
    return {
        200: Answer("the representation", model, headers=headers, links=links),
        304: Answer(
            "If-None-Match names the current ETag: no body",
            media_types=(),
            headers=(*CACHED, "Link") if paged else CACHED,
        ),
        **problems({503: READ_DOWN}),
    }


def written(
    status: int,
    model: type[BaseModel],
    description: str,
    *,
    location: bool = False,
    links: tuple[Link, ...] = (),
) -> dict[int, Answer]:
    """Return the answer of a write: the representation written, its ETag, never cached.

    Args:
        status: its status (200, 201).
        model: its body.
        description: when the operation gives it.
        location: whether it carries ``Location`` (what was made).
        links: its links.
    """
    headers = (*WRITTEN, "Location") if location else WRITTEN
    return {status: Answer(description, model, headers=headers, links=links)}


#: The answer of a delete: 204, no body.
DELETED = {204: Answer("deleted", media_types=())}


def link(name: str, operation_id: str, parameter: str, pointer: str) -> Link:
    """Return a link passing the answer's body member at ``pointer`` as ``parameter``.

    Args:
        name: the link's name in the answer's ``links``.
        operation_id: the operation it leads to.
        parameter: that operation's parameter.
        pointer: a JSON pointer into the answer's body (``/slug``).
    """
    return Link(name, operation_id, {parameter: f"$response.body#{pointer}"})
