"""The bodies of the operations endpoints (purge and warm), validated with pydantic.

Apart from :mod:`service.schemas` because their rules name the cache's namespaces, which
come from the entity registry (whose kinds name their bodies in :mod:`service.schemas`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from service.keyspaces import NAMESPACES
from service.schemas import Body, Text, WarmLimit

_PURGE_TARGETS = ("all", *NAMESPACES)


def _one_of(names: Sequence[str]) -> AfterValidator:
    """A check that a text is one of ``names`` (known at start, so not a ``Literal``)."""

    def check(value: str) -> str:
        if value not in names:
            raise ValueError(f"expected one of {', '.join(names)}")
        return value

    return AfterValidator(check)


#: A cache namespace (see :mod:`service.keyspaces`).
Namespace = Annotated[
    Text, _one_of(NAMESPACES), WithJsonSchema({"type": "string", "enum": list(NAMESPACES)})
]
#: What a purge empties: a namespace, or ``all``.
PurgeTarget = Annotated[
    Text,
    _one_of(_PURGE_TARGETS),
    WithJsonSchema({"type": "string", "enum": list(_PURGE_TARGETS)}),
]


class PurgeRequest(Body):
    """The body of ``POST /admin/cache/purge``: a namespace, or ``all``."""

    namespace: PurgeTarget


def is_entry_key(text: str) -> bool:
    """Return whether ``text`` is ``namespace:identity`` with a known namespace."""
    name, sep, identity = text.partition(":")
    return bool(sep and identity) and name in NAMESPACES


_ENTRY_KEY = rf"^(?:{'|'.join(map(re.escape, NAMESPACES))}):[^\x00]+$"


def _warm_rules(schema: dict[str, Any]) -> None:
    schema["anyOf"] = [
        {
            "properties": {
                "source": {"enum": ["hot", "recent"]},
                "keys": {"anyOf": [{"type": "null"}, {"type": "array", "maxItems": 0}]},
            }
        },
        {
            "required": ["source", "keys", "namespace"],
            "properties": {
                "source": {"const": "keys"},
                "keys": {"type": "array", "minItems": 1},
                "namespace": {"type": "string"},
            },
        },
        {
            "required": ["source", "keys"],
            "properties": {
                "source": {"const": "keys"},
                "keys": {"type": "array", "minItems": 1, "items": {"pattern": _ENTRY_KEY}},
                "namespace": {"type": "null"},
            },
        },
    ]
    schema["description"] = (
        "keys are read with source 'keys' only, and it needs at least one; without a "
        "namespace, each key is namespace:identity."
    )


class WarmRequest(Body):
    """The body of ``POST /admin/cache/warm`` (every field optional).

    ``keys`` (with ``source`` "keys", and only with it) are entry identities:
    ``namespace:identity`` such as ``article:my-slug`` or ``articles:page=2&per_page=20``, or
    bare identities of ``namespace``.
    """

    model_config = ConfigDict(json_schema_extra=_warm_rules)

    source: Literal["hot", "recent", "keys"] = "hot"
    namespace: Namespace | None = None
    limit: WarmLimit | None = None
    keys: list[Annotated[Text, StringConstraints(min_length=1, max_length=500)]] | None = Field(
        None, max_length=100_000
    )

    @model_validator(mode="after")
    def _keys_with_source(self) -> WarmRequest:
        if self.source != "keys":
            if self.keys:
                raise ValueError("keys are only read with source 'keys'")
            return self
        if not self.keys:
            raise ValueError("source 'keys' needs a non-empty keys list")
        if self.namespace is None:
            bad = [k for k in self.keys if not is_entry_key(k)]
            if bad:
                raise ValueError(
                    f"{len(bad)} keys are not namespace:identity (first: {bad[0]!r})"
                    " and no namespace was given"
                )
        return self
