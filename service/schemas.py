"""Input models: query parameters and write bodies, validated with pydantic.

Every model forbids unknown members, so that an unknown parameter is a 400 problem and never
creates a cache entry. Each rule the service holds an input to is stated here, in the model's
JSON Schema (the OpenAPI document's request bodies and query parameters are these schemas),
and enforced by the same model, so that the document and the service agree:

* every text excludes the NUL character, which PostgreSQL's ``text`` cannot hold (:data:`Text`);
* names, titles and comments hold something besides ASCII whitespace, which is stripped;
* a name or title that a slug is derived from (when no ``slug`` is given) holds an ASCII
  letter or digit (:func:`derive_slug` keeps those);
* times are RFC 3339 strings with an offset (:data:`Moment`), never numbers;
* ids fit PostgreSQL's ``bigint``;
* bodies are strict about JSON types: ``"1"`` is not an integer, ``1`` is not a string
  (but ``1.0`` is the integer 1, as JSON Schema has it);
* a merge patch may clear only the members that may be empty (:data:`NotNull`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from slugify import slugify

#: The deepest nesting of arrays and objects accepted in a request body.
MAX_JSON_DEPTH = 32
#: The longest string (value or member name) accepted in a request body, in characters.
MAX_JSON_STRING_CHARS = 512 * 1024


T = TypeVar("T")

#: The largest value of PostgreSQL's ``bigint``, the type of every id.
MAX_BIGINT = 2**63 - 1
#: The longest slug, in characters (the column's length).
MAX_SLUG_CHARS = 200

# The characters stripped from both ends of a label; the pattern below is written with the
# same set, so that what the document calls blank is what the model strips.
_BLANK = " \t\n\x0b\x0c\r"
_NO_NUL = r"^[^\x00]*$"
_NOT_BLANK = r"^[^\x00]*[^\x00\t\n\x0b\x0c\r ][^\x00]*$"
_SLUG = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
_USERNAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_CURSOR = r"^[A-Za-z0-9_-]+$"

#: Each pattern of these models and the rule it states, in words (for problem documents).
PATTERN_RULES = {
    _NO_NUL: "must not contain the NUL character (U+0000)",
    _NOT_BLANK: "must hold a character other than whitespace, and no NUL character (U+0000)",
    _SLUG: "must be lowercase ASCII letters and digits, in words joined by single hyphens",
    _USERNAME: "must be ASCII letters, digits, '_', '.' and '-', starting with a letter or digit",
    _CURSOR: "must be the next_cursor of an earlier page",
}
_SLUG_SOURCE = r"[A-Za-z0-9]"
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# The first and last days of Python's years are refused whatever their offset, so that every
# time taken is one instant of the years 1 to 9999 in UTC too (as a JSON Schema can say).
_EDGE_DAYS = ("0001-01-01", "9999-12-31")
_FIRST_DAY, _LAST_DAY = "0001-01-02", "9999-12-30"
_MOMENT_SCHEMA = {
    "type": "string",
    "format": "date-time",
    "pattern": "^(?!" + "|".join(_EDGE_DAYS) + ")",
    "description": f"RFC 3339 with an offset; the day within {_FIRST_DAY} and {_LAST_DAY}",
}


def _strip_blank(value: str) -> str:
    return value.strip(_BLANK)


def _rfc3339_string(value: object) -> object:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError(
            "expected an RFC 3339 date-time string with an offset, e.g. 2026-01-31T09:30:00Z"
        )
    if value.startswith(_EDGE_DAYS):
        raise ValueError(f"the day must be within {_FIRST_DAY} and {_LAST_DAY}")
    return value


def _json_integer(value: object) -> object:
    # JSON has one number type: 3.0 is the integer 3 to JSON Schema; true and "3" are not.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise ValueError("expected an integer")


def _refuse_null(value: object) -> object:
    if value is None:
        raise ValueError("may not be null; leave the member out to keep its value")
    return value


def _without_null(schema: dict[str, Any]) -> None:
    """State a member typed ``X | None`` as just ``X`` (its ``null`` is refused or unsayable)."""
    (kept,) = [branch for branch in schema.pop("anyOf") if branch != {"type": "null"}]
    schema.pop("default", None)
    schema.update(kept)


#: Any text: a string without the NUL character. Every text field is built on it.
Text = Annotated[str, StringConstraints(pattern=_NO_NUL)]
Slug = Annotated[
    Text,
    StringConstraints(pattern=_SLUG, min_length=1, max_length=MAX_SLUG_CHARS),
]
Username = Annotated[Text, StringConstraints(pattern=_USERNAME, min_length=1, max_length=100)]
#: A label: a text that holds something besides ASCII whitespace, stripped from its ends.
Name = Annotated[
    Text, StringConstraints(pattern=_NOT_BLANK, max_length=200), AfterValidator(_strip_blank)
]
Title = Annotated[
    Text, StringConstraints(pattern=_NOT_BLANK, max_length=500), AfterValidator(_strip_blank)
]
Summary = Annotated[Text, StringConstraints(max_length=2000)]
About = Annotated[Text, StringConstraints(max_length=5000)]
ArticleBody = Annotated[Text, StringConstraints(max_length=MAX_JSON_STRING_CHARS)]
CommentBody = Annotated[
    Text, StringConstraints(pattern=_NOT_BLANK, max_length=10_000), AfterValidator(_strip_blank)
]
Cursor = Annotated[Text, StringConstraints(pattern=_CURSOR, max_length=2800)]
SearchText = Annotated[Text, StringConstraints(min_length=1, max_length=200)]
#: A path segment that names an article or an entity (a slug or a username).
PathKey = Annotated[Text, StringConstraints(min_length=1)]
# The integers of JSON bodies: numbers without a fraction (``3.0`` is 3), never a string or a
# boolean. The bounds come first, so that the JSON Schema states them.
_JSON_INTEGER = (Strict(False), BeforeValidator(_json_integer))
#: A row id: PostgreSQL's ``bigint``, positive.
RowId = Annotated[int, Field(ge=1, le=MAX_BIGINT), *_JSON_INTEGER]
#: How many keys a warming job loads at most.
WarmLimit = Annotated[int, Field(ge=1, le=100_000), *_JSON_INTEGER]
#: A point in time: an RFC 3339 string with an offset (``Z`` or ``+hh:mm``) on a day within
#: 0001-01-02 and 9999-12-30; a number (a Unix time) is refused.
Moment = Annotated[
    AwareDatetime,
    Strict(False),
    BeforeValidator(_rfc3339_string),
    WithJsonSchema(_MOMENT_SCHEMA),
]
#: A member of a merge patch that may be left out but not cleared with ``null``.
NotNull = Annotated[T | None, BeforeValidator(_refuse_null), Field(json_schema_extra=_without_null)]
#: A query parameter that may be left out (a query string cannot say ``null``).
Omittable = Annotated[T | None, Field(json_schema_extra=_without_null)]
#: An article's place in its series, 1 first.
Position = Annotated[int, Field(ge=1, le=100_000), *_JSON_INTEGER]
Sort = Literal["-published_at", "published_at", "-updated_at", "title"]
BodyFormat = Literal["markdown", "rst", "text"]
Status = Literal["draft", "published", "archived"]


def derive_slug(text: str) -> str:
    """Return the slug derived from a name or title: its ASCII letters and digits, lowered.

    Other characters are transliterated to ASCII where they can be, runs of anything else
    become one ``-``, and the result is cut at a word boundary to at most
    :data:`MAX_SLUG_CHARS` characters. HTML character references are not decoded (the text is
    JSON, not HTML), so every ASCII letter or digit of ``text`` is kept: a text that holds one
    derives a non-empty slug. Empty when nothing is left.
    """
    return slugify(
        text,
        max_length=MAX_SLUG_CHARS,
        word_boundary=True,
        entities=False,
        decimal=False,
        hexadecimal=False,
    )


def _slug_derivable_from(source: str) -> Any:
    """The JSON Schema rule of :func:`_slug_or`, for the model's ``json_schema_extra``."""

    def state(schema: dict[str, Any]) -> None:
        schema["anyOf"] = [
            {"required": ["slug"], "properties": {"slug": {"type": "string"}}},
            {"properties": {source: {"pattern": _SLUG_SOURCE}}},
        ]
        schema["description"] = (
            f"Without a slug, the slug is derived from {source}, which must then hold an "
            "ASCII letter or digit."
        )

    return state


