"""The types the operation table is declared in, and who may call an operation.

An :class:`Operation` is one method of one path; its :class:`Answer` values, by status, say
what it can give back; its :class:`Parameter` values are its path and header parameters; a
:class:`Link` ties a value of an answer to a parameter of another operation. All are frozen
value objects, safe to share. :data:`SECURITY_SCHEMES` are the document's security schemes,
which the :data:`Security` requirements (:data:`EDITOR`, :data:`ADMIN`, :data:`STATS`) name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from service.schemas import PageParams

#: The media type of the JSON bodies.
JSON = "application/json"
#: The schema of a plain string (a header, a text body, a free path parameter).
STRING: Mapping[str, Any] = {"type": "string"}

#: OpenAPI security requirements: any one of them is enough; ``{}`` is anyone.
Security = Sequence[Mapping[str, Sequence[str]]]
#: Writes: a bearer token of role editor (or admin, which ranks above it).
EDITOR: Security = ({"bearer": ["editor"]},)
#: Cache administration: a bearer token of role admin.
ADMIN: Security = ({"bearer": ["admin"]},)
#: The statistics: anyone while no stats token is set; else it, or an admin token.
STATS: Security = ({}, {"statsToken": []}, {"bearer": ["admin"]})

#: The security schemes the operations' ``security`` names.
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "a token of API_TOKENS (token:role pairs): role editor for writes, admin "
        "for writes and cache administration. None or an unknown one: 401; too low a role: 403.",
    },
    "statsToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "STATS_TOKEN, when the operator sets one: /stats and /metrics then need "
        "it (or an admin token).",
    },
}


@dataclass(frozen=True, slots=True)
class Parameter:
    """A path or header parameter (query parameters come from an operation's query model)."""

    name: str
    location: Literal["path", "header"]
    schema: Mapping[str, Any]
    description: str
    required: bool = True


@dataclass(frozen=True, slots=True)
class Link:
    """An OpenAPI link: a value of this answer is a parameter of another operation.

    Attributes:
        name: the link's name in the answer's ``links``.
        operation_id: the operation it leads to.
        parameters: that operation's parameter name to a runtime expression
            (``$response.body#/slug``).
    """

    name: str
    operation_id: str
    parameters: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer of an operation.

    Attributes:
        description: when the operation gives it.
        model: the JSON body's model, or None (``schema`` then, or no body).
        media_types: the media types of the body; empty for no body.
        schema: the body's schema when it has no model (a text body).
        headers: names of ``components/headers`` it carries (``X-Request-ID`` and the
            rate-limit headers are added where they apply).
        links: the operations its values lead to.
    """

    description: str
    model: type[BaseModel] | None = None
    media_types: tuple[str, ...] = (JSON,)
    schema: Mapping[str, Any] | None = None
    headers: tuple[str, ...] = ()
    links: tuple[Link, ...] = ()


@dataclass(frozen=True, slots=True)
class Operation:
    """One method of one path: what it takes and every answer it can give.

    Attributes:
        method: the HTTP method, upper case.
        path: the path template, with OpenAPI's ``{name}`` parameters.
        operation_id: unique in the document.
        tag: the group it is listed under.
        summary: one line.
        answers: status to answer; the ``429`` of limited paths is added.
        description: more, when one line is not enough.
        query: the model of its query parameters; None when it takes none (any is a 400).
        parameters: its path and header parameters.
        body: the model of its JSON body; None for none.
        body_required: whether the body may be left out.
        security: who may call it; None for anyone.
    """

    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    answers: Mapping[int, Answer]
    description: str = ""
    query: type[PageParams] | None = None
    parameters: tuple[Parameter, ...] = ()
    body: type[BaseModel] | None = None
    body_required: bool = True
    security: Security | None = None

    @property
    def route(self) -> tuple[str, str]:
        """The method and the path template with its parameters unnamed (``/a/{}``)."""
        return self.method, re.sub(r"\{[^}]*\}", "{}", self.path)
