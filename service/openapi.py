"""The OpenAPI 3.1 document: every path, parameter, body and answer of the service.

Request bodies are the pydantic models' JSON Schemas; answers are described by the schemas
below, which follow the contract's field lists.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel

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


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _STR}


_PAGING = [
    _query(
        "page",
        {"type": "integer", "minimum": 1, "default": 1},
        "1-based page number; page * per_page over MAX_PAGE_DEPTH (default 10000) is a 400 "
        "pointing to cursor",
    ),
    _query(
        "per_page", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, "page size"
    ),
    _query(
        "cursor",
        {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "maxLength": 2800},
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
            "503": _problem("PostgreSQL unavailable and nothing cached"),
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
        ("400", "Invalid body"),
        ("401", "Missing or unknown token"),
        ("403", "Role too low"),
        ("404", "Not found"),
        ("409", "Conflict"),
        ("413", "Body over MAX_BODY_BYTES"),
        ("429", "Over RATE_LIMIT_WRITES (only when set); see Retry-After"),
    ):
        op["responses"][code] = _problem(what)
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
    op["responses"]["503"] = _problem("Redis unavailable")
    del op["responses"]["404"]
    return op


def _warming_job(summary: str, ok: str) -> dict[str, Any]:
    op = _write(summary, None, ok, "WarmingJob")
    op["responses"]["409"] = _problem("The job has ended: nothing to cancel")
    op["responses"]["503"] = _problem("Redis unavailable")
    return op


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
    article_params = [
        *_PAGING,
        _query("category", _STR, "category slug; 404 if none"),
        _query("tag", _STR, "tag slug; 404 if none"),
        _query("author", _STR, "author username; 404 if none"),
        _query("q", {"type": "string", "minLength": 1, "maxLength": 200}, "full-text search"),
        _query(
            "sort", {"enum": ["-published_at", "published_at", "-updated_at", "title"]}, "order"
        ),
    ]
    patch_article = _write("Merge-patch an article", schemas.ArticlePatch, "200", "Article")
    patch_article["parameters"] = [{"name": "If-Match", "in": "header", "schema": _STR}]
    patch_article["responses"]["412"] = _problem("If-Match does not match")
    paths: dict[str, Any] = {
        "/api/v1/articles": {
            "get": _read("ArticlePage", article_params, "A page of visible article summaries"),
            "post": _write("Create an article", schemas.ArticleCreate, "201", "Article"),
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
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": _INT}],
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
            "post": _write(f"Create a {one.lower()}", create, "201", one),
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
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": ok}}},
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
                    "responses": {"200": _json("Stats"), "401": _problem("Stats token required")},
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
                        "401": _problem("Stats token required"),
                    },
                }
            },
            "/admin/cache/purge": {
                "post": _write("Purge a namespace or all", schemas.PurgeRequest, "200", None)
            },
            "/admin/cache/warm": {"post": _warm_start()},
            "/admin/cache/warm/{job_id}": {
                "parameters": [_path("job_id")],
                "get": _warming_job("A warming job's state and progress", "200"),
                "delete": _warming_job("Cancel a queued or running warming job", "202"),
            },
        }
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": "Content service", "version": "1.0.0"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
