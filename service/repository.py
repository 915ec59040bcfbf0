"""Every SQL statement of the service.

Reads are Core statements built once, at import, with ``bindparam`` placeholders: each public
read is one round trip to PostgreSQL (an article with its author, category, tags and comment
count is one statement; a page and its total are one statement), run by the runners of
:mod:`service.statements` (on asyncpg directly for cache misses; ``entity_by_key`` in the
session for writes).
Writes change rows through the ORM models, so that their flushes are tagged for invalidation (see
:mod:`service.keyspaces`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    Select,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import JSON, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import joinedload

from service.kinds import BY_NAME, LINKED, REFERENCED, EntityKind
from service.models import Article, Author, Base, Category, Comment, Tag, article_tags
from service.statements import Read, Reads, Row

SORTS: dict[str, tuple[ColumnElement[Any], ...]] = {
    "-published_at": (Article.published_at.desc(), Article.id.desc()),
    "published_at": (Article.published_at.asc(), Article.id.asc()),
    "-updated_at": (Article.updated_at.desc(), Article.id.desc()),
    "title": (Article.title.asc(), Article.id.asc()),
}
#: The row column of each order's sort key (besides ``id``), and whether it descends; the
#: relevance order of a search is ``None``.
KEYSET: dict[str | None, tuple[str, bool]] = {
    "-published_at": ("published_at", True),
    "published_at": ("published_at", False),
    "-updated_at": ("updated_at", True),
    "title": ("title", False),
    None: ("rank", True),
}


async def ping(engine: AsyncEngine) -> None:
    """Run ``SELECT 1`` on a pooled connection of ``engine``.

    Raises:
        Whatever connecting or the statement raises.
    """
    async with engine.connect() as conn:
        await conn.execute(select(literal_column("1")))


# The statements --------------------------------------------------------------------------------


#: ``status = 'published'`` with the value written into the SQL, not bound: the partial indexes'
#: predicate, so that a prepared statement's generic plan can still use them.
PUBLISHED: ColumnElement[bool] = Article.status == literal_column("'published'")


def visible() -> ColumnElement[bool]:
    """The condition of an article that readers may see."""
    return and_(PUBLISHED, Article.published_at <= func.now())


def next_publication() -> Any:
    """The earliest ``published_at`` still in the future of a published article, or NULL.

    At that moment lists, counts and the article itself change with no write: the cache keeps
    nothing that shows them past it.
    """
    return (
        select(func.min(Article.published_at))
        .where(PUBLISHED, Article.published_at > func.now())
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
    """The summary's columns: the article's, and each referenced kind's embedded ones.

    A referenced kind's columns are labelled ``{kind}_{column}`` (its ``id`` always, and the
    article's ``position_column`` as ``{kind}_position``); the linked kind's are one JSON
    array under its plural.
    """
    columns: list[Any] = [Article.id, Article.slug, Article.title, Article.summary]
    for kind in REFERENCED:
        columns.append(kind.id_column.label(kind.label("id")))
        names = [n for n in kind.embedded if n != "id"]
        columns += [getattr(kind.model, n).label(kind.label(n)) for n in names]
        if kind.position_column:
            columns.append(getattr(Article, kind.position_column).label(kind.label("position")))
    columns += [_tags_json().label(LINKED.plural), Article.published_at, Article.updated_at]
    return columns


def _with_joins(stmt: Select[Any]) -> Select[Any]:
    stmt = stmt.select_from(Article)
    for kind in REFERENCED:
        refers = kind.id_column == getattr(Article, kind.article_column or "")
        stmt = stmt.outerjoin(kind.model, refers)
    return stmt


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
    after: tuple[Any, ...] | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of rows and the total they are taken from.

    Attributes:
        total: how many rows match, over all pages.
        rows: the page's rows, in order.
        filter_ids: for each filter given, the id of the row it names, or None when it names
            none (the caller answers 404).
        next_publication: see :func:`next_publication`.
        more: whether rows follow the page's last row.
    """

    total: int
    rows: list[Row]
    filter_ids: dict[str, int | None]
    next_publication: datetime | None = None
    more: bool = False


