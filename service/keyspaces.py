"""The content key spaces and their tags: what each cached answer depends on.

Namespaces (the second segment of entry keys, the unit of TTL, statistics and purge):

============  ==========================================  =================================
namespace     entry                                       identity
============  ==========================================  =================================
article       one article                                 slug
comments      one article's comment threads               article slug
articles      a page of article summaries                 canonical query parameters
author        one author                                  username
authors       a page of authors                           page, per_page
category      one category                                slug
categories    a page of categories                        page, per_page
tag           one tag                                     slug
tags          a page of tags                              page, per_page
series        one series with its articles in order       slug
series-list   a page of series                            page, per_page
============  ==========================================  =================================

The entity kinds' namespaces and tags are derived from :mod:`service.kinds`.

Tags (what a write invalidates; see docs/cache-design.md for the reasoning):

* ``article:{id}``: the article's own row, its tag links or its comments changed. Carried by
  its item and its comment threads.
* ``articles``: some article was created, changed or deleted, which may change any page,
  total or order of article summaries. Carried by every page of summaries.
* ``author:{id}`` / ``category:{id}`` / ``tag:{id}`` / ``series:{id}``: the row itself
  changed (a rename).
  Carried by its item, list pages that list it, every article item and summary page that
  embeds it, and summary pages filtered by it.
* ``author-count:{id}`` (and ``category-count``, ``tag-count``, ``series-count``): its
  ``article_count`` (or a series' order) may have changed. Carried by its item and the list
  pages that list it; not by articles, so an article write does not evict every article of the
  same author. A series item also carries the ``article:{id}`` tag of each article it lists.
* ``authors`` / ``categories`` / ``tags`` / ``series-list``: membership or order of the list
  changed (create, delete, or a change of the sort field). Carried by every page of that list.
* ``absent:{kind}:{key}``: something may now exist at that slug or username (a create, a
  rename, a change of status). Carried by the cached 404s of that key (negative caching):
  the article item and comments of a slug, an entity's item (author, category, tag or
  series), and summary pages filtered by a name that names nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm.attributes import History

from cache import Change, KeyScheme, Namespace
from service.kinds import BY_MODEL, BY_TABLE, KINDS, LINKED, REFERENCED, EntityKind
from service.models import Article, Base, Comment

ARTICLE = "article"
ARTICLES = "articles"
COMMENTS = "comments"
NAMESPACES = (
    ARTICLE,
    ARTICLES,
    COMMENTS,
    *(name for kind in KINDS for name in (kind.name, kind.list_namespace)),
)

# Attributes of an article whose change can alter whether it counts anywhere at all.
_VISIBILITY_ATTRS = ("status", "published_at")


def _membership_attrs(kind: EntityKind) -> tuple[str, ...]:
    """The article's columns whose change moves it between the entities of ``kind``, or in one."""
    return tuple(c for c in (kind.article_column, kind.position_column) if c)


@dataclass(frozen=True, slots=True)
class ContentKeys:
    """The namespaces of the content service under one key scheme.

    Attributes:
        article, articles, comments: the article namespaces.
        items: each entity kind's item namespace, by kind name.
        lists: each entity kind's list namespace, by kind name.
    """

    article: Namespace
    articles: Namespace
    comments: Namespace
    items: Mapping[str, Namespace]
    lists: Mapping[str, Namespace]

    @classmethod
    def from_scheme(cls, scheme: KeyScheme) -> ContentKeys:
        """Return the content namespaces of ``scheme``."""
        return cls(
            scheme.namespace(ARTICLE),
            scheme.namespace(ARTICLES),
            scheme.namespace(COMMENTS),
            {kind.name: scheme.namespace(kind.name) for kind in KINDS},
            {kind.name: scheme.namespace(kind.list_namespace) for kind in KINDS},
        )


def entity_tag(kind: str, entity_id: int) -> str:
    """Tag of everything that embeds or lists one entity of ``kind`` (e.g. "author")."""
    return f"{kind}:{entity_id}"


def absent_tag(kind: str, key: str) -> str:
    """Tag of the cached 404s of ``kind`` ("article" or an entity kind's name) at ``key``."""
    return f"absent:{kind}:{key}"


def article_tag(article_id: int) -> str:
    """Tag of article ``article_id``'s item, comment threads and the series item listing it."""
    return f"article:{article_id}"


def count_tag(kind: str, entity_id: int) -> str:
    """Tag of the entries showing the ``article_count`` (or articles) of one entity."""
    return f"{kind}-count:{entity_id}"


def listed_tags(kind: str, entity_id: int) -> tuple[str, str]:
    """Tags of an entity's item, or of a list page that shows it."""
    return entity_tag(kind, entity_id), count_tag(kind, entity_id)


