"""The generated OpenAPI document: valid, complete against the route table, and true.

"True" is checked on real answers of the running app: each validates against the schema the
document names for its operation and status (with JSON Schema, formats checked) and against
the pydantic model the operation table names (strictly), and carries the headers the document
says are always sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from starlette.routing import Route

from service.kinds import KINDS, EntityKind
from service.openapi import openapi_body, openapi_document
from service.operation_table import operations
from service.routes import routes
from tests.apps import ADMIN, EDITOR, Api, AppOn
from tests.servers import Servers

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _unnamed(path: str) -> str:
    """``/a/{slug}`` and ``/a/{key:int}`` alike become ``/a/{}``."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def _operations_by_id(document: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    found: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method in _METHODS:
                assert op["operationId"] not in found, f"{op['operationId']} is not unique"
                found[op["operationId"]] = (method.upper(), path, op)
    return found


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    target: Any = document
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    assert isinstance(target, dict), ref
    return target


async def test_served_document_is_valid_openapi_3_1(api: Api) -> None:
    r = await api.client.get("/openapi.json")
    assert r.status_code == 200, r.text
    document = r.json()
    assert document["openapi"].startswith("3.1"), document["openapi"]
    validate(document)


async def test_served_document_is_built_once_and_revalidates(api: Api) -> None:
    assert openapi_body() is openapi_body() and openapi_document() is openapi_document()
    first = await api.client.get("/openapi.json")
    second = await api.client.get("/openapi.json")
    assert first.content == second.content == openapi_body().body
    assert first.headers["etag"] == openapi_body().etag, first.headers
    again = await api.client.get("/openapi.json", headers={"If-None-Match": first.headers["etag"]})
    assert (again.status_code, again.content) == (304, b""), (again.status_code, again.text)


