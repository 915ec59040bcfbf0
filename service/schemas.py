"""Input models: query parameters and write bodies, validated with pydantic.

Every model forbids unknown members, so that an unknown parameter is a 400 problem and never
creates a cache entry.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

Slug = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", min_length=1, max_length=200)
]
Username = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", min_length=1, max_length=100)
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Cursor = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+$", max_length=2800)]
#: An article's place in its series, 1 first.
Position = Annotated[int, Field(ge=1, le=100_000)]
Sort = Literal["-published_at", "published_at", "-updated_at", "title"]
BodyFormat = Literal["markdown", "rst", "text"]
Status = Literal["draft", "published", "archived"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PageParams(_Strict):
    """``page`` (or ``cursor``) and ``per_page`` of every list endpoint.

    ``cursor`` is a ``next_cursor`` of an earlier page of the same query (see
    :mod:`service.pages`); ``page`` and ``cursor`` together are refused.
    """

    page: int = Field(1, ge=1, le=1_000_000)
    per_page: int = Field(20, ge=1, le=100)
    cursor: Cursor | None = None

    @model_validator(mode="after")
    def _page_or_cursor(self) -> PageParams:
        if self.cursor is not None and "page" in self.model_fields_set:
            raise ValueError("give page or cursor, not both")
        return self


class ArticleListParams(PageParams):
    """The query parameters of ``GET /api/v1/articles``."""

    category: Slug | None = None
    tag: Slug | None = None
    author: Username | None = None
    q: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    sort: Sort | None = None


class ArticleCreate(_Strict):
    """The body of ``POST /api/v1/articles``.

    ``series_position`` without ``series`` is refused; ``series`` without it appends the
    article to the end of that series.
    """

    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    body: str
    slug: Slug | None = None
    summary: Annotated[str, StringConstraints(max_length=2000)] = ""
    body_format: BodyFormat = "markdown"
    status: Status = "draft"
    published_at: AwareDatetime | None = None
    author: Username
    category: Slug | None = None
    tags: Annotated[list[Slug], Field(max_length=50)] = []
    series: Slug | None = None
    series_position: Position | None = None


class ArticlePatch(_Strict):
    """The body of ``PATCH /api/v1/articles/{slug}`` (a JSON merge patch).

    Members left out stay as they are; ``null`` clears the members that may be empty
    (``category``, ``published_at``, ``series``; ``series_position`` null moves the article to
    the end of its series) and is refused for the others.
    """

    title: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
        | None
    ) = None
    body: str | None = None
    slug: Slug | None = None
    summary: Annotated[str, StringConstraints(max_length=2000)] | None = None
    body_format: BodyFormat | None = None
    status: Status | None = None
    published_at: AwareDatetime | None = None
    author: Username | None = None
    category: Slug | None = None
    tags: Annotated[list[Slug], Field(max_length=50)] | None = None
    series: Slug | None = None
    series_position: Position | None = None


NULLABLE_ARTICLE_FIELDS = frozenset({"category", "published_at", "series", "series_position"})


class CommentCreate(_Strict):
    """The body of ``POST /api/v1/articles/{slug}/comments``."""

    author_name: Name
    body: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000)]
    parent_id: int | None = None


class AuthorCreate(_Strict):
    """The body of ``POST /api/v1/authors``."""

    username: Username
    display_name: Name
    bio: Annotated[str, StringConstraints(max_length=5000)] = ""


class AuthorPatch(_Strict):
    """The body of ``PATCH /api/v1/authors/{username}``."""

    username: Username | None = None
    display_name: Name | None = None
    bio: Annotated[str, StringConstraints(max_length=5000)] | None = None


class CategoryCreate(_Strict):
    """The body of ``POST /api/v1/categories``; ``slug`` is derived from ``name`` when absent."""

    name: Name
    slug: Slug | None = None
    description: Annotated[str, StringConstraints(max_length=5000)] = ""


class CategoryPatch(_Strict):
    """The body of ``PATCH /api/v1/categories/{slug}``."""

    name: Name | None = None
    slug: Slug | None = None
    description: Annotated[str, StringConstraints(max_length=5000)] | None = None


class TagCreate(_Strict):
    """The body of ``POST /api/v1/tags``; ``slug`` is derived from ``name`` when absent."""

    name: Name
    slug: Slug | None = None


class TagPatch(_Strict):
    """The body of ``PATCH /api/v1/tags/{slug}``."""

    name: Name | None = None
    slug: Slug | None = None


class SeriesCreate(_Strict):
    """The body of ``POST /api/v1/series``; ``slug`` is derived from ``name`` when absent."""

    name: Name
    slug: Slug | None = None
    description: Annotated[str, StringConstraints(max_length=5000)] = ""


class SeriesPatch(_Strict):
    """The body of ``PATCH /api/v1/series/{slug}``."""

    name: Name | None = None
    slug: Slug | None = None
    description: Annotated[str, StringConstraints(max_length=5000)] | None = None


class PurgeRequest(_Strict):
    """The body of ``POST /admin/cache/purge``."""

    namespace: str


class WarmRequest(_Strict):
    """The body of ``POST /admin/cache/warm`` (every field optional).

    ``keys`` (with ``source`` "keys") are entry identities: ``namespace:identity`` such as
    ``article:my-slug`` or ``articles:page=2&per_page=20``, or bare identities of ``namespace``.
    """

    source: Literal["hot", "recent", "keys"] = "hot"
    namespace: str | None = None
    limit: int | None = Field(None, ge=1, le=100_000)
    keys: list[Annotated[str, StringConstraints(min_length=1, max_length=500)]] | None = Field(
        None, max_length=100_000
    )