def embedded_tags(row: Mapping[str, Any]) -> list[str]:
    """Tags of the entities that an article row embeds.

    ``row`` maps ``{kind}_id`` (or None) of each kind an article refers to, and the linked
    kind's plural (``tags``) to dicts with ``id``.
    """
    tags = []
    for kind in REFERENCED:
        entity_id = row[kind.label("id")]
        if entity_id is not None:
            tags.append(entity_tag(kind.name, entity_id))
    tags.extend(entity_tag(LINKED.name, t["id"]) for t in row[LINKED.plural])
    return tags


def tags_for_change(instance: object, change: Change) -> Iterator[str]:
    """Return the tags that ``change`` of ``instance`` makes wrong (the ORM flush tagger).

    Runs inside ``after_flush``: reads attribute history, never emits SQL. An article's
    ``tags`` collection must be loaded when the article is changed or deleted.
    """
    if isinstance(instance, Article):
        yield from _article_tags(instance, change)
    elif isinstance(instance, Comment):
        yield article_tag(instance.article_id)
    elif isinstance(instance, Base) and type(instance) in BY_MODEL:
        yield from _entity_tags(BY_MODEL[type(instance)], instance, change)


def _entity_tags(kind: EntityKind, instance: Base, change: Change) -> Iterator[str]:
    yield entity_tag(kind.name, inspect(instance).attrs.id.value)
    key_history = inspect(instance).attrs[kind.key].history
    if change is not Change.UPDATE or key_history.has_changes():
        yield kind.list_namespace
        yield from (absent_tag(kind.name, k) for k in _values(key_history))


def _article_tags(article: Article, change: Change) -> Iterator[str]:
    state = inspect(article)
    yield article_tag(article.id)
    yield ARTICLES
    # A create, rename, or change of status or publication time may end a cached 404.
    yield from (absent_tag(ARTICLE, slug) for slug in _values(state.attrs.slug.history))
    # A create, a delete or a change of visibility moves every count it is in; a change of one
    # reference (or of its place in a series) moves only that kind's counts, old and new.
    visibility_changed = change is not Change.UPDATE or any(
        state.attrs[name].history.has_changes() for name in _VISIBILITY_ATTRS
    )
    for kind in REFERENCED:
        moved = any(state.attrs[c].history.has_changes() for c in _membership_attrs(kind))
        if visibility_changed or moved:
            history = state.attrs[kind.article_column or ""].history
            yield from (count_tag(kind.name, i) for i in _values(history))
    tag_history = state.attrs.tags.history
    if visibility_changed:
        linked_ids = [t.id for t in _values(tag_history)]
    else:  # only the counts of the linked entities added and removed
        linked_ids = [t.id for t in (*tag_history.added, *tag_history.deleted)]
    yield from (count_tag(LINKED.name, i) for i in linked_ids)


def _values(history: History) -> Iterable[Any]:
    return [v for v in (*history.added, *history.unchanged, *history.deleted) if v is not None]


def tags_for_row_change(
    table: str, op: str, old: dict[str, Any] | None, new: dict[str, Any] | None
) -> set[str]:
    """Return the tags that a row change recorded in the outbox makes wrong.

    The row-image twin of :func:`tags_for_change`, for changes made by any SQL (see the
    ``cache_outbox_record`` trigger): ``old`` and ``new`` are the row before and after, as
    JSON objects without large columns (None for an insert's ``old``, a delete's ``new``).
    An ``articles`` image also has ``tag_ids``.

    Raises:
        ValueError: for ``op`` "TRUNCATE", which no set of tags covers (the caller purges).
    """
    if op == "TRUNCATE":
        raise ValueError(f"a TRUNCATE of {table} needs a purge")
    rows = [r for r in (old, new) if r is not None]
    tags: set[str] = set()
    if table == "articles":
        tags.add(ARTICLES)
        for r in rows:
            tags.update((article_tag(r["id"]), absent_tag(ARTICLE, r["slug"])))
        visibility_changed = (
            old is None or new is None or any(old.get(a) != new.get(a) for a in _VISIBILITY_ATTRS)
        )
        for kind in REFERENCED:
            moved = (
                old is not None
                and new is not None
                and any(old.get(c) != new.get(c) for c in _membership_attrs(kind))
            )
            if visibility_changed or moved:
                ids = (r.get(kind.article_column or "") for r in rows)
                tags.update(count_tag(kind.name, i) for i in ids if i is not None)
        if visibility_changed:  # its links' own changes are rows of article_tags
            for r in rows:
                tags.update(count_tag(LINKED.name, t) for t in r.get("tag_ids", ()))
    elif table == "article_tags":
        for r in rows:
            tags.update(
                (article_tag(r["article_id"]), ARTICLES, count_tag(LINKED.name, r["tag_id"]))
            )
    elif table == "comments":
        tags.update(article_tag(r["article_id"]) for r in rows)
    elif table in BY_TABLE:
        kind = BY_TABLE[table]
        tags.update(entity_tag(kind.name, r["id"]) for r in rows)
        if old is None or new is None or old[kind.key] != new[kind.key]:
            tags.add(kind.list_namespace)
            tags.update(absent_tag(kind.name, r[kind.key]) for r in rows)
    return tags
