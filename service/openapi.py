"""The OpenAPI 3.1 document: every path, parameter, body and answer of the service.

Request bodies, query parameters and path parameters are the pydantic models' and types'
JSON Schemas (see :mod:`service.schemas`), so that what the document states is what the
service holds its input to; answers are described by the schemas below, which follow the
contract's field lists.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel, TypeAdapter

from service import schemas

_TIME = {"type": "string", "format": "date-time"}
_INT = {"type": "integer"}
_STR = {"type": "string"}


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props)}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _page(item: str) -> dict[str, Any]:
    return _obj(
        items={"type": "array", "items": _ref(item)},
        page={**_nullable(_INT), "description": "null on a page reached by cursor"},
        per_page=_INT,
        total=_INT,
        pages=_INT,
        next_cursor={
            **_nullable(_STR),
            "description": "give it as cursor= for the next page; null on the last page",
        },
    )


_SUMMARY = dict(
    id=_INT,
    slug=_STR,
    title=_STR,
    summary=_STR,
    author=_obj(id=_INT, username=_STR, display_name=_STR),
    category=_nullable(_obj(slug=_STR, name=_STR)),
    tags={"type": "array", "items": _obj(slug=_STR, name=_STR)},
    published_at=_nullable(_TIME),
    updated_at=_TIME,
)

_RESULT_SCHEMAS: dict[str, Any] = {
    "ArticleSummary": _obj(**_SUMMARY),
    "Article": _obj(
        **_SUMMARY,
        body=_STR,
        body_format={"enum": ["markdown", "rst", "text"]},
        status={"enum": ["draft", "published", "archived"]},
        comment_count=_INT,
        created_at=_TIME,
    ),
    "Comment": _obj(
        id=_INT,
        parent_id=_nullable(_INT),
        author_name=_STR,
        body=_STR,
        created_at=_TIME,
        replies={"type": "array", "items": _ref("Comment")},
    ),
    "Comments": _obj(items={"type": "array", "items": _ref("Comment")}, total=_INT),
    "Author": _obj(
        id=_INT, username=_STR, display_name=_STR, bio=_STR, article_count=_INT, created_at=_TIME
    ),
    "Category": _obj(id=_INT, slug=_STR, name=_STR, description=_STR, article_count=_INT),
    "Tag": _obj(id=_INT, slug=_STR, name=_STR, article_count=_INT),
    "ArticlePage": _page("ArticleSummary"),
    "AuthorPage": _page("Author"),
    "CategoryPage": _page("Category"),
    "TagPage": _page("Tag"),
    "Problem": {
        "type": "object",
        "properties": {"type": _STR, "title": _STR, "status": _INT, "detail": _STR},
        "required": ["type", "title", "status", "detail"],
    },
    "Stats": {
        "type": "object",
        "required": ["cache", "rates", "db_pool", "redis", "outbox", "warming"],
    },
    "WarmingJob": {
        "type": "object",
        "properties": {
            "job_id": _STR,
            "state": {"enum": ["queued", "running", "done", "failed", "cancelled"]},
            "source": {"enum": ["hot", "recent", "keys"]},
            "namespace": _STR,
            "limit": _INT,
            "total": _INT,
            "done": _INT,
            "skipped": _INT,
            "errors": _INT,
            "keys_per_second": {"type": "number"},
            "eta_seconds": {"type": ["number", "null"]},
            "created_at": _STR,
            "started_at": {"type": ["string", "null"]},
            "finished_at": {"type": ["string", "null"]},
            "error": {"type": ["string", "null"]},
            "cancel_requested": {"type": "boolean"},
        },
        "required": ["job_id", "state", "source", "total", "done", "skipped", "errors"],
    },
    "WarmingStarted": {
        "type": "object",
        "properties": {"job_id": _STR, "state": {"const": "queued"}, "location": _STR},
        "required": ["job_id", "state", "location"],
    },
}

_CACHE_HEADERS = {
    "ETag": {"schema": _STR, "description": "strong ETag of the body, one per content coding"},
    "Cache-Control": {"schema": _STR, "description": "public, max-age=N (seconds)"},
    "X-Cache": {"schema": {"enum": ["HIT", "MISS", "STALE", "BYPASS"]}},
    "Cache-Status": {"schema": _STR, "description": "RFC 9211, e.g. content-service; hit"},
    "Server-Timing": {"schema": _STR, "description": "cache;dur=ms and, on a miss, db;dur=ms"},
    "Vary": {"schema": _STR, "description": "accept-encoding"},
    "Content-Encoding": {"schema": {"enum": ["gzip", "br"]}, "description": "when compressed"},
    "X-Request-ID": {"schema": _STR, "description": "the request's id, also in the logs"},
}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }


def _json(
    schema: str, description: str = "OK", headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema)}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _param(model: type[BaseModel], name: str) -> dict[str, Any]:
    """The JSON Schema of the query parameter ``name`` of ``model``."""
    schema: dict[str, Any] = dict(model.model_json_schema()["properties"][name])
    schema.pop("title", None)
    return schema


def _path(name: str, rule: Any = schemas.PathKey) -> dict[str, Any]:
    schema = TypeAdapter(rule).json_schema()
    return {"name": name, "in": "path", "required": True, "schema": schema}


_PAGING = [
    _query(
        "page",
        _param(schemas.PageParams, "page"),
        "1-based page number; page * per_page over MAX_PAGE_DEPTH (default 10000) is a 400 "
        "pointing to cursor",
    ),
    _query("per_page", _param(schemas.PageParams, "per_page"), "page size"),
    _query(
        "cursor",
        _param(schemas.PageParams, "cursor"),
        "a next_cursor of the same query (filters, q, sort, per_page): the following page by "
        "keyset, at the same cost at any depth; not with page; malformed or foreign: 400",
    ),
]
_LIST_HEADERS = {
    **_CACHE_HEADERS,
    "Link": {
        "schema": _STR,
        "description": 'RFC 8288: rel="first", rel="next" (cursor=) when there is a next '
        'page, rel="prev" on an offset page past the first',
    },
}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def _read(schema: str, params: list[dict[str, Any]], summary: str) -> dict[str, Any]:
    headers = _LIST_HEADERS if schema.endswith("Page") else _CACHE_HEADERS
    return {
        "summary": summary,
        "parameters": params,
        "responses": {
            "200": _json(schema, headers=headers),
            "304": {"description": "Not modified (If-None-Match matched)"},
            "400": _problem("Unknown parameter or value outside its rule"),
            "404": _problem("Not found"),
            "429": _problem("Over RATE_LIMIT_READS (only when set); see Retry-After"),
            "503": _problem("PostgreSQL unavailable and nothing cached; see Retry-After"),
        },
    }


def _write(
    summary: str, model: type[BaseModel] | None, ok: str, schema: str | None
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "security": _BEARER, "responses": {}}
    if model is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(model.__name__)}},
        }
    op["responses"][ok] = _json(schema) if schema else {"description": "Done"}
    for code, what in (
        ("400", "Invalid body, path or query parameter"),
        ("401", "Missing or unknown token"),
        ("403", "Role too low"),
        ("404", "Not found"),
        ("409", "Conflict: a slug or username taken, or a name in the body names nothing"),
        ("413", "Body over MAX_BODY_BYTES"),
        ("415", "Body not JSON"),
        ("429", "Over RATE_LIMIT_WRITES (only when set); see Retry-After"),
        ("503", "PostgreSQL unavailable; see Retry-After"),
    ):
        op["responses"][code] = _problem(what)
    if model is None:
        del op["responses"]["413"], op["responses"]["415"]
    return op


def _create(summary: str, model: type[BaseModel], schema: str) -> dict[str, Any]:
    op = _write(summary, model, "201", schema)
    del op["responses"]["404"]  # a collection is always there
    return op


def _warm_start() -> dict[str, Any]:
    op = _write("Start a warming job (one at a time)", schemas.WarmRequest, "202", None)
    op["requestBody"]["required"] = False
    op["responses"]["202"] = _json(
        "WarmingStarted",
        "Started",
        {"Location": {"schema": _STR, "description": "the job's URL"}},
    )
    op["responses"]["409"] = _problem("A job is running: its id is in the job_id member")
    op["responses"]["503"] = _problem("Redis unavailable; see Retry-After")
    del op["responses"]["404"]
    return op


def _purge() -> dict[str, Any]:
    op = _write("Purge a namespace or all", schemas.PurgeRequest, "200", None)
    op["responses"]["503"] = _problem("Redis unavailable; see Retry-After")
    del op["responses"]["404"]
    return op


def _warming_job(summary: str, ok: str) -> dict[str, Any]:
    op = _write(summary, None, ok, "WarmingJob")
    op["responses"]["409"] = _problem("The job has ended: nothing to cancel")
    op["responses"]["503"] = _problem("Redis unavailable; see Retry-After")
    return op


def _operation_ref(path: str, method: str) -> str:
    """The JSON pointer (RFC 6901) of an operation of this document."""
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


_AUTHOR = "/api/v1/authors/{username}"
_CATEGORY = "/api/v1/categories/{slug}"
_TAG = "/api/v1/tags/{slug}"
_ARTICLE = "/api/v1/articles/{slug}"
_COMMENTS = "/api/v1/articles/{slug}/comments"
_JOB = "/admin/cache/warm/{job_id}"

_USERNAME = {"username": "$response.body#/username"}
_SLUG = {"slug": "$response.body#/slug"}
_SAME_SLUG = {"slug": "$request.path.slug"}

#: The links (OpenAPI 3.1, 4.8.20) of answers: what a client may do next with what it got.
#: Each promise holds for every answer of that status: a created article may be a draft or
#: scheduled, which readers cannot see yet (404), so no link leads from it to its public reads;
#: a warming job ends by itself, so cancelling the one just started may be refused (409).
#: (source path, method, status, link name, target path, method, parameters, body members)
_LINKS: list[tuple[str, str, str, str, str, str, dict[str, str], dict[str, str]]] = [
    ("/api/v1/authors", "post", "201", "GetAuthor", _AUTHOR, "get", _USERNAME, {}),
    ("/api/v1/authors", "post", "201", "PatchAuthor", _AUTHOR, "patch", _USERNAME, {}),
    ("/api/v1/authors", "post", "201", "DeleteAuthor", _AUTHOR, "delete", _USERNAME, {}),
    ("/api/v1/authors", "post", "201", "CreateArticleByAuthor", "/api/v1/articles", "post", {},
     {"author": "$response.body#/username"}),
    (_AUTHOR, "patch", "200", "GetAuthor", _AUTHOR, "get", _USERNAME, {}),
    (_AUTHOR, "patch", "200", "PatchAuthor", _AUTHOR, "patch", _USERNAME, {}),
    (_AUTHOR, "patch", "200", "DeleteAuthor", _AUTHOR, "delete", _USERNAME, {}),
    ("/api/v1/categories", "post", "201", "GetCategory", _CATEGORY, "get", _SLUG, {}),
    ("/api/v1/categories", "post", "201", "PatchCategory", _CATEGORY, "patch", _SLUG, {}),
    ("/api/v1/categories", "post", "201", "DeleteCategory", _CATEGORY, "delete", _SLUG, {}),
    ("/api/v1/categories", "post", "201", "CreateArticleInCategory", "/api/v1/articles", "post",
     {}, {"category": "$response.body#/slug"}),
    (_CATEGORY, "patch", "200", "GetCategory", _CATEGORY, "get", _SLUG, {}),
    (_CATEGORY, "patch", "200", "PatchCategory", _CATEGORY, "patch", _SLUG, {}),
    (_CATEGORY, "patch", "200", "DeleteCategory", _CATEGORY, "delete", _SLUG, {}),
    ("/api/v1/tags", "post", "201", "GetTag", _TAG, "get", _SLUG, {}),
    ("/api/v1/tags", "post", "201", "PatchTag", _TAG, "patch", _SLUG, {}),
    ("/api/v1/tags", "post", "201", "DeleteTag", _TAG, "delete", _SLUG, {}),
    (_TAG, "patch", "200", "GetTag", _TAG, "get", _SLUG, {}),
    (_TAG, "patch", "200", "PatchTag", _TAG, "patch", _SLUG, {}),
    (_TAG, "patch", "200", "DeleteTag", _TAG, "delete", _SLUG, {}),
    ("/api/v1/articles", "post", "201", "PatchArticle", _ARTICLE, "patch", _SLUG, {}),
    ("/api/v1/articles", "post", "201", "DeleteArticle", _ARTICLE, "delete", _SLUG, {}),
    (_ARTICLE, "patch", "200", "PatchArticle", _ARTICLE, "patch", _SLUG, {}),
    (_ARTICLE, "patch", "200", "DeleteArticle", _ARTICLE, "delete", _SLUG, {}),
    (_COMMENTS, "post", "201", "GetComments", _COMMENTS, "get", _SAME_SLUG, {}),
    (_COMMENTS, "post", "201", "Reply", _COMMENTS, "post", _SAME_SLUG,
     {"parent_id": "$response.body#/id"}),
    (_COMMENTS, "post", "201", "DeleteComment", "/api/v1/comments/{id}", "delete",
     {"id": "$response.body#/id"}, {}),
    ("/admin/cache/warm", "post", "202", "GetJob", _JOB, "get",
     {"job_id": "$response.body#/job_id"}, {}),
]  # fmt: skip


def _add_links(paths: dict[str, Any]) -> None:
    """Put :data:`_LINKS` into the answers of ``paths``."""
    for path, method, status, name, target, target_method, parameters, body in _LINKS:
        link: dict[str, Any] = {"operationRef": _operation_ref(target, target_method)}
        if parameters:
            link["parameters"] = parameters
        if body:
            link["requestBody"] = body
        paths[path][method]["responses"][status].setdefault("links", {})[name] = link


@cache
def openapi_document() -> dict[str, Any]:
    """Return the OpenAPI 3.1 document (built once)."""
    models: list[type[BaseModel]] = [
        schemas.ArticleCreate, schemas.ArticlePatch, schemas.CommentCreate,
        schemas.AuthorCreate, schemas.AuthorPatch, schemas.CategoryCreate,
        schemas.CategoryPatch, schemas.TagCreate, schemas.TagPatch, schemas.PurgeRequest,
        schemas.WarmRequest,
    ]  # fmt: skip
    components = dict(_RESULT_SCHEMAS)
    for model in models:
        components[model.__name__] = model.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
    listing = schemas.ArticleListParams
    article_params = [
        *_PAGING,
        _query("category", _param(listing, "category"), "category slug; 404 if none"),
        _query("tag", _param(listing, "tag"), "tag slug; 404 if none"),
        _query("author", _param(listing, "author"), "author username; 404 if none"),
        _query("q", _param(listing, "q"), "full-text search"),
        _query("sort", _param(listing, "sort"), "order"),
    ]
    patch_article = _write("Merge-patch an article", schemas.ArticlePatch, "200", "Article")
    patch_article["parameters"] = [{"name": "If-Match", "in": "header", "schema": _STR}]
    patch_article["responses"]["412"] = _problem("If-Match does not match")
    paths: dict[str, Any] = {
        "/api/v1/articles": {
            "get": _read("ArticlePage", article_params, "A page of visible article summaries"),
            "post": _create("Create an article", schemas.ArticleCreate, "Article"),
        },
        "/api/v1/articles/{slug}": {
            "parameters": [_path("slug")],
            "get": _read("Article", [], "One visible article"),
            "patch": patch_article,
            "delete": _write("Delete an article", None, "204", None),
        },
        "/api/v1/articles/{slug}/comments": {
            "parameters": [_path("slug")],
            "get": _read("Comments", [], "Comment threads, oldest first"),
            "post": _write("Add a comment", schemas.CommentCreate, "201", "Comment"),
        },
        "/api/v1/comments/{id}": {
            "parameters": [_path("id", schemas.RowId)],
            "delete": _write("Delete a comment and its replies", None, "204", None),
        },
    }
    for kind, key, create, patch in (
        ("authors", "username", schemas.AuthorCreate, schemas.AuthorPatch),
        ("categories", "slug", schemas.CategoryCreate, schemas.CategoryPatch),
        ("tags", "slug", schemas.TagCreate, schemas.TagPatch),
    ):
        one = {"authors": "Author", "categories": "Category", "tags": "Tag"}[kind]
        paths[f"/api/v1/{kind}"] = {
            "get": _read(f"{one}Page", list(_PAGING), f"A page of {kind}"),
            "post": _create(f"Create a {one.lower()}", create, one),
        }
        paths[f"/api/v1/{kind}/{{{key}}}"] = {
            "parameters": [_path(key)],
            "get": _read(one, [], f"One {one.lower()}"),
            "patch": _write(f"Merge-patch a {one.lower()}", patch, "200", one),
            "delete": _write(f"Delete a {one.lower()}", None, "204", None),
        }
    ok = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
    paths.update(
        {
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": ok,
                        "429": _problem("Over RATE_LIMIT_READS (only when set); see Retry-After"),
                    },
                }
            },
            "/health/live": {"get": {"summary": "Liveness", "responses": {"200": ok}}},
            "/dashboard": {
                "get": {
                    "summary": "The operators' dashboard (HTML; its script polls /stats)",
                    "responses": {"200": {"description": "OK", "content": {"text/html": {}}}},
                }
            },
            "/health/ready": {
                "get": {
                    "summary": "Readiness: ok, or degraded when Redis or PostgreSQL is down",
                    "responses": {
                        "200": ok,
                        "503": {"description": "starting, draining, or neither server answers"},
                    },
                }
            },
            "/stats": {
                "get": {
                    "summary": "Cache, rates, per-worker pools, Redis, outbox and warming figures",
                    "responses": {
                        "200": _json("Stats"),
                        "400": _problem("Unknown parameter"),
                        "401": _problem("Stats token required"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus text exposition (the sum of this instance's workers)",
                    "responses": {
                        "200": {
                            "description": "OK",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "400": _problem("Unknown parameter"),
                        "401": _problem("Stats token required"),
                    },
                }
            },
            "/admin/cache/purge": {"post": _purge()},
            "/admin/cache/warm": {"post": _warm_start()},
            "/admin/cache/warm/{job_id}": {
                "parameters": [_path("job_id", str)],
                "get": _warming_job("A warming job's state and progress", "200"),
                "delete": _warming_job("Cancel a queued or running warming job", "202"),
            },
        }
    )
    _add_links(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Content service", "version": "1.0.0"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
