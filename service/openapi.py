"""The OpenAPI 3.1 document, generated from the operation table and the pydantic models.

Paths and operations come from :func:`service.operation_table.operations`; schemas from the
pydantic models it names: request bodies and query parameters in pydantic's ``validation``
mode, answers in its ``serialization`` mode, their definitions hoisted into
``components/schemas``. Each field of a query model is one ``in: query`` parameter.

The document is built once per process (:func:`openapi_document`) and serialized once
(:func:`openapi_body`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import (
    GenerateJsonSchema,
    JsonSchemaMode,
    JsonSchemaValue,
    models_json_schema,
)
from pydantic_core import CoreSchema

from cache import etag_for
from service.documents import dumps
from service.operation_table import HEADERS, JSON, SECURITY_SCHEMES, Answer, Operation, operations

OPENAPI_VERSION = "3.1.0"
#: The version of the API the document describes (its paths are under ``/api/v1``).
API_VERSION = "1.0.0"
_SCHEMA_REF = "#/components/schemas/{model}"


def _allows_null(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    return any(_allows_null(option) for option in schema.get("anyOf", ()))


class SchemaGenerator(GenerateJsonSchema):
    """Pydantic's JSON Schema, without per-field titles, naming ``Page[X]`` ``XPage``.

    A member that is left out rather than null (``X | SkipJsonSchema[None] = None``) gets no
    ``default``: null would break its own schema.
    """

    def default_schema(self, schema: Any) -> JsonSchemaValue:
        """Return a defaulted field's schema; a null default only where null is allowed."""
        json_schema = super().default_schema(schema)
        if json_schema.get("default", ...) is None and not _allows_null(json_schema):
            del json_schema["default"]
        return json_schema

    def normalize_name(self, name: str) -> str:
        """Return the schema name of a model: ``Page[Author]`` becomes ``AuthorPage``."""
        generic = re.fullmatch(r"(\w+)\[(\w+)\]", name)
        if generic is not None:
            return generic[2] + generic[1]
        return super().normalize_name(name)

    def field_title_should_be_set(self, schema: CoreSchema | Any) -> bool:
        """Leave fields untitled: their names say it."""
        return False


def _schemas(
    declared: Sequence[Operation],
) -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
    """Return each (model, mode)'s reference, and every schema they need, by name."""
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    for op in declared:
        if op.body is not None:
            wanted[(op.body, "validation")] = None
        for answer in op.answers.values():
            if answer.model is not None:
                wanted[(answer.model, "serialization")] = None
    refs, defs = models_json_schema(
        list(wanted), ref_template=_SCHEMA_REF, schema_generator=SchemaGenerator
    )
    return dict(refs), defs.get("$defs", {})


def _present(schema: dict[str, Any]) -> dict[str, Any]:
    """Return a parameter's schema without its null: an absent parameter is the null."""
    options = schema.get("anyOf")
    if not options or {"type": "null"} not in options:
        return schema
    rest = [option for option in options if option != {"type": "null"}]
    out = {k: v for k, v in schema.items() if k != "anyOf" and not (k == "default" and v is None)}
    return {**out, **(rest[0] if len(rest) == 1 else {"anyOf": rest})}


def query_parameters(model: type[BaseModel], components: dict[str, Any]) -> list[dict[str, Any]]:
    """Return one ``in: query`` parameter per field of ``model``; add its ``$defs`` to components.

    Raises:
        ValueError: a definition of ``model`` clashes with a component of the same name.
    """
    schema = model.model_json_schema(
        mode="validation", ref_template=_SCHEMA_REF, schema_generator=SchemaGenerator
    )
    for name, definition in schema.get("$defs", {}).items():
        if components.setdefault(name, definition) != definition:
            raise ValueError(f"two schemas are named {name}")
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        prop = _present(prop)
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
        if "description" in prop:
            parameter["description"] = prop.pop("description")
        parameters.append({**parameter, "schema": prop})
    return parameters


def _answer_object(answer: Answer, refs: Mapping[Any, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": answer.description}
    for name in answer.headers:
        if name not in HEADERS:
            raise ValueError(f"no header {name} is described")
    out["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in answer.headers}
    if answer.media_types:
        if answer.model is not None:
            schema = refs[(answer.model, "serialization")]
        elif answer.schema is not None:
            schema = dict(answer.schema)
        else:
            raise ValueError(f"an answer with a body has no schema: {answer}")
        out["content"] = {media: {"schema": schema} for media in answer.media_types}
    if answer.links:
        out["links"] = {
            link.name: {"operationId": link.operation_id, "parameters": dict(link.parameters)}
            for link in answer.links
        }
    return out


def _operation_object(
    op: Operation, refs: Mapping[Any, dict[str, Any]], components: dict[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.operation_id, "tags": [op.tag], "summary": op.summary}
    if op.description:
        out["description"] = op.description
    parameters = [
        {
            "name": p.name,
            "in": p.location,
            "required": p.required,
            "description": p.description,
            "schema": dict(p.schema),
        }
        for p in op.parameters
    ]
    if op.query is not None:
        parameters += query_parameters(op.query, components)
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {
            "required": op.body_required,
            "content": {JSON: {"schema": refs[(op.body, "validation")]}},
        }
    out["responses"] = {
        str(status): _answer_object(op.answers[status], refs) for status in sorted(op.answers)
    }
    if op.security is not None:
        out["security"] = [{name: list(roles) for name, roles in r.items()} for r in op.security]
    return out


@functools.cache
def openapi_document() -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of :func:`operations` (built once per process).

    The caller must not change it: it is shared.

    Raises:
        ValueError: two schemas share a name, an answer names a header not described or has
            a body without a schema; or as :func:`operations` raises.
    """
    declared = operations()
    refs, components = _schemas(declared)
    paths: dict[str, dict[str, Any]] = {}
    for op in declared:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation_object(op, refs, components)
    tags = list(dict.fromkeys(op.tag for op in declared))
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Content service",
            "version": API_VERSION,
            "description": "A read-heavy content API (articles, their comments, authors, "
            "categories, tags and series) read through a Redis cache in front of PostgreSQL. "
            "Errors are RFC 9457 problem documents; times are RFC 3339 in UTC.",
        },
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "headers": HEADERS,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


@dataclass(frozen=True, slots=True)
class DocumentBody:
    """The document serialized: its bytes and their ETag."""

    body: bytes
    etag: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "etag", etag_for(self.body))


@functools.cache
def openapi_body() -> DocumentBody:
    """Return :func:`openapi_document` as JSON bytes with their ETag (serialized once)."""
    return DocumentBody(dumps(openapi_document()))