def _paged(
    rows: Select[Any],
    order: tuple[ColumnElement[Any], ...],
    total: Any,
    headers: dict[str, Any],
) -> Select[Any]:
    """Return one statement: a one-row header (total, filter ids) left-joined to a page.

    The header row is there even when the page is empty, so the total and the filter ids come
    back in the same round trip as the rows. The page is bound by ``limit`` and ``offset``
    (a keyset page is bound by a condition in ``rows`` and offset 0).
    """
    head = select(
        total.label("total"),
        next_publication().label("next_publication"),
        *(sq.label(f"f_{name}") for name, sq in headers.items()),
    ).subquery("h")
    body = (
        rows.add_columns(func.row_number().over(order_by=order).label("rn"))
        .order_by(*order)
        .limit(bindparam("limit", type_=BigInteger))
        .offset(bindparam("offset", type_=BigInteger))
        .lateral("p")
    )
    return select(head, body).select_from(head.outerjoin(body, true())).order_by(body.c.rn)


def _after(column: Any, descending: bool) -> ColumnElement[bool]:
    """The keyset condition: rows after ``(:k0, :kid)`` in ``(column, id)`` order."""
    key: BindParameter[object] = bindparam("k0")
    kid: BindParameter[int] = bindparam("kid")
    if descending:
        return tuple_(column, Article.id) < tuple_(key, kid)
    return tuple_(column, Article.id) > tuple_(key, kid)


async def _page(
    reads: Reads,
    read: Read,
    names: tuple[str, ...],
    page: int,
    per_page: int,
    after: tuple[Any, ...] | None = None,
    **values: Any,
) -> Page:
    """Run a page statement for one row more than the page, to learn whether more follow."""
    if after is not None:
        values.update(k0=after[0], kid=after[1], offset=0)
    else:
        values["offset"] = (page - 1) * per_page
    result = await reads.all(read, limit=per_page + 1, **values)
    first = result[0]
    rows = [r for r in result if r["id"] is not None]
    return Page(
        first["total"],
        rows[:per_page],
        {name: first[f"f_{name}"] for name in names},
        first["next_publication"],
        len(rows) > per_page,
    )


#: Filters of the article list, in the order of their key in :data:`_ARTICLE_PAGES`.
_FILTERS = ("author", "category", "tag")
#: One statement per shape of the article list (filters given, search given, order, keyset);
#: each is built once, at its first use.
_ARTICLE_PAGES: dict[tuple[bool, bool, bool, bool, str | None, bool], Read] = {}


def _article_page_read(shape: tuple[bool, bool, bool, bool, str | None, bool]) -> Read:
    has_author, has_category, has_tag, has_q, sort, keyset = shape
    conds: list[ColumnElement[bool]] = [visible()]
    header: dict[str, Any] = {}
    if has_author:
        header["author"] = (
            select(Author.id).where(Author.username == bindparam("author")).scalar_subquery()
        )
        conds.append(Article.author_id == header["author"])
    if has_category:
        header["category"] = (
            select(Category.id).where(Category.slug == bindparam("category")).scalar_subquery()
        )
        conds.append(Article.category_id == header["category"])
    if has_tag:
        header["tag"] = select(Tag.id).where(Tag.slug == bindparam("tag")).scalar_subquery()
        conds.append(
            exists().where(
                article_tags.c.article_id == Article.id, article_tags.c.tag_id == header["tag"]
            )
        )
    order: tuple[ColumnElement[Any], ...]
    columns = _summary_columns()
    key_column: Any = getattr(Article, KEYSET[sort or "-published_at"][0], None)
    if has_q:
        query = func.websearch_to_tsquery("english", bindparam("q"))
        conds.append(Article.search_vector.op("@@")(query))
        rank = func.ts_rank_cd(Article.search_vector, query)
        columns.append(rank.label("rank"))
        order = SORTS[sort] if sort else (rank.desc(), Article.id.desc())
        if not sort:
            key_column = rank
    else:
        order = SORTS[sort or "-published_at"]
    total = select(func.count()).select_from(Article).where(*conds).scalar_subquery()
    rows = _with_joins(select(*columns)).where(*conds)
    names = [*header, *(["q"] if has_q else []), "limit", "offset"]
    if keyset:
        descending = KEYSET[sort if sort or has_q else "-published_at"][1]
        if has_q and not sort:
            after = or_(
                key_column < bindparam("k0"),
                and_(key_column == bindparam("k0"), Article.id < bindparam("kid")),
            )
        else:
            after = _after(key_column, descending)
        rows = rows.where(after)
        names += ["k0", "kid"]
    return Read(_paged(rows, order, total, header), *names)


