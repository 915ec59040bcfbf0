"""The session hook collects tags at flush and drops them on rollback (SQLite, in memory)."""

from __future__ import annotations

from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from cache import Change, SessionTagCollector


class Base(DeclarativeBase):
    pass


class Row(Base):
    __tablename__ = "rows"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


def tagger(instance: object, change: Change) -> list[str]:
    assert isinstance(instance, Row)
    return [f"row:{instance.id}:{change.value}"]


def test_flushes_are_tagged_and_taken_once() -> None:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    session_class = type("S", (Session,), {})
    SessionTagCollector(tagger).install(session_class)
    with session_class(engine) as s:
        s.add(Row(id=1, name="a"))
        s.commit()
        assert SessionTagCollector.take(s) == {"row:1:insert"}
        assert SessionTagCollector.take(s) == frozenset()
        row = s.get(Row, 1)
        assert row is not None
        row.name = "b"
        s.flush()
        s.delete(row)
        s.commit()
        assert SessionTagCollector.take(s) == {"row:1:update", "row:1:delete"}
        s.add(Row(id=2, name="c"))
        s.flush()
        s.rollback()
        assert SessionTagCollector.take(s) == frozenset()
