"""The two invalidation taggers, write by write: which tags each change makes wrong.

``tags_for_row_change`` reads the row images the outbox trigger records (see migration 0002:
the row as JSON without ``body`` and ``search_vector``; an article's new image also carries
its ``tag_ids``, its old image does not). ``tags_for_change`` reads SQLAlchemy attribute
history at flush; the instances here are built without a database: values set with
``set_committed_value`` are what a load leaves (history "unchanged"), values assigned after
it are the change (history "added" and "deleted"), as in a session.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from sqlalchemy.orm.attributes import set_committed_value

from cache import Change
from service.keyspaces import tags_for_change, tags_for_row_change
from service.models import Article, Author, Category, Comment, Series, Tag

M = TypeVar("M")

# An article (id 1, slug "hello") by author 3 in category 4 with tags 7 and 8.
ARTICLE_ROW = {
    "id": 1,
    "slug": "hello",
    "title": "Hello",
    "summary": "",
    "body_format": "markdown",
    "status": "published",
    "author_id": 3,
    "category_id": 4,
    "published_at": "2026-01-02T03:04:05+00:00",
    "created_at": "2026-01-01T00:00:00+00:00",
    "updated_at": "2026-01-01T00:00:00+00:00",
}
ARTICLE_ITSELF = {"article:1", "articles", "absent:article:hello"}
ARTICLE_COUNTS = {"author-count:3", "category-count:4", "tag-count:7", "tag-count:8"}
AUTHOR_ROW = {"id": 3, "username": "ann", "display_name": "Ann", "bio": "", "created_at": "x"}
CATEGORY_ROW = {"id": 4, "slug": "guides", "name": "Guides", "description": ""}
TAG_ROW = {"id": 7, "slug": "redis", "name": "Redis"}
SERIES_ROW = {"id": 5, "slug": "guide", "name": "Guide", "description": ""}
COMMENT_ROW = {"id": 9, "article_id": 1, "parent_id": None, "author_name": "x", "created_at": "x"}


def old_article(**changes: Any) -> dict[str, Any]:
    """An article's old image (no ``tag_ids``: the trigger adds them to the new one only)."""
    return {**ARTICLE_ROW, **changes}


def new_article(tag_ids: tuple[int, ...] = (7, 8), **changes: Any) -> dict[str, Any]:
    """An article's new image, with the ids of its tags."""
    return {**ARTICLE_ROW, **changes, "tag_ids": list(tag_ids)}