async def article_page(reads: Reads, f: ArticleFilter) -> Page:
    """Return a page of visible article summaries, its total and filter ids: one statement.

    Raises:
        KeyError: ``f.sort`` is not one of :data:`SORTS`.
    """
    shape = (f.author is not None, f.category is not None, f.tag is not None, f.q is not None)
    key = (*shape, f.sort, f.after is not None)
    read = _ARTICLE_PAGES.get(key)
    if read is None:
        if f.sort is not None and f.sort not in SORTS:
            raise KeyError(f.sort)
        read = _ARTICLE_PAGES.setdefault(key, _article_page_read(key))
    given = {
        name: value
        for name, value in (("author", f.author), ("category", f.category), ("tag", f.tag))
        if value is not None
    }
    if f.q is not None:
        given["q"] = f.q
    names = tuple(k for k in given if k != "q")
    return await _page(reads, read, names, f.page, f.per_page, f.after, **given)


def _article_read(by_slugs: bool = False) -> Read:
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
    ).where(PUBLISHED)
    if by_slugs:
        # Untyped, so that asyncpg encodes the list as text[] itself (no bind processor).
        return Read(stmt.where(Article.slug == func.any(bindparam("slugs"))), "slugs")
    return Read(stmt.where(Article.slug == bindparam("slug")), "slug")


_ARTICLE = _article_read()
_ARTICLES_BY_SLUGS = _article_read(by_slugs=True)
_RECENT_SLUGS = Read(
    select(Article.slug)
    .where(visible())
    .order_by(Article.published_at.desc(), Article.id.desc())
    .limit(bindparam("limit", type_=BigInteger)),
    "limit",
)


async def articles_by_slugs(reads: Reads, slugs: Sequence[str]) -> Sequence[Row]:
    """Return the published articles among ``slugs``, in one statement (``slug = ANY(...)``).

    Rows are shaped as :func:`article_by_slug`'s, in no particular order; slugs that name no
    published article have no row.
    """
    return await reads.all(_ARTICLES_BY_SLUGS, slugs=list(slugs))


async def recent_article_slugs(reads: Reads, limit: int) -> list[str]:
    """Return the slugs of the ``limit`` newest visible articles, newest first."""
    return [row["slug"] for row in await reads.all(_RECENT_SLUGS, limit=limit)]


async def article_by_slug(reads: Reads, slug: str) -> Row | None:
    """Return the published article at ``slug`` as a row (summary columns plus the rest).

    Scheduled articles are found too: the row's ``visible`` column says whether readers may
    see it now (false: the caller answers 404 until its ``published_at``). None when no
    published article has that slug.

    Args:
        reads: runs the statement.
        slug: the article's slug.
    """
    return await reads.first(_ARTICLE, slug=slug)


def _comments_read() -> Read:
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
    ).where(Article.slug == bindparam("slug"), PUBLISHED)
    return Read(stmt, "slug")


_COMMENTS = _comments_read()


async def comments_of(reads: Reads, slug: str) -> Row | None:
    """Return the published article's ``id``, ``visible``, ``published_at`` and ``comments``.

    ``comments`` holds all its comments, oldest first; None when no published article has that
    slug. One statement: the article row with its comments aggregated as JSON.
    """
    return await reads.first(_COMMENTS, slug=slug)


# The entity kinds (authors, categories, tags, series) ---------------------------------------


def article_count(kind: EntityKind) -> Any:
    """The scalar subquery of an entity's ``article_count``: its visible articles."""
    if kind.article_column is None:
        return (
            select(func.count())
            .select_from(article_tags.join(Article, Article.id == article_tags.c.article_id))
            .where(article_tags.c.tag_id == kind.id_column, visible())
            .scalar_subquery()
        )
    refers = getattr(Article, kind.article_column) == kind.id_column
    return select(func.count()).select_from(Article).where(refers, visible()).scalar_subquery()


def _ordered_articles(kind: EntityKind) -> Any:
    """The JSON array of a series' visible articles (``slug``, ``title``, ``position``, ``id``)."""
    position = getattr(Article, kind.position_column or "")
    obj = func.json_build_object(
        "id", Article.id, "slug", Article.slug, "title", Article.title, "position", position
    )
    return (
        select(
            func.coalesce(
                func.json_agg(aggregate_order_by(obj, position, Article.id)),
                literal_column("'[]'::json"),
            )
        )
        .where(getattr(Article, kind.article_column or "") == kind.id_column, visible())
        .scalar_subquery()
        .cast(JSON)
    )


