"""The table of the service's operations: what each takes and every answer it can give.

Every operation is declared once here, as the route table (:mod:`service.routes`) declares its
endpoints: method, path, ``operationId``, tag, query model, path and header parameters, body
model, answers by status (each with its model or media type, headers and links) and security.
The entity kinds' operations are made by one loop over :data:`service.kinds.KINDS`. Models are
those the service validates with (:mod:`service.schemas`) and the representations of its
answers (:mod:`service.representations`, :mod:`service.operations_representations`).

Two things are added to every operation by :func:`operations`, from the code that makes them
true rather than per operation: ``X-Request-ID`` on every answer, and on the paths the rate
limits count (:func:`service.ratelimits.is_limited`) the ``RateLimit-Policy`` and
``RateLimit`` headers and the ``429``.

:mod:`service.openapi` renders the table as the OpenAPI document.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter

from service import operations_representations as ops
from service import representations as rep
from service.admin_requests import PurgeRequest, WarmRequest
from service.endpoints.admin import WARM_PATH
from service.endpoints.dashboard import FILES
from service.kinds import KINDS, EntityKind
from service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from service.problems import MEDIA_TYPE as PROBLEM
from service.ratelimits import is_limited
from service.schemas import (
    ArticleCreate,
    ArticleListParams,
    ArticlePatch,
    CommentCreate,
    PageParams,
    PathKey,
    RowId,
)

JSON = "application/json"

Security = Sequence[Mapping[str, Sequence[str]]]
#: Writes: a bearer token of role editor (or admin, which ranks above it).
EDITOR: Security = ({"bearer": ["editor"]},)
ADMIN: Security = ({"bearer": ["admin"]},)
#: The statistics: anyone while no stats token is set; else it, or an admin token.
STATS: Security = ({}, {"statsToken": []}, {"bearer": ["admin"]})


@dataclass(frozen=True, slots=True)
class Parameter:
    """A path or header parameter (query parameters come from an operation's query model)."""

    name: str
    location: Literal["path", "header"]
    schema: Mapping[str, Any]
    description: str
    required: bool = True


@dataclass(frozen=True, slots=True)
class Link:
    """An OpenAPI link: a value of this answer is a parameter of another operation.

    Attributes:
        name: the link's name in the answer's ``links``.
        operation_id: the operation it leads to.
        parameters: that operation's parameter name to a runtime expression
            (``$response.body#/slug``).
    """

    name: str
    operation_id: str
    parameters: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer of an operation.

    Attributes:
        description: when the operation gives it.
        model: the JSON body's model, or None (``schema`` then, or no body).
        media_types: the media types of the body; empty for no body.
        schema: the body's schema when it has no model (a text body).
        headers: names of ``components/headers`` it carries (``X-Request-ID`` and the
            rate-limit headers are added where they apply).
        links: the operations its values lead to.
    """

    description: str
    model: type[BaseModel] | None = None
    media_types: tuple[str, ...] = (JSON,)
    schema: Mapping[str, Any] | None = None
    headers: tuple[str, ...] = ()
    links: tuple[Link, ...] = ()


@dataclass(frozen=True, slots=True)
class Operation:
    """One method of one path: what it takes and every answer it can give.

    Attributes:
        method: the HTTP method, upper case.
        path: the path template, with OpenAPI's ``{name}`` parameters.
        operation_id: unique in the document.
        tag: the group it is listed under.
        summary: one line.
        answers: status to answer; the ``429`` of limited paths is added.
        description: more, when one line is not enough.
        query: the model of its query parameters; None when it takes none (any is a 400).
        parameters: its path and header parameters.
        body: the model of its JSON body; None for none.
        body_required: whether the body may be left out.
        security: who may call it; None for anyone.
    """

    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    answers: Mapping[int, Answer]
    description: str = ""
    query: type[PageParams] | None = None
    parameters: tuple[Parameter, ...] = ()
    body: type[BaseModel] | None = None
    body_required: bool = True
    security: Security | None = None

    @property
    def route(self) -> tuple[str, str]:
        """The method and the path template with its parameters unnamed (``/a/{}``)."""
        return self.method, re.sub(r"\{[^}]*\}", "{}", self.path)


# Headers ----------------------------------------------------------------------------------------

_STRING = {"type": "string"}


def _header(
    description: str, schema: Mapping[str, Any] = _STRING, *, required: bool = True
) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": dict(schema)}


#: ``components/headers``; ``required`` says the header is always sent where it is listed.
HEADERS: dict[str, dict[str, Any]] = {
    "ETag": _header("strong validator of the body (one per content coding)"),
    "Cache-Control": _header(
        "public, max-age=N (seconds) on cached reads; no-store on writes and operations "
        "answers; no-cache on what is revalidated (this document, the dashboard's files)"
    ),
    "X-Cache": _header(
        "how the service's cache answered", {"enum": ["HIT", "MISS", "STALE", "BYPASS"]}
    ),
    "Cache-Status": _header(
        "RFC 9211, e.g. content-service; hit; ttl=30 or content-service; fwd=miss; stored"
    ),
    "Server-Timing": _header("cache;dur=ms and, when PostgreSQL was read, db;dur=ms"),
    "Vary": _header("Accept-Encoding"),
    "Content-Encoding": _header(
        "when the client accepts it: the body as compressed once, when it was stored",
        {"enum": ["gzip", "br"]},
        required=False,
    ),
    "Link": _header(
        'RFC 8288: rel="first", rel="next" (cursor=) while a next page exists, rel="prev" on '
        "an offset page past the first"
    ),
    "Location": _header("the path of what was made"),
    "X-Request-ID": _header(
        "the request's id, also in its log lines: the client's when sane (1 to 128 letters, "
        "digits and -_.:), else a new one"
    ),
    "RateLimit-Policy": _header(
        'draft-ietf-httpapi-ratelimit-headers, e.g. "reads";q=100;w=1 (quota, window in '
        "seconds); sent when RATE_LIMIT_READS or RATE_LIMIT_WRITES limits the request",
        required=False,
    ),
    "RateLimit": _header(
        'e.g. "reads";r=42;t=1 (remaining, seconds until reset); sent with RateLimit-Policy',
        required=False,
    ),
    "Retry-After": _header(
        "seconds to wait before trying again", {"type": "integer", "minimum": 0}
    ),
    "WWW-Authenticate": _header('Bearer realm="content-service"'),
}

CACHED = ("ETag", "Cache-Control", "X-Cache", "Cache-Status", "Server-Timing", "Vary")
CACHED_READ = (*CACHED, "Content-Encoding")
WRITTEN = ("ETag", "Cache-Control")
RATE_LIMIT_HEADERS = ("RateLimit-Policy", "RateLimit")


# Answers ----------------------------------------------------------------------------------------


#: The headers every problem of a status carries (see :mod:`service.problems`).
_PROBLEM_HEADERS = {401: ("WWW-Authenticate",), 429: ("Retry-After",), 503: ("Retry-After",)}


def _problems(by_status: Mapping[int, str]) -> dict[int, Answer]:
    """Return a problem answer (``application/problem+json``) per status, with its text."""
    return {
        status: Answer(text, rep.Problem, (PROBLEM,), headers=_PROBLEM_HEADERS.get(status, ()))
        for status, text in by_status.items()
    }


_NO_QUERY = "a query parameter was given: this takes none"
_BAD_BODY = (
    "the body is not a JSON object, has an unknown member, or a member breaks its rule "
    "(errors lists each failed member); or a query parameter was given"
)
_DB_DOWN = "PostgreSQL is unavailable, or no pooled connection came free in time"
_READ_DOWN = "PostgreSQL is unavailable and nothing usable is cached"
_REDIS_DOWN = "Redis is unavailable"


def _writes(role: str, *, body: bool = True, down: str = _DB_DOWN) -> dict[int, Answer]:
    """The problems every write of ``role`` can give: auth, (body), unavailable."""
    answers = _problems(
        {
            401: "no bearer token, or one that is not configured",
            403: f"the token's role is below {role}",
            503: down,
        }
    )
    if body:
        answers |= _problems(
            {
                413: "the body is over MAX_BODY_BYTES",
                415: "the body is not application/json (nor another +json type)",
            }
        )
    return answers


def _cached_read(
    model: type[BaseModel], *, paged: bool = False, links: tuple[Link, ...] = ()
) -> dict[int, Answer]:
    """The answers of a read through the cache: 200, 304 and 503."""
    headers = (*CACHED_READ, "Link") if paged else CACHED_READ
    return {
        200: Answer("the representation", model, headers=headers, links=links),
        304: Answer(
            "If-None-Match names the current ETag: no body",
            media_types=(),
            headers=(*CACHED, "Link") if paged else CACHED,
        ),
        **_problems({503: _READ_DOWN}),
    }


def _written(
    status: int,
    model: type[BaseModel],
    description: str,
    *,
    location: bool = False,
    links: tuple[Link, ...] = (),
) -> dict[int, Answer]:
    """The answer of a write: the representation written, its ETag, never cached."""
    headers = (*WRITTEN, "Location") if location else WRITTEN
    return {status: Answer(description, model, headers=headers, links=links)}


_DELETED = {204: Answer("deleted", media_types=())}
_IF_NONE_MATCH = Parameter(
    "If-None-Match",
    "header",
    _STRING,
    "an ETag of an earlier answer: 304 when it is still current",
    required=False,
)
_PAGE_QUERIES = (
    "Offset pages: page (1-based) and per_page; a page that reaches past MAX_PAGE_DEPTH rows "
    "(default 10000) is a 400 whose detail points to cursor. Deeper: give a page's "
    "next_cursor as cursor (with the same other parameters, never with page) for the "
    "following page by keyset, at the same cost at any depth; page is then null. A "
    "malformed or foreign cursor is a 400. Every page carries a Link header."
)
_LIST_400 = (
    "an unknown or repeated parameter, a value outside its rule, page with cursor, a "
    "malformed or foreign cursor, or a page past MAX_PAGE_DEPTH"
)


#: The rules of the path parameters, as the endpoints check them (``path_key``, ``path_id``).
_PATH_KEY: Mapping[str, Any] = TypeAdapter(PathKey).json_schema()
_ROW_ID: Mapping[str, Any] = TypeAdapter(RowId).json_schema()


def _path(name: str, description: str, schema: Mapping[str, Any] = _PATH_KEY) -> Parameter:
    return Parameter(name, "path", schema, description)


def _link(name: str, operation_id: str, parameter: str, pointer: str) -> Link:
    """A link passing the answer's body member at ``pointer`` as ``parameter``."""
    return Link(name, operation_id, {parameter: f"$response.body#{pointer}"})


# Operations -------------------------------------------------------------------------------------


def _camel(word: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[-_ ]", word))


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def kind_operations(kind: EntityKind) -> tuple[Operation, ...]:
    """Return the five operations of an entity kind: list, create, get, patch, delete."""
    one, many = _camel(kind.name), _camel(kind.plural)
    item = f"{kind.path}/{{{kind.key}}}"
    key = _path(kind.key, f"the {kind.name}'s {kind.key}")
    follow = tuple(
        _link(verb, f"{verb}{one}", kind.key, f"/{kind.key}") for verb in ("get", "patch", "delete")
    )
    conflict = f"the {kind.key} is taken (the problem's {kind.key} member names it)"
    delete_conflict: dict[int, Answer] = {}
    if kind.restrict_delete:
        delete_conflict = _problems({409: f"articles still refer to the {kind.name}"})
    slug_rule, create_400 = "", _BAD_BODY
    if kind.slug_source is not None:
        slug_rule = f"A missing {kind.key} is derived from the {kind.slug_source}."
        create_400 += f"; or no {kind.key} can be derived from the {kind.slug_source}"
    return (
        Operation(
            "GET",
            kind.path,
            f"list{many}",
            kind.plural,
            f"A page of {kind.plural}",
            {
                **_cached_read(rep.page_of(kind.representation), paged=True),
                **_problems({400: _LIST_400}),
            },
            description=_PAGE_QUERIES,
            query=PageParams,
            parameters=(_IF_NONE_MATCH,),
        ),
        Operation(
            "POST",
            kind.path,
            f"create{one}",
            kind.plural,
            f"Create {_a(kind.name)}",
            {
                **_written(
                    201,
                    kind.item_representation,
                    f"the new {kind.name}",
                    location=True,
                    links=follow,
                ),
                **_problems({400: create_400, 409: conflict}),
                **_writes("editor"),
            },
            description=slug_rule,
            body=kind.create,
            security=EDITOR,
        ),
        Operation(
            "GET",
            item,
            f"get{one}",
            kind.plural,
            f"One {kind.name}",
            {
                **_cached_read(kind.item_representation),
                **_problems({400: _NO_QUERY, 404: f"no {kind.name} has that {kind.key}"}),
            },
            parameters=(key, _IF_NONE_MATCH),
        ),
        Operation(
            "PATCH",
            item,
            f"patch{one}",
            kind.plural,
            f"Merge-patch {_a(kind.name)}",
            {
                **_written(200, kind.item_representation, f"the {kind.name}, patched"),
                **_problems(
                    {
                        400: f"{_BAD_BODY}; or a member is null",
                        404: f"no {kind.name} has that {kind.key}",
                        409: f"the new {conflict}",
                    }
                ),
                **_writes("editor"),
            },
            description=(
                "A JSON merge patch (RFC 7386): members left out stay as they are; null is "
                f"refused. A new {kind.key} moves the {kind.name}: the old one is then a 404."
            ),
            parameters=(key,),
            body=kind.patch,
            security=EDITOR,
        ),
        Operation(
            "DELETE",
            item,
            f"delete{one}",
            kind.plural,
            f"Delete {_a(kind.name)}",
            {
                **_DELETED,
                **_problems({400: _NO_QUERY, 404: f"no {kind.name} has that {kind.key}"}),
                **delete_conflict,
                **_writes("editor", body=False),
            },
            description=(
                f"Refused (409) while articles refer to the {kind.name}."
                if kind.restrict_delete
                else f"Articles that referred to the {kind.name} no longer do."
            ),
            parameters=(key,),
            security=EDITOR,
        ),
    )


def _article_operations() -> tuple[Operation, ...]:
    articles, article = "/api/v1/articles", "/api/v1/articles/{slug}"
    comments = f"{article}/comments"
    slug = _path("slug", "the article's slug")
    missing = "no visible article has that slug"
    return (
        Operation(
            "GET",
            articles,
            "listArticles",
            "articles",
            "A page of visible article summaries",
            {
                **_cached_read(rep.Page[rep.ArticleSummary], paged=True),
                **_problems({400: _LIST_400, 404: "category, tag or author names none"}),
            },
            description=(
                "Visible: published, and published_at not in the future. Newest first unless "
                f"sort is given; by relevance when q is given without sort. {_PAGE_QUERIES}"
            ),
            query=ArticleListParams,
            parameters=(_IF_NONE_MATCH,),
        ),
        Operation(
            "POST",
            articles,
            "createArticle",
            "articles",
            "Create an article",
            {
                **_written(
                    201,
                    rep.Article,
                    "the new article (a draft unless status says otherwise: a draft is not "
                    "visible to the reads)",
                    location=True,
                    links=(
                        _link("patch", "patchArticle", "slug", "/slug"),
                        _link("delete", "deleteArticle", "slug", "/slug"),
                    ),
                ),
                **_problems(
                    {
                        400: f"{_BAD_BODY}; or series_position comes without series",
                        409: "the slug is taken (the problem's slug member names it), or the "
                        "author, category, series or a tag named does not exist (the member "
                        "member names which)",
                    }
                ),
                **_writes("editor"),
            },
            description="A missing slug is derived from the title.",
            body=ArticleCreate,
            security=EDITOR,
        ),
        Operation(
            "GET",
            article,
            "getArticle",
            "articles",
            "One visible article",
            {
                **_cached_read(
                    rep.Article,
                    links=(
                        _link("comments", "listArticleComments", "slug", "/slug"),
                        _link("patch", "patchArticle", "slug", "/slug"),
                    ),
                ),
                **_problems({400: _NO_QUERY, 404: missing}),
            },
            parameters=(slug, _IF_NONE_MATCH),
        ),
        Operation(
            "PATCH",
            article,
            "patchArticle",
            "articles",
            "Merge-patch an article (of any status)",
            {
                **_written(200, rep.Article, "the article, patched"),
                **_problems(
                    {
                        400: f"{_BAD_BODY}; or series_position is given for an article in no "
                        "series",
                        404: "no article has that slug",
                        409: "the new slug is taken (the problem's slug member names it), or the "
                        "author, category, series or a tag named does not exist (the member "
                        "member names which)",
                        412: "If-Match does not name the article's current ETag",
                    }
                ),
                **_writes("editor"),
            },
            description=(
                "A JSON merge patch (RFC 7386): members left out stay as they are; null clears "
                "category, published_at and series (series_position null moves the article to "
                "the end of its series) and is refused for the others."
            ),
            parameters=(
                slug,
                Parameter(
                    "If-Match",
                    "header",
                    _STRING,
                    "the ETag of the article as last read or written: 412 when it changed since",
                    required=False,
                ),
            ),
            body=ArticlePatch,
            security=EDITOR,
        ),
        Operation(
            "DELETE",
            article,
            "deleteArticle",
            "articles",
            "Delete an article (of any status) and its comments",
            {
                **_DELETED,
                **_problems({400: _NO_QUERY, 404: "no article has that slug"}),
                **_writes("editor", body=False),
            },
            parameters=(slug,),
            security=EDITOR,
        ),
        Operation(
            "GET",
            comments,
            "listArticleComments",
            "comments",
            "A visible article's comment threads, oldest first",
            {**_cached_read(rep.Comments), **_problems({400: _NO_QUERY, 404: missing})},
            parameters=(slug, _IF_NONE_MATCH),
        ),
        Operation(
            "POST",
            comments,
            "createComment",
            "comments",
            "Comment on a visible article, or reply to one of its comments",
            {
                **_written(
                    201,
                    rep.Comment,
                    "the new comment",
                    links=(_link("delete", "deleteComment", "comment_id", "/id"),),
                ),
                **_problems(
                    {
                        400: _BAD_BODY,
                        404: missing,
                        409: "parent_id is not a comment of the article, or the article or the "
                        "parent comment was deleted while the comment was written",
                    }
                ),
                **_writes("editor"),
            },
            parameters=(slug,),
            body=CommentCreate,
            security=EDITOR,
        ),
        Operation(
            "DELETE",
            "/api/v1/comments/{comment_id}",
            "deleteComment",
            "comments",
            "Delete a comment and its replies",
            {
                **_DELETED,
                **_problems({400: _NO_QUERY, 404: "no comment has that id"}),
                **_writes("editor", body=False),
            },
            parameters=(_path("comment_id", "the comment's id", _ROW_ID),),
            security=EDITOR,
        ),
    )


def _operations_endpoints() -> tuple[Operation, ...]:
    job = f"{WARM_PATH}/{{job_id}}"
    job_id = _path("job_id", "the job's id, as its start answered", _STRING)
    no_store = ("Cache-Control",)
    files = sorted(name for name in FILES if name != "index.html")
    file_types = tuple(sorted({FILES[name][1].split(";")[0] for name in files}))
    stats_problems = _problems(
        {
            400: _NO_QUERY,
            401: "a stats token is set and the request bears neither it nor an admin token",
        }
    )
    return (
        Operation(
            "GET",
            "/openapi.json",
            "getOpenApiDocument",
            "documentation",
            "This document",
            {
                200: Answer(
                    "the OpenAPI 3.1 document",
                    schema={"type": "object"},
                    headers=("ETag", "Cache-Control"),
                ),
                304: Answer(
                    "If-None-Match names the current ETag: no body",
                    media_types=(),
                    headers=("ETag", "Cache-Control"),
                ),
            },
            parameters=(_IF_NONE_MATCH,),
        ),
        Operation(
            "GET",
            "/health/live",
            "getLiveness",
            "health",
            "Liveness: 200 while the process runs",
            {200: Answer("the process runs", ops.Liveness, headers=no_store)},
        ),
        Operation(
            "GET",
            "/health/ready",
            "getReadiness",
            "health",
            "Readiness: whether a load balancer should send this instance requests",
            {
                200: Answer(
                    "ok, or degraded while one of Redis and PostgreSQL does not answer",
                    ops.Readiness,
                    headers=no_store,
                ),
                503: Answer(
                    "starting, draining after SIGTERM, or neither Redis nor PostgreSQL answers "
                    "(the problem's readiness member says which)",
                    rep.Problem,
                    (PROBLEM,),
                    headers=("Retry-After",),
                ),
            },
        ),
        Operation(
            "GET",
            "/stats",
            "getStats",
            "statistics",
            "Cache, rates, pools per worker, Redis, outbox, breakers and warming",
            {200: Answer("the figures", ops.Stats, headers=no_store), **stats_problems},
            description=(
                "Cache counters are totals over every worker and instance sharing the Redis, "
                "since the last purge of all; pool figures are sums over the live workers, each "
                "listed. A poll costs no PostgreSQL query."
            ),
            security=STATS,
        ),
        Operation(
            "GET",
            "/metrics",
            "getMetrics",
            "statistics",
            "Prometheus text exposition of this instance (the sum of its workers)",
            {
                200: Answer(
                    "the metrics",
                    media_types=(METRICS_CONTENT_TYPE.split(";")[0],),
                    schema=_STRING,
                    headers=no_store,
                ),
                **stats_problems,
            },
            security=STATS,
        ),
        Operation(
            "GET",
            "/dashboard",
            "getDashboard",
            "dashboard",
            "The operators' dashboard (its script polls /stats, asking for the stats token)",
            {200: Answer("the page", media_types=("text/html",), schema=_STRING, headers=no_store)},
        ),
        Operation(
            "GET",
            "/dashboard/{name}",
            "getDashboardFile",
            "dashboard",
            "A script or stylesheet of the dashboard",
            {
                200: Answer(
                    "the file", media_types=file_types, schema=_STRING, headers=("ETag", *no_store)
                ),
                304: Answer(
                    "If-None-Match names the file's ETag: no body",
                    media_types=(),
                    headers=("ETag", *no_store),
                ),
                **_problems({404: "the dashboard has no such file"}),
            },
            parameters=(_path("name", "the file's name", {"enum": files}), _IF_NONE_MATCH),
        ),
        Operation(
            "POST",
            "/admin/cache/purge",
            "purgeCache",
            "cache",
            "Delete the entries of one namespace, or of all (which also resets the counters)",
            {
                200: Answer("what was purged", ops.Purged, headers=no_store),
                **_problems({400: f"{_BAD_BODY}; or the namespace is unknown"}),
                **_writes("admin", down=_REDIS_DOWN),
            },
            body=PurgeRequest,
            security=ADMIN,
        ),
        Operation(
            "POST",
            WARM_PATH,
            "startWarming",
            "cache",
            "Start a warming job (one at a time per deployment)",
            {
                202: Answer(
                    "the job is queued",
                    ops.WarmingStarted,
                    headers=("Location", *no_store),
                    links=(_link("job", "getWarmingJob", "job_id", "/job_id"),),
                ),
                **_problems(
                    {
                        400: f"{_BAD_BODY}; or the namespace is unknown, source keys comes without "
                        "keys, keys without source keys, or a key is not namespace:identity",
                        409: "a job runs: the problem's job_id member names it",
                    }
                ),
                **_writes("admin", down=_REDIS_DOWN),
            },
            description="No body at all: the hottest keys of every namespace.",
            body=WarmRequest,
            body_required=False,
            security=ADMIN,
        ),
        Operation(
            "GET",
            job,
            "getWarmingJob",
            "cache",
            "A warming job's state and progress",
            {
                200: Answer("the job", ops.WarmingJob, headers=no_store),
                **_problems({400: _NO_QUERY, 404: "no such job (or it ended too long ago)"}),
                **_writes("admin", body=False, down=_REDIS_DOWN),
            },
            parameters=(job_id,),
            security=ADMIN,
        ),
        Operation(
            "DELETE",
            job,
            "cancelWarmingJob",
            "cache",
            "Cancel a queued or running warming job",
            {
                202: Answer(
                    "cancelling: the job stops at its next step", ops.WarmingJob, headers=no_store
                ),
                **_problems(
                    {
                        400: _NO_QUERY,
                        404: "no such job (or it ended too long ago)",
                        409: "the job has ended: nothing to cancel",
                    }
                ),
                **_writes("admin", body=False, down=_REDIS_DOWN),
            },
            parameters=(job_id,),
            security=ADMIN,
        ),
    )


def _as_served(op: Operation) -> Operation:
    """Return ``op`` with what every answer gets: ``X-Request-ID``, and the rate limits'."""
    answers = dict(op.answers)
    added: tuple[str, ...] = ("X-Request-ID",)
    if is_limited(op.path):
        limit = "RATE_LIMIT_READS" if op.method == "GET" else "RATE_LIMIT_WRITES"
        answers |= _problems({429: f"over {limit} (only when it is set)"})
        added += RATE_LIMIT_HEADERS
    return dataclasses.replace(
        op,
        answers={
            status: dataclasses.replace(answer, headers=(*answer.headers, *added))
            for status, answer in sorted(answers.items())
        },
    )


@functools.cache
def operations() -> tuple[Operation, ...]:
    """Return every operation of the service, in the document's order (built once).

    Raises:
        ValueError: two operations share an ``operationId``, or a method and path.
    """
    by_kind = tuple(op for kind in KINDS for op in kind_operations(kind))
    declared = (*_article_operations(), *by_kind, *_operations_endpoints())
    for attribute in ("operation_id", "route"):
        names = [getattr(op, attribute) for op in declared]
        if len(set(names)) != len(names):
            raise ValueError(f"{attribute} is not unique: {sorted(names)}")
    return tuple(_as_served(op) for op in declared)


#: The security schemes the operations' ``security`` names.
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "a token of API_TOKENS (token:role pairs): role editor for writes, admin "
        "for writes and cache administration. None or an unknown one: 401; too low a role: 403.",
    },
    "statsToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "STATS_TOKEN, when the operator sets one: /stats and /metrics then need "
        "it (or an admin token).",
    },
}
