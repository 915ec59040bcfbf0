"""Invalidation hooked to SQLAlchemy sessions: collect tags at flush, apply them after commit.

SQLAlchemy's session events are synchronous, so nothing here talks to Redis from an event.
``after_flush`` asks the caller's tagger which tags each inserted, updated or deleted instance
makes wrong and keeps them in ``session.info``; a rollback of the outermost transaction drops
them; the caller's unit of work takes them with :meth:`SessionTagCollector.take` right after
``await session.commit()`` returns and hands them to :class:`cache.invalidation.Invalidator`.

SQLAlchemy is imported only when :meth:`SessionTagCollector.install` is called.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, SessionTransaction, UOWTransaction

_INFO_KEY = "cache.invalidation_tags"


class Change(enum.Enum):
    """What a flush did to an instance."""

    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"


#: ``tagger(instance, change)`` returns the tags that the change of ``instance`` makes wrong.
#: It runs inside ``after_flush``: it may read the instance's attribute history
#: (``sqlalchemy.inspect(instance).attrs.x.history``) but must not emit SQL.
Tagger = Callable[[object, Change], Iterable[str]]


class SessionTagCollector:
    """Collects invalidation tags from the flushes of sessions of one class.

    Args:
        tagger: maps one changed instance to tags.
    """

    def __init__(self, tagger: Tagger) -> None:
        self._tagger = tagger

    def install(self, session_class: type[Session]) -> None:
        """Listen to ``session_class`` (a synchronous ``sqlalchemy.orm.Session`` subclass).

        For an ``AsyncSession``, pass its ``sync_session_class``. Bulk ``update()`` and
        ``delete()`` statements fire no flush events and are not seen.
        """
        from sqlalchemy import event

        event.listen(session_class, "after_flush", self._after_flush)
        event.listen(session_class, "after_soft_rollback", self._after_soft_rollback)

    @staticmethod
    def take(session: Session) -> frozenset[str]:
        """Return and forget the tags collected since the last take (a synchronous ``Session``)."""
        return frozenset(session.info.pop(_INFO_KEY, ()))

    def _after_flush(self, session: Session, _flush_context: UOWTransaction) -> None:
        tags: set[str] = session.info.setdefault(_INFO_KEY, set())
        for instance in session.new:
            tags.update(self._tagger(instance, Change.INSERT))
        for instance in session.dirty:
            if session.is_modified(instance, include_collections=True):
                tags.update(self._tagger(instance, Change.UPDATE))
        for instance in session.deleted:
            tags.update(self._tagger(instance, Change.DELETE))

    @staticmethod
    def _after_soft_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
        # Only the outermost transaction's rollback undoes every flush; a savepoint's
        # leaves earlier flushes in place, and over-invalidating is safe.
        if previous_transaction.parent is None:
            session.info.pop(_INFO_KEY, None)
