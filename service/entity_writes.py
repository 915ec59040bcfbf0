"""The writes of the entity kinds (authors, categories, tags, series), by their registry entry."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from service import repository as repo
from service.documents import entity_document
from service.errors import ConflictError, NotFoundError
from service.kinds import EntityKind
from service.schemas import derive_slug
from service.statements import SessionReads
from service.unit_of_work import UnitOfWork


class EntityWrites:
    """Create, merge-patch and delete the entities of any kind. Safe to share.

    Args:
        unit_of_work: runs each write and invalidates after its commit.
    """

    def __init__(self, unit_of_work: UnitOfWork) -> None:
        self._unit_of_work = unit_of_work

    async def create(self, kind: EntityKind, data: BaseModel) -> dict[str, Any]:
        """Create an entity of ``kind`` from its ``create`` body; return its representation.

        Raises:
            ConflictError: the key is taken.
        """
        values = data.model_dump()
        # The model refuses a source with nothing to derive a key from when no key is given.
        if kind.slug_source is not None and not values.get(kind.key):
            values[kind.key] = derive_slug(values[kind.slug_source])
        key = values[kind.key]
        async with self._unit_of_work() as s:
            if await repo.find_one(s, kind, key) is not None:
                raise ConflictError(f"{key!r} is taken", **{kind.key: key})
            s.add(kind.new(**values))
            await s.flush()
            return await _document(s, kind, key)

    async def patch(self, kind: EntityKind, key: str, patch: BaseModel) -> dict[str, Any]:
        """Apply a merge patch (a ``patch`` body) to an entity; return its representation.

        Raises:
            NotFoundError: nothing of ``kind`` has that key.
            ConflictError: the new key is taken.
        """
        # The model refuses null: no member of an entity may be cleared.
        fields = patch.model_fields_set
        async with self._unit_of_work() as s:
            row = await repo.find_one(s, kind, key, lock=True)
            if row is None:
                raise NotFoundError(f"no {kind.name} {key!r}")
            new_key = getattr(patch, kind.key) if kind.key in fields else key
            if new_key != key and await repo.find_one(s, kind, new_key) is not None:
                raise ConflictError(f"{new_key!r} is taken", **{kind.key: new_key})
            for name in fields:
                setattr(row, name, getattr(patch, name))
            await s.flush()
            return await _document(s, kind, new_key)

    async def delete(self, kind: EntityKind, key: str) -> None:
        """Delete an entity; articles that referred to it no longer do.

        Raises:
            NotFoundError: nothing of ``kind`` has that key.
            ConflictError: the kind ``restrict_delete``s and articles still refer to it.
        """
        async with self._unit_of_work() as s:
            row = await repo.find_one(s, kind, key, lock=True)
            if row is None:
                raise NotFoundError(f"no {kind.name} {key!r}")
            entity_id: int = getattr(row, "id")  # noqa: B009
            if kind.restrict_delete and await repo.has_articles(s, kind, entity_id):
                raise ConflictError(f"{kind.name} {key!r} still has articles")
            await s.delete(row)


async def _document(s: AsyncSession, kind: EntityKind, key: str) -> dict[str, Any]:
    row = await repo.entity_by_key(SessionReads(s), kind, key)
    assert row is not None  # read in the transaction that wrote it
    return entity_document(kind, row, item=True)