def row(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


def entity_row_cases(
    table: str,
    kind: str,
    base: dict[str, Any],
    key: str,
    renamed: str,
    other: dict[str, Any],
    listed: str = "",
) -> list[Any]:
    """Insert, delete, rename and a change of another column of an entity (list tag: table)."""
    entity, absent = f"{kind}:{base['id']}", f"absent:{kind}:{base[key]}"
    listed = listed or table
    return [
        pytest.param(table, "INSERT", None, base, {entity, listed, absent}, id=f"{table}-insert"),
        pytest.param(table, "DELETE", base, None, {entity, listed, absent}, id=f"{table}-delete"),
        pytest.param(
            table, "UPDATE", base, row(base, **{key: renamed}),
            {entity, listed, absent, f"absent:{kind}:{renamed}"},
            id=f"{table}-rename",
        ),
        pytest.param(table, "UPDATE", base, row(base, **other), {entity}, id=f"{table}-non-key"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("table", "op", "old", "new", "expected"),
    [
        pytest.param("articles", "INSERT", None, new_article(),
                     ARTICLE_ITSELF | ARTICLE_COUNTS, id="articles-insert"),
        pytest.param("articles", "INSERT", None, new_article((), category_id=None),
                     ARTICLE_ITSELF | {"author-count:3"},
                     id="articles-insert-without-category-or-tags"),
        # A delete's image is the old one: its tag links go in rows of their own (cascade).
        pytest.param("articles", "DELETE", old_article(), None,
                     ARTICLE_ITSELF | {"author-count:3", "category-count:4"},
                     id="articles-delete"),
        pytest.param("articles", "UPDATE", old_article(), new_article(title="Hi"),
                     ARTICLE_ITSELF, id="articles-update-title-only"),
        pytest.param("articles", "UPDATE", old_article(), new_article(status="draft"),
                     ARTICLE_ITSELF | ARTICLE_COUNTS, id="articles-update-status"),
        pytest.param("articles", "UPDATE", old_article(),
                     new_article(published_at="2027-01-01T00:00:00+00:00"),
                     ARTICLE_ITSELF | ARTICLE_COUNTS, id="articles-update-published-at"),
        pytest.param("articles", "UPDATE", old_article(), new_article(author_id=5),
                     ARTICLE_ITSELF | {"author-count:3", "author-count:5"},
                     id="articles-update-author"),
        pytest.param("articles", "UPDATE", old_article(), new_article(category_id=6),
                     ARTICLE_ITSELF | {"category-count:4", "category-count:6"},
                     id="articles-update-category"),
        pytest.param("articles", "UPDATE", old_article(), new_article(category_id=None),
                     ARTICLE_ITSELF | {"category-count:4"}, id="articles-update-category-to-none"),
        pytest.param("articles", "UPDATE", old_article(), new_article(slug="moved"),
                     ARTICLE_ITSELF | {"absent:article:moved"}, id="articles-update-slug"),
        pytest.param("article_tags", "INSERT", None, {"article_id": 1, "tag_id": 7},
                     {"article:1", "articles", "tag-count:7"}, id="article_tags-insert"),
        pytest.param("article_tags", "DELETE", {"article_id": 1, "tag_id": 7}, None,
                     {"article:1", "articles", "tag-count:7"}, id="article_tags-delete"),
        pytest.param("article_tags", "UPDATE", {"article_id": 1, "tag_id": 7},
                     {"article_id": 1, "tag_id": 8},
                     {"article:1", "articles", "tag-count:7", "tag-count:8"},
                     id="article_tags-update"),
        pytest.param("comments", "INSERT", None, COMMENT_ROW, {"article:1"},
                     id="comments-insert"),
        pytest.param("comments", "UPDATE", COMMENT_ROW, row(COMMENT_ROW, author_name="y"),
                     {"article:1"}, id="comments-update"),
        pytest.param("comments", "DELETE", COMMENT_ROW, None, {"article:1"},
                     id="comments-delete"),
        *entity_row_cases("authors", "author", AUTHOR_ROW, "username", "bob",
                          {"display_name": "Ann B"}),
        *entity_row_cases("categories", "category", CATEGORY_ROW, "slug", "howto",
                          {"name": "How-to", "description": "d"}),
        *entity_row_cases("tags", "tag", TAG_ROW, "slug", "valkey", {"name": "REDIS"}),
        *entity_row_cases("series", "series", SERIES_ROW, "slug", "howto", {"name": "How-to"},
                          listed="series-list"),
        pytest.param("articles", "UPDATE", old_article(),
                     new_article(series_id=5, series_position=1),
                     ARTICLE_ITSELF | {"series-count:5"},
                     id="articles-join-series"),
        pytest.param("articles", "UPDATE", old_article(series_id=5, series_position=1),
                     new_article(series_id=5, series_position=2),
                     ARTICLE_ITSELF | {"series-count:5"},
                     id="articles-move-in-series"),
        pytest.param("cache_outbox", "INSERT", None, {"id": 1}, set(), id="unknown-table"),
    ],
)  # fmt: skip
def test_row_change_tags(
    table: str,
    op: str,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    expected: set[str],
) -> None:
    assert tags_for_row_change(table, op, old, new) == expected


@pytest.mark.parametrize(
    "table", ["articles", "article_tags", "comments", "authors", "categories", "tags"]
)
def test_row_tagger_refuses_a_truncate(table: str) -> None:
    with pytest.raises(ValueError, match=f"TRUNCATE of {table} needs a purge"):
        tags_for_row_change(table, "TRUNCATE", None, None)


def loaded(model: type[M], **values: Any) -> M:
    """An instance as a load leaves it: ``values`` committed, no history of change."""
    instance = model()
    for name, value in values.items():
        set_committed_value(instance, name, value)
    return instance


def changed(instance: M, **values: Any) -> M:
    """``instance`` with ``values`` assigned (the change a flush would write)."""
    for name, value in values.items():
        setattr(instance, name, value)
    return instance


def tag(tag_id: int) -> Tag:
    return loaded(Tag, id=tag_id, slug=f"tag-{tag_id}", name=f"Tag {tag_id}")


T7, T8, T9 = tag(7), tag(8), tag(9)
ARTICLE_VALUES: dict[str, Any] = {
    "id": 1,
    "slug": "hello",
    "title": "Hello",
    "status": "published",
    "author_id": 3,
    "category_id": 4,
    "published_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
}


def article(**changes: Any) -> Article:
    """The loaded article of ARTICLE_VALUES, tags 7 and 8 loaded, with ``changes`` assigned."""
    return changed(loaded(Article, **ARTICLE_VALUES, tags=[T7, T8]), **changes)


def entity_cases(
    model: type[Any], kind: str, listed: str, key: str, renamed: str, other: dict[str, Any]
) -> list[Any]:
    """Insert, delete, rename and a change of another column of an author, category or tag."""
    values = {"id": 3, key: "old", **{name: "before" for name in other}}
    entity, absent = f"{kind}:3", f"absent:{kind}:old"
    name = model.__name__.lower()
    return [
        pytest.param(model(**values), Change.INSERT, {entity, listed, absent},
                     id=f"{name}-insert"),
        pytest.param(loaded(model, **values), Change.DELETE, {entity, listed, absent},
                     id=f"{name}-delete"),
        pytest.param(changed(loaded(model, **values), **{key: renamed}), Change.UPDATE,
                     {entity, listed, absent, f"absent:{kind}:{renamed}"},
                     id=f"{name}-rename"),
        pytest.param(changed(loaded(model, **values), **other), Change.UPDATE, {entity},
                     id=f"{name}-non-key"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("instance", "change", "expected"),
    [
        pytest.param(Article(**ARTICLE_VALUES, tags=[T7, T8]), Change.INSERT,
                     ARTICLE_ITSELF | ARTICLE_COUNTS, id="article-insert"),
        pytest.param(Article(**{**ARTICLE_VALUES, "category_id": None}), Change.INSERT,
                     ARTICLE_ITSELF | {"author-count:3"},
                     id="article-insert-without-category-or-tags"),
        pytest.param(article(), Change.DELETE, ARTICLE_ITSELF | ARTICLE_COUNTS,
                     id="article-delete"),
        pytest.param(article(title="Hi"), Change.UPDATE, ARTICLE_ITSELF,
                     id="article-update-title-only"),
        pytest.param(article(status="draft"), Change.UPDATE, ARTICLE_ITSELF | ARTICLE_COUNTS,
                     id="article-update-status"),
        pytest.param(article(status="published", title="Hello"), Change.UPDATE, ARTICLE_ITSELF,
                     id="article-update-to-the-same-values"),
        pytest.param(article(published_at=datetime(2027, 1, 1, tzinfo=UTC)), Change.UPDATE,
                     ARTICLE_ITSELF | ARTICLE_COUNTS, id="article-update-published-at"),
        pytest.param(article(author_id=5), Change.UPDATE,
                     ARTICLE_ITSELF | {"author-count:3", "author-count:5"},
                     id="article-update-author"),
        pytest.param(article(category_id=6), Change.UPDATE,
                     ARTICLE_ITSELF | {"category-count:4", "category-count:6"},
                     id="article-update-category"),
        pytest.param(article(category_id=None), Change.UPDATE,
                     ARTICLE_ITSELF | {"category-count:4"}, id="article-update-category-to-none"),
        pytest.param(article(slug="moved"), Change.UPDATE,
                     ARTICLE_ITSELF | {"absent:article:moved"}, id="article-update-slug"),
        pytest.param(article(tags=[T7, T8, T9]), Change.UPDATE,
                     ARTICLE_ITSELF | {"tag-count:9"}, id="article-update-tag-added"),
        pytest.param(article(tags=[T8]), Change.UPDATE, ARTICLE_ITSELF | {"tag-count:7"},
                     id="article-update-tag-removed"),
        pytest.param(article(tags=[T9], status="archived"), Change.UPDATE,
                     ARTICLE_ITSELF | ARTICLE_COUNTS | {"tag-count:9"},
                     id="article-update-tags-and-status"),
        pytest.param(Comment(id=9, article_id=1, author_name="x", body="b"), Change.INSERT,
                     {"article:1"}, id="comment-insert"),
        pytest.param(changed(loaded(Comment, id=9, article_id=1, body="b"), body="c"),
                     Change.UPDATE, {"article:1"}, id="comment-update"),
        pytest.param(loaded(Comment, id=9, article_id=1), Change.DELETE, {"article:1"},
                     id="comment-delete"),
        *entity_cases(Author, "author", "authors", "username", "bob",
                      {"display_name": "Ann B", "bio": "b"}),
        *entity_cases(Category, "category", "categories", "slug", "howto",
                      {"name": "How-to"}),
        *entity_cases(Tag, "tag", "tags", "slug", "valkey", {"name": "Valkey"}),
        *entity_cases(Series, "series", "series-list", "slug", "howto", {"name": "How-to"}),
        pytest.param(article(series_id=5, series_position=1), Change.UPDATE,
                     ARTICLE_ITSELF | {"series-count:5"},
                     id="article-joins-a-series"),
        pytest.param(changed(loaded(Article, **ARTICLE_VALUES, series_id=5, series_position=1,
                                    tags=[T7, T8]), series_position=4),
                     Change.UPDATE, ARTICLE_ITSELF | {"series-count:5"},
                     id="article-moves-in-its-series"),
        pytest.param(object(), Change.INSERT, set(), id="not-a-content-model"),
    ],
)  # fmt: skip
def test_flush_change_tags(instance: Any, change: Change, expected: set[str]) -> None:
    assert set(tags_for_change(instance, change)) == expected