def _entity_page_read(kind: EntityKind, keyset: bool = False) -> Read:
    order = (kind.key_column, kind.id_column)
    total = select(func.count()).select_from(kind.model).scalar_subquery()
    table_columns = kind.model.__table__.columns
    rows = select(*table_columns, article_count(kind).label("article_count"))
    if keyset:
        after = tuple_(*order) > tuple_(bindparam("k0"), bindparam("kid"))
        return Read(_paged(rows.where(after), order, total, {}), "limit", "offset", "k0", "kid")
    return Read(_paged(rows, order, total, {}), "limit", "offset")


def _entity_read(kind: EntityKind) -> Read:
    columns = [
        *kind.model.__table__.columns,
        article_count(kind).label("article_count"),
        next_publication().label("next_publication"),
    ]
    if kind.position_column:
        columns.append(_ordered_articles(kind).label("articles"))
    return Read(select(*columns).where(kind.key_column == bindparam("key")), "key")


_ENTITY_PAGES = {
    (name, keyset): _entity_page_read(kind, keyset)
    for name, kind in BY_NAME.items()
    for keyset in (False, True)
}
_ENTITIES = {name: _entity_read(kind) for name, kind in BY_NAME.items()}


async def entity_page(
    reads: Reads, kind: EntityKind, page: int, per_page: int, after: tuple[Any, ...] | None = None
) -> Page:
    """Return a page of one kind's entities with their article counts: one statement.

    Ordered by the kind's key. With ``after`` (the key and id of the previous page's last
    row), the page is the rows that follow it (keyset) and ``page`` is ignored.
    """
    read = _ENTITY_PAGES[kind.name, after is not None]
    return await _page(reads, read, (), page, per_page, after)


async def entity_by_key(reads: Reads, kind: EntityKind, key: str) -> Row | None:
    """Return the entity of ``kind`` named ``key``, with its ``article_count``, or None.

    The row also has ``next_publication`` (see :func:`next_publication`), and a series'
    ``articles``: its visible articles in order, as dicts (``id``, ``slug``, ``title``,
    ``position``).
    """
    return await reads.first(_ENTITIES[kind.name], key=key)


# Writes -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reference:
    """An entity an article refers to, as the article's representation embeds it.

    Attributes:
        id: its id.
        values: its embedded columns (:attr:`EntityKind.embedded`), by name.
        next_position: for a kind with a ``position_column``, the position after its last
            article (1 when it has none); else None.
    """

    id: int
    values: dict[str, Any]
    next_position: int | None = None


def _reference_columns(kind: EntityKind, *, next_position: bool = False) -> list[Any]:
    columns = [kind.id_column.label(kind.label("id"))]
    names = [n for n in kind.embedded if n != "id"]
    columns += [getattr(kind.model, n).label(kind.label(n)) for n in names]
    if next_position and kind.position_column:
        position = getattr(Article, kind.position_column)
        refers = getattr(Article, kind.article_column or "") == kind.id_column
        after_last = select(func.coalesce(func.max(position), 0) + 1).where(refers)
        columns.append(after_last.scalar_subquery().label(kind.label("next_position")))
    return columns


def _references_of(row: Row) -> dict[str, Reference | None]:
    found: dict[str, Reference | None] = {}
    for kind in REFERENCED:
        entity_id = row[kind.label("id")]
        found[kind.name] = (
            None
            if entity_id is None
            else Reference(
                entity_id,
                {n: row[kind.label(n)] for n in kind.embedded},
                row.get(kind.label("next_position")),
            )
        )
    return found


@dataclass(frozen=True, slots=True)
class LockedArticle:
    """An article locked for a write, with what its representation embeds.

    Attributes:
        article: the ORM article, its ``tags`` loaded (ordered by slug).
        references: the entity it refers to of each referenced kind (or None), by kind name.
        comment_count: how many comments it has.
        now: the transaction's ``now()`` (the database clock that visibility is judged by).
    """

    article: Article
    references: dict[str, Reference | None]
    comment_count: int
    now: datetime