def test_every_route_has_an_operation_and_every_operation_a_route() -> None:
    served = {
        (method, _unnamed(route.path))
        for route in routes()
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = {
        (method, _unnamed(path))
        for method, path, _ in _operations_by_id(openapi_document()).values()
    }
    assert served - documented == set(), f"routes without an operation: {served - documented}"
    assert documented - served == set(), f"operations without a route: {documented - served}"


#: Operations that refuse no request (no body, no token, any query ignored, never rate
#: limited): a load balancer's probes and the dashboard's page.
ANSWER_ANY_REQUEST = {"getLiveness", "getReadiness", "getDashboard"}


def test_every_operation_has_tags_a_success_and_a_problem() -> None:
    document = openapi_document()
    for operation_id, (method, path, op) in _operations_by_id(document).items():
        where = f"{operation_id} ({method} {path})"
        assert op["tags"], f"{where} has no tags"
        statuses = [int(s) for s in op["responses"]]
        assert any(200 <= s < 300 for s in statuses), f"{where} has no 2xx: {statuses}"
        errors = [s for s in statuses if s >= 400]
        for status in errors:
            content = op["responses"][str(status)].get("content", {})
            schema = content.get("application/problem+json", {}).get("schema")
            assert schema == {"$ref": "#/components/schemas/Problem"}, (where, status, content)
        if operation_id not in ANSWER_ANY_REQUEST:
            assert any(400 <= s < 500 for s in errors), f"{where} has no 4xx problem: {statuses}"
        named = set(re.findall(r"\{(\w+)\}", path))
        in_path = {p["name"] for p in op.get("parameters", ()) if p["in"] == "path"}
        assert named == in_path, f"{where}: path parameters {in_path}, template {named}"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_each_kind_has_its_five_operations(kind: EntityKind) -> None:
    by_id = _operations_by_id(openapi_document())
    one, many = kind.name.capitalize(), kind.plural.capitalize()
    item = f"{kind.path}/{{{kind.key}}}"
    expected = {
        f"list{many}": ("GET", kind.path),
        f"create{one}": ("POST", kind.path),
        f"get{one}": ("GET", item),
        f"patch{one}": ("PATCH", item),
        f"delete{one}": ("DELETE", item),
    }
    found = {op_id: by_id[op_id][:2] for op_id in expected if op_id in by_id}
    assert found == expected, (found, expected)


def test_links_lead_to_operations_with_those_parameters() -> None:
    by_id = _operations_by_id(openapi_document())
    for operation_id, (_, _, op) in by_id.items():
        for status, answer in op["responses"].items():
            for name, link in answer.get("links", {}).items():
                target = by_id.get(link["operationId"])
                assert target is not None, f"{operation_id} {status} link {name}: no target"
                parameters = {p["name"] for p in target[2].get("parameters", ())}
                assert set(link["parameters"]) <= parameters, (operation_id, name, parameters)


# Real answers against the document --------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A request to the app, the operation it calls and the status it must answer."""

    operation_id: str
    method: str
    path: str
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None  # a raw body, instead of ``body``
    revalidate: bool = False  # send again with If-None-Match: the first answer's ETag

    def __str__(self) -> str:
        return f"{self.operation_id}-{self.status}-{self.path}"


#: Each kind's key in the world (see the ``world`` fixture).
KEYS = {"author": "ann", "category": "guides", "tag": "async-io", "series": "deep-dives"}


def _fresh(model: Any) -> dict[str, str]:
    """A create body of ``model``: each required member a new, valid value."""
    return {name: "fresh-one" for name, f in model.model_fields.items() if f.is_required()}


def _kind_cases(kind: EntityKind) -> list[Case]:
    one, many = kind.name.capitalize(), kind.plural.capitalize()
    item = f"{kind.path}/{KEYS[kind.name]}"
    renamed = next(name for name in kind.patch.model_fields if name != kind.key)
    return [
        Case(f"list{many}", "GET", f"{kind.path}?per_page=1", 200),
        Case(f"list{many}", "GET", f"{kind.path}?per_page=1", 304, revalidate=True),
        Case(f"list{many}", "GET", f"{kind.path}?cursor=AAAA", 400),
        Case(f"get{one}", "GET", item, 200),
        Case(f"get{one}", "GET", f"{kind.path}/no-such-one", 404),
        Case(f"create{one}", "POST", kind.path, 201, _fresh(kind.create), EDITOR),
        Case(
            f"create{one}",
            "POST",
            kind.path,
            409,
            {**_fresh(kind.create), kind.key: KEYS[kind.name]},
            EDITOR,
        ),
        Case(f"patch{one}", "PATCH", item, 200, {renamed: "Renamed"}, EDITOR),
        Case(f"patch{one}", "PATCH", item, 400, {renamed: None}, EDITOR),
        Case(f"delete{one}", "DELETE", item, 409 if kind.restrict_delete else 204, None, EDITOR),
        Case(f"delete{one}", "DELETE", f"{kind.path}/no-such-one", 404, None, EDITOR),
    ]


ARTICLE = "/api/v1/articles/hello-world"
NEW_ARTICLE = {"title": "Second", "body": "Text", "author": "ann", "status": "published"}
JOB = "/admin/cache/warm"

CASES: list[Case] = [
    Case("listArticles", "GET", "/api/v1/articles?per_page=1", 200),
    Case("listArticles", "GET", "/api/v1/articles?per_page=1&sort=title", 304, revalidate=True),
    Case("listArticles", "GET", "/api/v1/articles?page=0", 400),
    Case("listArticles", "GET", "/api/v1/articles?cursor=AAAA", 400),
    Case("listArticles", "GET", "/api/v1/articles?page=100000", 400),
    Case("listArticles", "GET", "/api/v1/articles?category=no-such-one", 404),
    Case("createArticle", "POST", "/api/v1/articles", 201, NEW_ARTICLE, EDITOR),
    Case("createArticle", "POST", "/api/v1/articles", 409, {**NEW_ARTICLE, "author": "x"}, EDITOR),
    Case("createArticle", "POST", "/api/v1/articles", 401, NEW_ARTICLE),
    Case(
        "createArticle",
        "POST",
        "/api/v1/articles",
        409,
        {**NEW_ARTICLE, "slug": "hello-world"},
        EDITOR,
    ),
    Case(
        "createArticle",
        "POST",
        "/api/v1/articles",
        413,
        None,
        {**EDITOR, "Content-Type": "application/json"},
        content=b'{"body": "' + b"x" * (1 << 20) + b'"}',
    ),
    Case(
        "createArticle",
        "POST",
        "/api/v1/articles",
        415,
        None,
        {**EDITOR, "Content-Type": "text/plain"},
        content=b"title=Second",
    ),
    Case("getArticle", "GET", ARTICLE, 200),
    Case("getArticle", "GET", ARTICLE, 304, revalidate=True),
    Case("getArticle", "GET", f"{ARTICLE}?x=1", 400),
    Case("getArticle", "GET", "/api/v1/articles/no-such-one", 404),
    Case("patchArticle", "PATCH", ARTICLE, 200, {"summary": "Changed"}, EDITOR),
    Case("patchArticle", "PATCH", ARTICLE, 412, {"summary": "x"}, {**EDITOR, "If-Match": '"x"'}),
    Case("patchArticle", "PATCH", "/api/v1/articles/no-such-one", 404, {"title": "x"}, EDITOR),
    Case("deleteArticle", "DELETE", ARTICLE, 204, None, EDITOR),
    Case("listArticleComments", "GET", f"{ARTICLE}/comments", 200),
    Case("listArticleComments", "GET", "/api/v1/articles/no-such-one/comments", 404),
    Case(
        "createComment",
        "POST",
        f"{ARTICLE}/comments",
        201,
        {"author_name": "Bo", "body": "Hi"},
        EDITOR,
    ),
    Case(
        "createComment",
        "POST",
        f"{ARTICLE}/comments",
        409,
        {"author_name": "Bo", "body": "Hi", "parent_id": 999999},
        EDITOR,
    ),
    Case("deleteComment", "DELETE", "/api/v1/comments/999999", 404, None, EDITOR),
    Case("deleteComment", "DELETE", "/api/v1/comments/999999", 401, None, {"Authorization": "x"}),
    *(case for kind in KINDS for case in _kind_cases(kind)),
    Case("getOpenApiDocument", "GET", "/openapi.json", 200),
    Case("getLiveness", "GET", "/health/live", 200),
    Case("getReadiness", "GET", "/health/ready", 200),
    Case("getStats", "GET", "/stats", 200),
    Case("getStats", "GET", "/stats?x=1", 400),
    Case("getMetrics", "GET", "/metrics", 200),
    Case("getDashboard", "GET", "/dashboard", 200),
    Case("getDashboardFile", "GET", "/dashboard/app.js", 200),
    Case("getDashboardFile", "GET", "/dashboard/app.css", 304, revalidate=True),
    Case("getDashboardFile", "GET", "/dashboard/index.html", 404),
    Case("purgeCache", "POST", "/admin/cache/purge", 200, {"namespace": "article"}, ADMIN),
    Case("purgeCache", "POST", "/admin/cache/purge", 400, {"namespace": "nope"}, ADMIN),
    Case("purgeCache", "POST", "/admin/cache/purge", 403, {"namespace": "all"}, EDITOR),
    Case("startWarming", "POST", JOB, 202, {"source": "recent"}, ADMIN),
    Case("startWarming", "POST", JOB, 400, {"source": "keys"}, ADMIN),
    Case("getWarmingJob", "GET", f"{JOB}/no-such-job", 404, None, ADMIN),
    Case("cancelWarmingJob", "DELETE", f"{JOB}/no-such-job", 404, None, ADMIN),
]


@pytest.fixture
async def world(api: Api, content: dict[str, Any]) -> None:
    """The ``content`` fixture's, plus a series the article belongs to, a comment and a reply."""
    await api.create("/api/v1/series", {"name": "Deep Dives"})
    r = await api.client.patch(ARTICLE, json={"series": KEYS["series"]}, headers=EDITOR)
    assert r.status_code == 200, r.text
    comment = await api.create(f"{ARTICLE}/comments", {"author_name": "Al", "body": "First"})
    await api.create(
        f"{ARTICLE}/comments", {"author_name": "Bo", "body": "Reply", "parent_id": comment["id"]}
    )


def assert_answer_documented(
    operation_id: str, request: httpx.Request, response: httpx.Response
) -> None:
    """Assert that ``response`` is an answer the document describes for ``operation_id``.

    The request matches the operation's method and path; the status is one of its answers;
    the media type is one it names and the body validates against its schema (formats
    checked) and, strictly, against the operation table's model; a documented answer without
    a body has none; and every header the document says is always sent is there.
    """
    document = openapi_document()
    method, path, op = _operations_by_id(document)[operation_id]
    template = "^" + re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(path)) + "$"
    assert request.method == method and re.match(template, request.url.path), (
        f"{request.method} {request.url.path} is not {operation_id} ({method} {path})"
    )
    status = str(response.status_code)
    documented = op["responses"].get(status)
    assert documented is not None, (
        f"{operation_id} answered {status}, documented {sorted(op['responses'])}: {response.text}"
    )
    content = documented.get("content", {})
    if not content:
        assert response.content == b"", (operation_id, status, response.content[:200])
    else:
        media = response.headers["content-type"].split(";")[0].strip()
        assert media in content, (operation_id, status, media, sorted(content))
        schema = {**content[media]["schema"], "components": document["components"]}
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        body = response.json() if "json" in media else response.text
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
        assert errors == [], (operation_id, status, errors, response.text[:2000])
        answer = next(o for o in operations() if o.operation_id == operation_id).answers[
            response.status_code
        ]
        if answer.model is not None:
            answer.model.model_validate_json(response.content, strict=True)
    for name, header in documented.get("headers", {}).items():
        if _resolve(document, header)["required"]:
            assert name in response.headers, (operation_id, status, name, dict(response.headers))


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_real_answers_are_documented(api: Api, world: None, case: Case) -> None:
    kwargs: dict[str, Any] = {"headers": case.headers}
    if case.content is not None:
        kwargs["content"] = case.content
    elif case.body is not None:
        kwargs["json"] = case.body
    r = await api.client.request(case.method, case.path, **kwargs)
    if case.revalidate:
        assert r.status_code == 200, (r.status_code, r.text)
        etag = {"If-None-Match": r.headers["etag"]}
        r = await api.client.request(case.method, case.path, headers={**case.headers, **etag})
    assert r.status_code == case.status, (case, r.status_code, r.text)
    assert_answer_documented(case.operation_id, r.request, r)


