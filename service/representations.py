"""The representations the API answers with, as pydantic models: the OpenAPI document's schemas.

The answers themselves are rendered from rows into plain dicts (see :mod:`service.documents`),
never through these models, which are on no request's path; the tests check that what is
rendered validates against them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Author(_Answer):
    """An author."""

    id: int
    username: str
    display_name: str
    bio: str
    article_count: int = Field(description="published, visible articles")
    created_at: datetime


class Category(_Answer):
    """A category: the section an article belongs to."""

    id: int
    slug: str
    name: str
    description: str
    article_count: int = Field(description="published, visible articles")


class Tag(_Answer):
    """A tag: a label articles carry."""

    id: int
    slug: str
    name: str
    article_count: int = Field(description="published, visible articles")


class SeriesSummary(_Answer):
    """A series, as a page of series lists it."""

    id: int
    slug: str
    name: str
    description: str
    article_count: int = Field(description="published, visible articles")


class SeriesArticle(_Answer):
    """An article as its series lists it."""

    slug: str
    title: str
    position: int = Field(description="its place in the series, 1 first")


class Series(SeriesSummary):
    """A series with its visible articles in order."""

    articles: list[SeriesArticle]


class EmbeddedAuthor(_Answer):
    """The author an article embeds."""

    id: int
    username: str
    display_name: str


class EmbeddedName(_Answer):
    """The category or a tag an article embeds."""

    slug: str
    name: str


class EmbeddedSeries(_Answer):
    """The series an article belongs to, and its place in it."""

    slug: str
    name: str
    position: int = Field(description="1 first")


class ArticleSummary(_Answer):
    """An article as a page of articles lists it."""

    id: int
    slug: str
    title: str
    summary: str
    author: EmbeddedAuthor
    category: EmbeddedName | None
    tags: list[EmbeddedName]
    series: EmbeddedSeries | None
    published_at: datetime | None
    updated_at: datetime


class Article(ArticleSummary):
    """An article."""

    body: str
    body_format: Literal["markdown", "rst", "text"]
    status: Literal["draft", "published", "archived"]
    comment_count: int
    created_at: datetime


class Comment(_Answer):
    """A comment with its replies."""

    id: int
    parent_id: int | None = Field(description="null for a top-level comment")
    author_name: str
    body: str
    created_at: datetime
    replies: list[Comment]


class Comments(_Answer):
    """An article's comment threads, oldest first."""

    items: list[Comment]
    total: int = Field(description="comments and replies together")


T = TypeVar("T")


class Page(_Answer, Generic[T]):
    """A page of a list."""

    items: list[T]
    page: int | None = Field(description="null on a page reached by cursor")
    per_page: int
    total: int
    pages: int
    next_cursor: str | None = Field(
        description="give it as cursor= for the next page; null on the last page"
    )
