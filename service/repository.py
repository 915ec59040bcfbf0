"""Every SQL statement of the service.

Reads are Core statements that return plain dicts and lists, ready for ``orjson``: each public
read is one round trip to PostgreSQL (an article with its author, category, tags and comment
count is one statement; a page and its total are one statement). Writes use the ORM models, so
that their flushes are tagged for invalidation (see :mod:`service.keyspaces`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    exists,
    func,
    literal_column,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSON, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import selectinload

from service.models import Article, Author, Category, Comment, Tag, article_tags, natural_key

SORTS: dict[str, tuple[ColumnElement[Any], ...]] = {
    "-published_at": (Article.published_at.desc(), Article.id.desc()),
    "published_at": (Article.published_at.asc(), Article.id.asc()),
    "-updated_at": (Article.updated_at.desc(), Article.id.desc()),
    "title": (Article.title.asc(), Article.id.asc()),
}


async def ping(engine: AsyncEngine) -> None:
    """Run ``SELECT 1`` on a pooled connection of ``engine``.

    Raises:
        Whatever connecting or the statement raises.
    """
    async with engine.connect() as conn:
        await conn.execute(select(literal_column("1")))


def visible() -> ColumnElement[bool]:
    """The condition of an article that readers may see."""
    return and_(Article.status == "published", Article.published_at <= func.now())


def next_publication() -> Any:
    """The earliest ``published_at`` still in the future of a published article, or NULL.

    At that moment lists, counts and the article itself change with no write: the cache keeps
    nothing that shows them past it.
    """
    return (
        select(func.min(Article.published_at))
        .where(Article.status == "published", Article.published_at > func.now())
        .scalar_subquery()
    )


def _tags_json() -> Any:
    obj = func.json_build_object("id", Tag.id, "slug", Tag.slug, "name", Tag.name)
    return (
        select(
            func.coalesce(
                func.json_agg(aggregate_order_by(obj, Tag.slug)), literal_column("'[]'::json")
            )
        )
        .select_from(article_tags.join(Tag, Tag.id == article_tags.c.tag_id))
        .where(article_tags.c.article_id == Article.id)
        .scalar_subquery()
        .cast(JSON)
    )


def _summary_columns() -> list[Any]:
    return [
        Article.id,
        Article.slug,
        Article.title,
        Article.summary,
        Author.id.label("author_id"),
        Author.username.label("author_username"),
        Author.display_name.label("author_display_name"),
        Category.id.label("category_id"),
        Category.slug.label("category_slug"),
        Category.name.label("category_name"),
        _tags_json().label("tags"),
        Article.published_at,
        Article.updated_at,
    ]


def _with_joins(stmt: Select[Any]) -> Select[Any]:
    return (
        stmt.select_from(Article)
        .join(Author, Author.id == Article.author_id)
        .outerjoin(Category, Category.id == Article.category_id)
    )


@dataclass(frozen=True, slots=True)
class ArticleFilter:
    """The validated filters, search and order of a page of article summaries."""

    page: int = 1
    per_page: int = 20
    category: str | None = None
    tag: str | None = None
    author: str | None = None
    q: str | None = None
    sort: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of rows and the total they are taken from.

    Attributes:
        total: how many rows match, over all pages.
        rows: the page's rows, in order.
        filter_ids: for each filter given, the id of the row it names, or None when it names
            none (the caller answers 404).
        next_publication: see :func:`next_publication`.
    """

    total: int
    rows: list[Any]
    filter_ids: dict[str, int | None]
    next_publication: datetime | None = None


async def _page(
    session: AsyncSession,
    rows: Select[Any],
    order: tuple[ColumnElement[Any], ...],
    total: Any,
    headers: dict[str, Any],
    page: int,
    per_page: int,
) -> Page:
    """Run one statement: a one-row header (total, filter ids) left-joined to the page's rows.

    The header row is there even when the page is empty, so the total and the filter ids come
    back in the same round trip as the rows.
    """
    head = select(
        total.label("total"),
        next_publication().label("next_publication"),
        *(sq.label(f"f_{name}") for name, sq in headers.items()),
    ).subquery("h")
    body = (
        rows.add_columns(func.row_number().over(order_by=order).label("rn"))
        .order_by(*order)
        .limit(per_page)
        .offset((page - 1) * per_page)
        .lateral("p")
    )
    stmt = select(head, body).select_from(head.outerjoin(body, true())).order_by(body.c.rn)
    result = (await session.execute(stmt)).all()
    first = result[0]
    return Page(
        first.total,
        [r for r in result if r.id is not None],
        {name: getattr(first, f"f_{name}") for name in headers},
        first.next_publication,
    )


async def article_page(session: AsyncSession, f: ArticleFilter) -> Page:
    """Return a page of visible article summaries, its total and filter ids: one statement."""
    conds: list[ColumnElement[bool]] = [visible()]
    header: dict[str, Any] = {}
    if f.author is not None:
        header["author"] = select(Author.id).where(Author.username == f.author).scalar_subquery()
        conds.append(Article.author_id == header["author"])
    if f.category is not None:
        header["category"] = (
            select(Category.id).where(Category.slug == f.category).scalar_subquery()
        )
        conds.append(Article.category_id == header["category"])
    if f.tag is not None:
        header["tag"] = select(Tag.id).where(Tag.slug == f.tag).scalar_subquery()
        conds.append(
            exists().where(
                article_tags.c.article_id == Article.id, article_tags.c.tag_id == header["tag"]
            )
        )
    order: tuple[ColumnElement[Any], ...]
    if f.q is not None:
        query = func.websearch_to_tsquery("english", f.q)
        conds.append(Article.search_vector.op("@@")(query))
        order = (
            SORTS[f.sort]
            if f.sort
            else (func.ts_rank_cd(Article.search_vector, query).desc(), Article.id.desc())
        )
    else:
        order = SORTS[f.sort or "-published_at"]
    total = select(func.count()).select_from(Article).where(*conds).scalar_subquery()
    rows = _with_joins(select(*_summary_columns())).where(*conds)
    return await _page(session, rows, order, total, header, f.page, f.per_page)