def _lock_article() -> Select[Any]:
    comment_count = select(func.count()).where(Comment.article_id == Article.id)
    stmt = select(
        Article,
        *(c for kind in REFERENCED for c in _reference_columns(kind)),
        comment_count.scalar_subquery().label("comment_count"),
        func.now().label("now"),
    )
    return (
        _with_joins(stmt)
        .where(Article.slug == bindparam("slug"))
        .options(joinedload(Article.tags))
        .with_for_update(of=Article)
    )


_LOCK_ARTICLE = _lock_article()


async def article_for_update(session: AsyncSession, slug: str) -> LockedArticle | None:
    """Return the article at ``slug`` (any status), locked, with its tags loaded: one statement.

    The tags must be loaded for the flush tagger to see which tag counts a change moves.
    """
    result = await session.execute(_LOCK_ARTICLE, {"slug": slug})
    row = result.unique().first()
    if row is None:
        return None
    values = row._mapping
    return LockedArticle(
        values[Article], _references_of(values), values["comment_count"], values["now"]
    )


@dataclass(frozen=True, slots=True)
class References:
    """What a new or changed article refers to, read in one statement.

    Attributes:
        now: the transaction's ``now()``.
        slug_taken: whether an article (of any status) has the slug asked about.
        found: of each referenced kind, the entity asked about, or None when none has that key
            (or none was asked about), by kind name.
        linked: the ORM entities of the linked kind (tags) asked about that exist, ordered by
            key (the database's collation, as reads order them).
    """

    now: datetime
    slug_taken: bool
    found: dict[str, Reference | None]
    linked: list[Tag]


def _references() -> Select[Any]:
    head = select(func.now().label("now")).subquery("head")
    stmt = select(
        head.c.now,
        exists().where(Article.slug == bindparam("slug")).label("slug_taken"),
        *(c for kind in REFERENCED for c in _reference_columns(kind, next_position=True)),
        LINKED.model,
    ).select_from(head)
    for kind in REFERENCED:
        stmt = stmt.outerjoin(kind.model, kind.key_column == bindparam(kind.name))
    linked = LINKED.key_column.in_(bindparam(LINKED.plural, expanding=True))
    return stmt.outerjoin(LINKED.model, linked).order_by(LINKED.key_column)


_REFERENCES = _references()


async def references(
    session: AsyncSession,
    *,
    slug: str | None = None,
    keys: Mapping[str, str | None] | None = None,
    linked: Sequence[str] = (),
) -> References:
    """Return whether ``slug`` is taken and the entities named: one statement.

    Args:
        session: the write's session.
        slug: an article slug to check, or None.
        keys: the key of the entity to look up, by referenced kind's name; kinds left out
            (or None) are looked up as nothing.
        linked: keys of the linked kind (tag slugs) to look up.
    """
    values: dict[str, Any] = {"slug": slug, LINKED.plural: list(linked)}
    values.update({kind.name: (keys or {}).get(kind.name) for kind in REFERENCED})
    rows = (await session.execute(_REFERENCES, values)).all()
    first = rows[0]._mapping
    linked_model = LINKED.model
    return References(
        first["now"],
        bool(first["slug_taken"]),
        _references_of(first),
        [r._mapping[linked_model] for r in rows if r._mapping[linked_model] is not None],
    )


async def find_one(
    session: AsyncSession, kind: EntityKind, key: str, *, lock: bool = False
) -> Base | None:
    """Return the entity of ``kind`` named ``key``, or None; with ``lock``, ``FOR UPDATE``."""
    stmt = select(kind.model).where(kind.key_column == key)
    if lock:
        stmt = stmt.with_for_update()
    found: Base | None = (await session.execute(stmt)).scalar_one_or_none()
    return found


async def has_articles(session: AsyncSession, kind: EntityKind, entity_id: int) -> bool:
    """Return whether any article, of any status, refers to the entity ``entity_id``."""
    if kind.article_column is None:
        refers: ColumnElement[bool] = article_tags.c.tag_id == entity_id
    else:
        refers = getattr(Article, kind.article_column) == entity_id
    return bool(await session.scalar(select(exists().where(refers))))


async def comment_by_id(session: AsyncSession, comment_id: int) -> Comment | None:
    """Return the comment ``comment_id``, or None."""
    return await session.get(Comment, comment_id)


async def article_id_of_visible(session: AsyncSession, slug: str) -> int | None:
    """Return the id of the visible article at ``slug``, or None."""
    return await session.scalar(select(Article.id).where(Article.slug == slug, visible()))
