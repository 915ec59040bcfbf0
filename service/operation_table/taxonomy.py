"""The entity kinds' operations: the same five over each kind of :data:`service.kinds.KINDS`.

Each kind gets list, create, get, merge-patch and delete, with ``operationId`` values made from
its name (``listAuthors``, ``createAuthor``, ``getAuthor``, ``patchAuthor``, ``deleteAuthor``)
and its models and rules read from its registry entry.
"""

from __future__ import annotations

import re

from service import representations as rep
from service.kinds import EntityKind
from service.operation_table.answers import (
    BAD_BODY,
    DELETED,
    LIST_400,
    NO_QUERY,
    cached_read,
    link,
    problems,
    writes,
    written,
)
from service.operation_table.declarations import EDITOR, Answer, Operation
from service.operation_table.parameters import IF_NONE_MATCH, PAGE_QUERIES, path_parameter
from service.schemas import PageParams


def _camel(word: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[-_ ]", word))


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def kind_operations(kind: EntityKind) -> tuple[Operation, ...]:
    """Return the five operations of an entity kind: list, create, get, patch, delete."""
    one, many = _camel(kind.name), _camel(kind.plural)
    item = f"{kind.path}/{{{kind.key}}}"
    key = path_parameter(kind.key, f"the {kind.name}'s {kind.key}")
    follow = tuple(
        link(verb, f"{verb}{one}", kind.key, f"/{kind.key}") for verb in ("get", "patch", "delete")
    )
    conflict = f"the {kind.key} is taken (the problem's {kind.key} member names it)"
    delete_conflict: dict[int, Answer] = {}
    if kind.restrict_delete:
        delete_conflict = problems({409: f"articles still refer to the {kind.name}"})
    slug_rule, create_400 = "", BAD_BODY
    if kind.slug_source is not None:
        slug_rule = f"A missing {kind.key} is derived from the {kind.slug_source}."
        create_400 += f"; or no {kind.key} can be derived from the {kind.slug_source}"
    return (
        Operation(
            "GET",
            kind.path,
            f"list{many}",
            kind.plural,
            f"A page of {kind.plural}",
            {
                **cached_read(rep.page_of(kind.representation), paged=True),
                **problems({400: LIST_400}),
            },
            description=PAGE_QUERIES,
            query=PageParams,
            parameters=(IF_NONE_MATCH,),
        ),
        Operation(
            "POST",
            kind.path,
            f"create{one}",
            kind.plural,
            f"Create {_a(kind.name)}",
            {
                **written(
                    201,
                    kind.item_representation,
                    f"the new {kind.name}",
                    location=True,
                    links=follow,
                ),
                **problems({400: create_400, 409: conflict}),
                **writes("editor"),
            },
            description=slug_rule,
            body=kind.create,
            security=EDITOR,
        ),
        Operation(
            "GET",
            item,
            f"get{one}",
            kind.plural,
            f"One {kind.name}",
            {
                **cached_read(kind.item_representation),
                **problems({400: NO_QUERY, 404: f"no {kind.name} has that {kind.key}"}),
            },
            parameters=(key, IF_NONE_MATCH),
        ),
        Operation(
            "PATCH",
            item,
            f"patch{one}",
            kind.plural,
            f"Merge-patch {_a(kind.name)}",
            {
                **written(200, kind.item_representation, f"the {kind.name}, patched"),
                **problems(
                    {
                        400: f"{BAD_BODY}; or a member is null",
                        404: f"no {kind.name} has that {kind.key}",
                        409: f"the new {conflict}",
                    }
                ),
                **writes("editor"),
            },
            description=(
                "A JSON merge patch (RFC 7386): members left out stay as they are; null is "
                f"refused. A new {kind.key} moves the {kind.name}: the old one is then a 404."
            ),
            parameters=(key,),
            body=kind.patch,
            security=EDITOR,
        ),
        Operation(
            "DELETE",
            item,
            f"delete{one}",
            kind.plural,
            f"Delete {_a(kind.name)}",
            {
                **DELETED,
                **problems({400: NO_QUERY, 404: f"no {kind.name} has that {kind.key}"}),
                **delete_conflict,
                **writes("editor", body=False),
            },
            description=(
                f"Refused (409) while articles refer to the {kind.name}."
                if kind.restrict_delete
                else f"Articles that referred to the {kind.name} no longer do."
            ),
            parameters=(key,),
            security=EDITOR,
        ),
    )
