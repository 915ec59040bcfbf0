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
============  ==========================================  =================================

Tags (what a write invalidates; see docs/cache-design.md for the reasoning):

* ``article:{id}``: the article's own row, its tag links or its comments changed. Carried by
  its item and its comment threads.
* ``articles``: some article was created, changed or deleted, which may change any page,
  total or order of article summaries. Carried by every page of summaries.
* ``author:{id}`` / ``category:{id}`` / ``tag:{id}``: the row itself changed (a rename).
  Carried by its item, list pages that list it, every article item and summary page that
  embeds it, and summary pages filtered by it.
* ``author-count:{id}`` (and ``category-count``, ``tag-count``): its ``article_count`` may
  have changed. Carried by its item and the list pages that list it; not by articles, so an
  article write does not evict every article of the same author.
* ``authors`` / ``categories`` / ``tags``: membership or order of the list changed (create,
  delete, or a change of the sort field). Carried by every page of that list.
* ``absent:{kind}:{key}``: something may now exist at that slug or username (a create, a
  rename, a change of status). Carried by the cached 404s of that key (negative caching):
  the article item and comments of a slug, an author, category or tag item, and summary
  pages filtered by a name that names nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect

from cache import Change, KeyScheme, Namespace
from service.models import Article, Author, Category, Comment, Tag

ARTICLE = "article"
ARTICLES = "articles"
COMMENTS = "comments"
AUTHOR = "author"
AUTHORS = "authors"
CATEGORY = "category"
CATEGORIES = "categories"
TAG = "tag"
TAGS = "tags"
NAMESPACES = (ARTICLE, ARTICLES, AUTHOR, AUTHORS, CATEGORIES, CATEGORY, COMMENTS, TAG, TAGS)

# Attributes of an article whose change can alter which lists and counts include it.
_MEMBERSHIP_ATTRS = ("status", "published_at", "author_id", "category_id")

#: Author, category and tag: the model, its kind (item namespace and entity tag prefix) and its
#: list namespace and tag.
ENTITY_KINDS: tuple[tuple[Any, str, str], ...] = (
    (Author, AUTHOR, AUTHORS),
    (Category, CATEGORY, CATEGORIES),
    (Tag, TAG, TAGS),
)
_BY_MODEL = {model: (kind, list_tag) for model, kind, list_tag in ENTITY_KINDS}
_BY_TABLE = {entry[0].__tablename__: entry for entry in ENTITY_KINDS}


@dataclass(frozen=True, slots=True)
class ContentKeys:
    """The namespaces of the content service under one key scheme."""

    article: Namespace
    articles: Namespace
    comments: Namespace
    author: Namespace
    authors: Namespace
    category: Namespace
    categories: Namespace
    tag: Namespace
    tags: Namespace

    @classmethod
    def from_scheme(cls, scheme: KeyScheme) -> ContentKeys:
        """Return the content namespaces of ``scheme``."""
        return cls(**{name: scheme.namespace(name) for name in NAMESPACES})


def entity_tag(kind: str, entity_id: int) -> str:
    """Tag of everything that embeds or lists an author, category or tag (``kind``)."""
    return f"{kind}:{entity_id}"


def absent_tag(kind: str, key: str) -> str:
    """Tag of the cached 404s of ``kind`` ("article", "author", "category", "tag") at ``key``."""
    return f"absent:{kind}:{key}"


def article_tag(article_id: int) -> str:
    """Tag of article ``article_id``'s item and comment threads."""
    return f"article:{article_id}"


def count_tag(kind: str, entity_id: int) -> str:
    """Tag of the entries showing the ``article_count`` of an author, category or tag."""
    return f"{kind}-count:{entity_id}"


def listed_tags(kind: str, entity_id: int) -> tuple[str, str]:
    """Tags of an author, category or tag item, or of a list page that shows it."""
    return entity_tag(kind, entity_id), count_tag(kind, entity_id)


def embedded_tags(row: Mapping[str, Any]) -> list[str]:
    """Tags of the author, category and tags that an article row embeds.

    ``row`` maps ``author_id``, ``category_id`` (or None) and ``tags`` (dicts with ``id``).
    """
    tags = [entity_tag(AUTHOR, row["author_id"])]
    if row["category_id"] is not None:
        tags.append(entity_tag(CATEGORY, row["category_id"]))
    tags.extend(entity_tag(TAG, t["id"]) for t in row["tags"])
    return tags


def tags_for_change(instance: Any, change: Change) -> Iterator[str]:
    """Return the tags that ``change`` of ``instance`` makes wrong (the ORM flush tagger).

    Runs inside ``after_flush``: reads attribute history, never emits SQL. An article's
    ``tags`` collection must be loaded when the article is changed or deleted.
    """
    if isinstance(instance, Article):
        yield from _article_tags(instance, change)
    elif isinstance(instance, Comment):
        yield article_tag(instance.article_id)
    elif type(instance) in _BY_MODEL:
        yield from _entity_tags(instance, change)


def _entity_tags(instance: Any, change: Change) -> Iterator[str]:
    kind, list_tag = _BY_MODEL[type(instance)]
    yield entity_tag(kind, instance.id)
    key_history = inspect(instance).attrs[instance.key_name].history
    if change is not Change.UPDATE or key_history.has_changes():
        yield list_tag
        yield from (absent_tag(kind, k) for k in _values(key_history))


def _article_tags(article: Article, change: Change) -> Iterator[str]:
    state = inspect(article)
    yield article_tag(article.id)
    yield ARTICLES
    # A create, rename, or change of status or publication time may end a cached 404.
    yield from (absent_tag(ARTICLE, slug) for slug in _values(state.attrs.slug.history))
    tag_history = state.attrs.tags.history
    membership_changed = change is not Change.UPDATE or any(
        state.attrs[name].history.has_changes() for name in _MEMBERSHIP_ATTRS
    )
    if not membership_changed and not tag_history.has_changes():
        return
    if membership_changed:
        yield from (count_tag(AUTHOR, i) for i in _values(state.attrs.author_id.history))
        yield from (count_tag(CATEGORY, i) for i in _values(state.attrs.category_id.history))
        tag_ids = [t.id for t in _values(tag_history)]
    else:  # only its tags changed: only the counts of the tags added and removed
        tag_ids = [t.id for t in (*tag_history.added, *tag_history.deleted)]
    yield from (count_tag(TAG, i) for i in tag_ids)


def _values(history: Any) -> Iterable[Any]:
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
        changed = old is None or new is None or any(old[a] != new[a] for a in _MEMBERSHIP_ATTRS)
        if changed:
            for r in rows:
                tags.add(count_tag(AUTHOR, r["author_id"]))
                if r["category_id"] is not None:
                    tags.add(count_tag(CATEGORY, r["category_id"]))
                tags.update(count_tag(TAG, t) for t in r.get("tag_ids", ()))
    elif table == "article_tags":
        for r in rows:
            tags.update((article_tag(r["article_id"]), ARTICLES, count_tag(TAG, r["tag_id"])))
    elif table == "comments":
        tags.update(article_tag(r["article_id"]) for r in rows)
    elif table in _BY_TABLE:
        model, kind, list_tag = _BY_TABLE[table]
        key = model.key_name
        tags.update(entity_tag(kind, r["id"]) for r in rows)
        if old is None or new is None or old[key] != new[key]:
            tags.add(list_tag)
            tags.update(absent_tag(kind, r[key]) for r in rows)
    return tags