def _slug_or(source: str) -> AfterValidator:
    """The check of a ``slug`` member that, when absent, is derived from ``source``.

    Run on ``slug`` (also when left out: ``validate_default``), so that the problem names the
    member to give.
    """

    def check(slug: str | None, info: ValidationInfo) -> str | None:
        text = info.data.get(source)  # absent when it failed its own rules
        if slug is None and text is not None and re.search(_SLUG_SOURCE, text) is None:
            raise ValueError(
                f"{source} holds no ASCII letter or digit to derive the slug from; give a slug"
            )
        return slug

    return AfterValidator(check)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Body(_Strict):
    """A JSON body: strict about types, as its JSON Schema is."""

    model_config = ConfigDict(strict=True)


class PageParams(_Strict):
    """``page`` (or ``cursor``) and ``per_page`` of every list endpoint.

    ``cursor`` is a ``next_cursor`` of an earlier page of the same query (see
    :mod:`service.pages`); ``page`` and ``cursor`` together are refused.
    """

    page: int = Field(1, ge=1, le=1_000_000)
    per_page: int = Field(20, ge=1, le=100)
    cursor: Omittable[Cursor] = None

    @model_validator(mode="after")
    def _page_or_cursor(self) -> PageParams:
        if self.cursor is not None and "page" in self.model_fields_set:
            raise ValueError("give page or cursor, not both")
        return self


