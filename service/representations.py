"""The representations the API answers with, as pydantic models: the OpenAPI document's schemas.

The content's representations, its pages, and the problem document every error answers with.
The answers themselves are rendered into plain dicts (see :mod:`service.documents` and
:mod:`service.problems`), never through these models, which are on no request's path; the
tests check that what is rendered validates against them. The operations endpoints' answers
are in :mod:`service.operations_representations`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from service.problems import FailedMember


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

    @classmethod
    def model_parametrized_name(cls, params: tuple[Any, ...]) -> str:
        """Name ``Page[X]`` ``XPage``, as the OpenAPI document's schemas name it."""
        return f"{params[0].__name__}Page"


class Problem(_Answer):
    """An RFC 9457 problem document, the body of every error answer.

    Besides type, title, status and detail, a problem carries the extension members its kind
    of error sets, and no others.
    """

    type: str = Field(
        description="the problem type, a URI whose last segment names it",
        json_schema_extra={"format": "uri"},
    )
    title: str = Field(description="the problem type's fixed summary")
    status: int = Field(ge=100, le=599, description="the HTTP status")
    detail: str = Field(description="what went wrong in this occurrence, for a person")
    member: str | SkipJsonSchema[None] = Field(
        None,
        description="400: the body member (or parameter) at fault; 409: the member naming "
        "what does not exist",
    )
    errors: list[FailedMember] | SkipJsonSchema[None] = Field(
        None, description="400 of a body or query that breaks its model: each failed member"
    )
    slug: str | SkipJsonSchema[None] = Field(
        None, description="409 of a write whose slug is taken: that slug"
    )
    username: str | SkipJsonSchema[None] = Field(
        None, description="409 of an author write whose username is taken: that username"
    )
    job_id: str | SkipJsonSchema[None] = Field(
        None, description="409 of POST /admin/cache/warm: the id of the job that runs"
    )
    readiness: Literal["starting", "draining", "unavailable"] | SkipJsonSchema[None] = Field(
        None, description="503 of GET /health/ready: why the instance is not ready"
    )
    redis: Literal["unavailable"] | SkipJsonSchema[None] = Field(
        None, description="503 of GET /health/ready when neither server answers"
    )
    postgres: Literal["unavailable"] | SkipJsonSchema[None] = Field(
        None, description="503 of GET /health/ready when neither server answers"
    )


def page_of(item: type[BaseModel]) -> type[BaseModel]:
    """Return ``Page[item]``, the page model of a model chosen at run time."""
    return Page[item]  # type: ignore[valid-type]
