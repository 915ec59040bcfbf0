"""The schema, as SQLAlchemy 2 typed models.

Writes go through these models (so that flushes can be tagged for invalidation); reads use
Core statements over the same tables (see :mod:`service.repository`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

BODY_FORMATS = ("markdown", "rst", "text")
STATUSES = ("draft", "published", "archived")

#: Characters of the body that go into the search vector (a tsvector is capped at 1 MiB).
SEARCH_BODY_CHARS = 100_000

SEARCH_VECTOR_SQL = (
    "setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(summary, '')), 'B') || "
    f"setweight(to_tsvector('english'::regconfig, left(body, {SEARCH_BODY_CHARS})), 'C')"
)

naming = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class Base(DeclarativeBase):
    """Declarative base of every model."""

    metadata = naming


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


article_tags = Table(
    "article_tags",
    Base.metadata,
    Column("article_id", ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_article_tags_tag_id_article_id", "tag_id", "article_id"),
)


class Author(Base):
    """A person who writes articles."""

    __tablename__ = "authors"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    bio: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = _now()


class Category(Base):
    """A section an article belongs to (at most one)."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")


class Tag(Base):
    """A label an article may carry (many)."""

    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))


class Series(Base):
    """An ordered collection of articles, such as the chapters of a guide."""

    __tablename__ = "series"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")


class Article(Base):
    """A document; visible when published and its ``published_at`` has come."""

    __tablename__ = "articles"
    __table_args__ = (
        CheckConstraint(f"body_format IN {BODY_FORMATS!r}", name="body_format"),
        CheckConstraint(f"status IN {STATUSES!r}", name="status"),
        Index(
            "ix_articles_published",
            text("published_at DESC"),
            text("id DESC"),
            postgresql_where=text("status = 'published'"),
        ),
        Index(
            "ix_articles_updated",
            text("updated_at DESC"),
            text("id DESC"),
            postgresql_where=text("status = 'published'"),
        ),
        Index("ix_articles_title", "title", "id", postgresql_where=text("status = 'published'")),
        Index("ix_articles_author_id_published_at", "author_id", text("published_at DESC")),
        Index("ix_articles_category_id_published_at", "category_id", text("published_at DESC")),
        Index("ix_articles_series_id_series_position", "series_id", "series_position"),
        Index("ix_articles_search_vector", "search_vector", postgresql_using="gin"),
    )
    # Server-generated values are not fetched with RETURNING: the search vector (as large as
    # the body) is never read through the model, and the writes set the timestamps themselves.
    __mapper_args__ = {"eager_defaults": False}  # noqa: RUF012 (mypy: not a ClassVar on the base)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    summary: Mapped[str] = mapped_column(Text, default="", server_default="")
    body: Mapped[str] = mapped_column(Text)
    body_format: Mapped[str] = mapped_column(String(20), default="markdown")
    status: Mapped[str] = mapped_column(String(20), default="draft")
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id", ondelete="RESTRICT"))
    category_id: Mapped[int | None] = mapped_column(
        ForeignKey("categories.id", ondelete="SET NULL")
    )
    series_id: Mapped[int | None] = mapped_column(ForeignKey("series.id", ondelete="SET NULL"))
    #: Its place in its series (1 first); meaningless while ``series_id`` is null.
    series_position: Mapped[int | None] = mapped_column(Integer)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    search_vector: Mapped[str] = mapped_column(
        TSVECTOR, Computed(SEARCH_VECTOR_SQL, persisted=True), deferred=True
    )

    # Ordered as reads order an article's tags, so a write's answer lists them alike.
    tags: Mapped[list[Tag]] = relationship(
        secondary=article_tags, lazy="raise", order_by=lambda: Tag.slug
    )


class Comment(Base):
    """A reader's comment on an article, threaded by ``parent_id``."""

    __tablename__ = "comments"
    __table_args__ = (Index("ix_comments_article_id_created_at", "article_id", "created_at", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("comments.id", ondelete="CASCADE"), index=True
    )
    author_name: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