class ArticleListParams(PageParams):
    """The query parameters of ``GET /api/v1/articles``."""

    category: Omittable[Slug] = None
    tag: Omittable[Slug] = None
    author: Omittable[Username] = None
    q: Omittable[SearchText] = None
    sort: Omittable[Sort] = None


class ArticleCreate(Body):
    """The body of ``POST /api/v1/articles``; ``slug`` is derived from ``title`` when absent.

    ``series_position`` without ``series`` is refused; ``series`` without it appends the
    article to the end of that series (after its last position). Positions are not unique:
    articles at the same position keep the order they were created in.
    """

    model_config = ConfigDict(json_schema_extra=_slug_derivable_from("title"))

    title: Title
    body: ArticleBody
    slug: Annotated[Slug | None, _slug_or("title")] = Field(None, validate_default=True)
    summary: Summary = ""
    body_format: BodyFormat = "markdown"
    status: Status = "draft"
    published_at: Moment | None = None
    author: Username
    category: Slug | None = None
    tags: Annotated[list[Slug], Field(max_length=50)] = []
    series: Slug | None = None
    series_position: Position | None = None


class ArticlePatch(Body):
    """The body of ``PATCH /api/v1/articles/{slug}`` (a JSON merge patch).

    Members left out stay as they are; ``null`` clears the members that may be empty
    (``category``, ``published_at``, ``series``; ``series_position`` null moves the article to
    the end of its series) and is refused for the others.
    """

    title: NotNull[Title] = None
    body: NotNull[ArticleBody] = None
    slug: NotNull[Slug] = None
    summary: NotNull[Summary] = None
    body_format: NotNull[BodyFormat] = None
    status: NotNull[Status] = None
    published_at: Moment | None = None
    author: NotNull[Username] = None
    category: Slug | None = None
    tags: NotNull[Annotated[list[Slug], Field(max_length=50)]] = None
    series: Slug | None = None
    series_position: Position | None = None


class CommentCreate(Body):
    """The body of ``POST /api/v1/articles/{slug}/comments``."""

    author_name: Name
    body: CommentBody
    parent_id: RowId | None = None


class AuthorCreate(Body):
    """The body of ``POST /api/v1/authors``."""

    username: Username
    display_name: Name
    bio: About = ""


class AuthorPatch(Body):
    """The body of ``PATCH /api/v1/authors/{username}``."""

    username: NotNull[Username] = None
    display_name: NotNull[Name] = None
    bio: NotNull[About] = None


class CategoryCreate(Body):
    """The body of ``POST /api/v1/categories``; ``slug`` is derived from ``name`` when absent."""

    model_config = ConfigDict(json_schema_extra=_slug_derivable_from("name"))

    name: Name
    slug: Annotated[Slug | None, _slug_or("name")] = Field(None, validate_default=True)
    description: About = ""


class CategoryPatch(Body):
    """The body of ``PATCH /api/v1/categories/{slug}``."""

    name: NotNull[Name] = None
    slug: NotNull[Slug] = None
    description: NotNull[About] = None


class TagCreate(Body):
    """The body of ``POST /api/v1/tags``; ``slug`` is derived from ``name`` when absent."""

    model_config = ConfigDict(json_schema_extra=_slug_derivable_from("name"))

    name: Name
    slug: Annotated[Slug | None, _slug_or("name")] = Field(None, validate_default=True)


class TagPatch(Body):
    """The body of ``PATCH /api/v1/tags/{slug}``."""

    name: NotNull[Name] = None
    slug: NotNull[Slug] = None


class SeriesCreate(Body):
    """The body of ``POST /api/v1/series``; ``slug`` is derived from ``name`` when absent."""

    model_config = ConfigDict(json_schema_extra=_slug_derivable_from("name"))

    name: Name
    slug: Annotated[Slug | None, _slug_or("name")] = Field(None, validate_default=True)
    description: About = ""


class SeriesPatch(Body):
    """The body of ``PATCH /api/v1/series/{slug}``."""

    name: NotNull[Name] = None
    slug: NotNull[Slug] = None
    description: NotNull[About] = None
