"""The registry of entity kinds: each kind that articles refer to, declared once.

An author, a category, a tag and a series are each an :class:`EntityKind`. Everything else is
derived from its entry here:

* routes and the OpenAPI document: ``GET``/``POST /api/v1/{plural}``, ``GET``/``PATCH``/
  ``DELETE /api/v1/{plural}/{<key>}``, with its request and response schemas
  (:mod:`service.routes`, :mod:`service.operation_table.taxonomy`);
* key spaces and invalidation tags: its item and list namespaces, and the tags of its row, its
  ``article_count`` and its absence (:mod:`service.keyspaces`);
* reads: the page and item statements and their ``article_count`` rule
  (:mod:`service.repository`), the representations (:mod:`service.documents`);
* writes: create, merge-patch and delete with their rules (:mod:`service.entity_writes`);
* its place in an article: the article column that refers to it (or the tag links), the fields
  an article embeds, and, for a series, the article's position.

Adding a kind is a model and a migration, an entry here, and the request and response models
the entry names (:mod:`service.schemas`, :mod:`service.representations`); an article embeds it
(under ``name``) and a kind with a ``position_column`` orders its articles with no more code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from sqlalchemy.sql.elements import KeyedColumnElement

from service import representations, schemas
from service.models import Author, Base, Category, Series, Tag


@dataclass(frozen=True, slots=True)
class EntityKind:
    """One kind of entity that articles refer to.

    Attributes:
        name: the singular (``"author"``): its item namespace, the prefix of its tags, and the
            member an article embeds it as (when ``article_column`` is set).
        plural: its path segment (``/api/v1/{plural}``), and the member an article embeds the
            list of them as (when linked through ``article_tags``).
        model: the ORM model of its table.
        key: the column that names one in paths and write bodies (``username`` or ``slug``).
        fields: the members of its representation, in order, each a column of its row or
            ``article_count``.
        create: the body of its ``POST``.
        patch: the body of its ``PATCH`` (a JSON merge patch).
        representation: its representation as a page lists it.
        item_representation: its representation at ``/api/v1/{plural}/{<key>}``.
        article_column: the article's column that refers to one of it (many-to-one); None when
            articles are linked to it through ``article_tags`` (many-to-many).
        embedded: its columns that an article's representation embeds; ``key`` among them.
        position_column: the article's column that orders a series' articles (embedded as
            ``position``; the item lists its visible articles in that order); None for none.
        slug_source: the member a missing ``key`` is derived from by slugifying; None when the
            key is required.
        restrict_delete: deleting one is refused (409) while articles refer to it; otherwise
            their reference is cleared.
        name_column: the column of its human-readable name (``display_name`` or ``name``).
        list_namespace: the namespace (and list tag) of its pages; ``plural`` unless that is
            ``name``.
    """

    name: str
    plural: str
    model: type[Base]
    key: str
    fields: tuple[str, ...]
    create: type[BaseModel]
    patch: type[BaseModel]
    representation: type[BaseModel]
    item_representation: type[BaseModel]
    article_column: str | None
    embedded: tuple[str, ...]
    position_column: str | None = None
    slug_source: str | None = "name"
    restrict_delete: bool = False
    list_namespace: str = field(default="")
    name_column: str = "name"

    def __post_init__(self) -> None:
        if self.key not in self.embedded:
            raise ValueError(f"{self.name}: an article must embed its key {self.key!r}")
        if not self.list_namespace:
            plural = self.plural if self.plural != self.name else f"{self.name}-list"
            object.__setattr__(self, "list_namespace", plural)

    def label(self, column: str) -> str:
        """Return the label of its ``column`` in an article's row: ``{name}_{column}``.

        ``id`` and the ``embedded`` columns are labelled so, and ``position`` (the article's
        ``position_column``) and ``next_position`` (see :mod:`service.repository`).
        """
        return f"{self.name}_{column}"

    @property
    def path(self) -> str:
        """The path of its collection, ``/api/v1/{plural}``."""
        return f"/api/v1/{self.plural}"

    @property
    def key_column(self) -> KeyedColumnElement[Any]:
        """The table's column named ``key``."""
        return self.model.__table__.c[self.key]

    @property
    def id_column(self) -> KeyedColumnElement[Any]:
        """The table's ``id`` column."""
        return self.model.__table__.c["id"]

    @property
    def table(self) -> str:
        """The name of its table (the outbox records changes by table)."""
        return str(self.model.__tablename__)

    def new(self, **values: Any) -> Base:
        """Return a new instance of ``model`` with ``values``."""
        return self.model(**values)


AUTHOR = EntityKind(
    name="author",
    plural="authors",
    model=Author,
    key="username",
    fields=("id", "username", "display_name", "bio", "article_count", "created_at"),
    create=schemas.AuthorCreate,
    patch=schemas.AuthorPatch,
    representation=representations.Author,
    item_representation=representations.Author,
    article_column="author_id",
    embedded=("id", "username", "display_name"),
    slug_source=None,
    restrict_delete=True,
    name_column="display_name",
)
CATEGORY = EntityKind(
    name="category",
    plural="categories",
    model=Category,
    key="slug",
    fields=("id", "slug", "name", "description", "article_count"),
    create=schemas.CategoryCreate,
    patch=schemas.CategoryPatch,
    representation=representations.Category,
    item_representation=representations.Category,
    article_column="category_id",
    embedded=("slug", "name"),
)
TAG = EntityKind(
    name="tag",
    plural="tags",
    model=Tag,
    key="slug",
    fields=("id", "slug", "name", "article_count"),
    create=schemas.TagCreate,
    patch=schemas.TagPatch,
    representation=representations.Tag,
    item_representation=representations.Tag,
    article_column=None,
    embedded=("slug", "name"),
)
SERIES = EntityKind(
    name="series",
    plural="series",
    model=Series,
    key="slug",
    fields=("id", "slug", "name", "description", "article_count"),
    create=schemas.SeriesCreate,
    patch=schemas.SeriesPatch,
    representation=representations.SeriesSummary,
    item_representation=representations.Series,
    article_column="series_id",
    embedded=("slug", "name"),
    position_column="series_position",
)

#: Every entity kind, in the order an article's representation embeds them.
KINDS: tuple[EntityKind, ...] = (AUTHOR, CATEGORY, TAG, SERIES)
BY_NAME: dict[str, EntityKind] = {kind.name: kind for kind in KINDS}
BY_MODEL: dict[type[Base], EntityKind] = {kind.model: kind for kind in KINDS}
BY_TABLE: dict[str, EntityKind] = {kind.table: kind for kind in KINDS}
#: The kinds an article refers to by a column of its own (many-to-one).
REFERENCED: tuple[EntityKind, ...] = tuple(k for k in KINDS if k.article_column is not None)
#: The kind an article is linked to through ``article_tags`` (many-to-many).
LINKED: EntityKind = next(k for k in KINDS if k.article_column is None)