async def test_warming_job_answers_are_documented(api: Api, world: None) -> None:
    started = await api.client.post(JOB, json={"source": "recent"}, headers=ADMIN)
    assert_answer_documented("startWarming", started.request, started)
    job = await api.client.get(started.headers["location"], headers=ADMIN)
    assert job.status_code == 200, job.text
    assert_answer_documented("getWarmingJob", job.request, job)
    await api.state.warming.jobs.wait()
    ended = await api.client.get(started.headers["location"], headers=ADMIN)
    assert ended.json()["state"] == "done", ended.text
    assert_answer_documented("getWarmingJob", ended.request, ended)
    refused = await api.client.delete(started.headers["location"], headers=ADMIN)
    assert refused.status_code == 409, refused.text
    assert_answer_documented("cancelWarmingJob", refused.request, refused)
    stats = await api.client.get("/stats")
    assert stats.json()["warming"]["last_run"] is not None, stats.text
    assert_answer_documented("getStats", stats.request, stats)


async def test_rate_limited_answers_are_documented(servers: Servers, app_on: AppOn) -> None:
    async with app_on(servers.database_url, servers.redis_url, rate_limit_reads="2/minute") as api:
        answers = [await api.client.get("/api/v1/tags") for _ in range(3)]
        assert [r.status_code for r in answers] == [200, 200, 429], [r.text for r in answers]
        for r in answers:
            assert "ratelimit" in r.headers, dict(r.headers)
            assert_answer_documented("listTags", r.request, r)
        await api.state.invalidator.purge(None)


async def test_stats_token_refusal_is_documented(servers: Servers, app_on: AppOn) -> None:
    async with app_on(servers.database_url, servers.redis_url, stats_token="s3cret") as api:
        for path, operation_id in (("/stats", "getStats"), ("/metrics", "getMetrics")):
            refused = await api.client.get(path)
            assert refused.status_code == 401, refused.text
            assert_answer_documented(operation_id, refused.request, refused)
            allowed = await api.client.get(path, headers={"Authorization": "Bearer s3cret"})
            assert allowed.status_code == 200, allowed.text
            assert_answer_documented(operation_id, allowed.request, allowed)