async def article_by_slug(
    session: AsyncSession, slug: str, *, only_visible: bool = True
) -> Any | None:
    """Return the article at ``slug`` as a row (summary columns plus the rest), or None.

    The row's ``visible`` column says whether readers may see it now.

    Args:
        session: the session to read in.
        slug: the article's slug.
        only_visible: when True, only published articles are found, scheduled ones included
            (``visible`` false: the caller answers 404 until their ``published_at``); when
            False, drafts and archived articles too.
    """
    comment_count = select(func.count()).where(Comment.article_id == Article.id).scalar_subquery()
    stmt = _with_joins(
        select(
            *_summary_columns(),
            Article.body,
            Article.body_format,
            Article.status,
            comment_count.label("comment_count"),
            Article.created_at,
            visible().label("visible"),
        )
    ).where(Article.slug == slug)
    if only_visible:
        stmt = stmt.where(Article.status == "published")
    return (await session.execute(stmt)).first()


async def comments_of(session: AsyncSession, slug: str) -> Any | None:
    """Return the published article's ``id``, ``visible``, ``published_at`` and ``comments``.

    ``comments`` holds all its comments, oldest first; None when no published article has that
    slug. One statement: the article row with its comments aggregated as JSON.
    """
    obj = func.json_build_object(
        "id", Comment.id,
        "parent_id", Comment.parent_id,
        "author_name", Comment.author_name,
        "body", Comment.body,
        "created_at", func.to_char(
            Comment.created_at.op("AT TIME ZONE")("UTC"), 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
        ),
    )  # fmt: skip
    comments = (
        select(
            func.coalesce(
                func.json_agg(aggregate_order_by(obj, Comment.created_at, Comment.id)),
                literal_column("'[]'::json"),
            )
        )
        .where(Comment.article_id == Article.id)
        .scalar_subquery()
        .cast(JSON)
    )
    stmt = select(
        Article.id,
        Article.published_at,
        visible().label("visible"),
        comments.label("comments"),
    ).where(Article.slug == slug, Article.status == "published")
    return (await session.execute(stmt)).first()


# Authors, categories and tags -------------------------------------------------------------


def _count_of(entity: Any) -> Any:
    if entity is Tag:
        return (
            select(func.count())
            .select_from(article_tags.join(Article, Article.id == article_tags.c.article_id))
            .where(article_tags.c.tag_id == Tag.id, visible())
            .scalar_subquery()
        )
    cond = (
        Article.author_id == Author.id if entity is Author else Article.category_id == Category.id
    )
    return select(func.count()).select_from(Article).where(cond, visible()).scalar_subquery()


async def entity_page(session: AsyncSession, entity: Any, page: int, per_page: int) -> Page:
    """Return a page of authors, categories or tags with their article counts: one statement."""
    order = (natural_key(entity), entity.id)
    total = select(func.count()).select_from(entity).scalar_subquery()
    rows = select(*entity.__table__.columns, _count_of(entity).label("article_count"))
    return await _page(session, rows, order, total, {}, page, per_page)


async def entity_by_key(session: AsyncSession, entity: Any, key: str) -> Any | None:
    """Return the author (by username), category or tag (by slug) with its article count.

    The row also has ``next_publication`` (see :func:`next_publication`).
    """
    stmt = select(
        *entity.__table__.columns,
        _count_of(entity).label("article_count"),
        next_publication().label("next_publication"),
    ).where(natural_key(entity) == key)
    return (await session.execute(stmt)).first()


# Writes -------------------------------------------------------------------------------------


async def article_for_update(session: AsyncSession, slug: str) -> Article | None:
    """Return the article at ``slug`` (any status), locked, with its tags loaded.

    The tags must be loaded for the flush tagger to see which tag counts a change moves.
    """
    stmt = (
        select(Article)
        .where(Article.slug == slug)
        .options(selectinload(Article.tags))
        .with_for_update(of=Article)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def find_one(session: AsyncSession, entity: Any, key: str, *, lock: bool = False) -> Any:
    """Return the author (by username), category or tag (by slug) named ``key``, or None."""
    stmt = select(entity).where(natural_key(entity) == key)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def tags_by_slugs(session: AsyncSession, slugs: list[str]) -> list[Tag]:
    """Return the tags named by ``slugs`` that exist, ordered by slug."""
    if not slugs:
        return []
    return list(
        (await session.scalars(select(Tag).where(Tag.slug.in_(slugs)).order_by(Tag.slug))).all()
    )


async def slug_taken(session: AsyncSession, slug: str) -> bool:
    """Return whether an article (of any status) has ``slug``."""
    return bool(await session.scalar(select(exists().where(Article.slug == slug))))


async def has_articles(session: AsyncSession, author_id: int) -> bool:
    """Return whether the author wrote any article, of any status."""
    return bool(await session.scalar(select(exists().where(Article.author_id == author_id))))


async def comment_by_id(session: AsyncSession, comment_id: int) -> Comment | None:
    """Return the comment ``comment_id``, or None."""
    return await session.get(Comment, comment_id)


async def article_id_of_visible(session: AsyncSession, slug: str) -> int | None:
    """Return the id of the visible article at ``slug``, or None."""
    return await session.scalar(select(Article.id).where(Article.slug == slug, visible()))
