"""Input rules: what the OpenAPI document states is what the service holds input to.

Each bad input below was found by fuzzing the service against its own document (scripts/fuzz).
Bad input is a 4xx problem document, never a 5xx, and no breaker counts it; a body is refused
by the OpenAPI document exactly when the service refuses it with a 400, and one that names a
row that does not exist is valid to both and a 409.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jsonschema_rs
import pytest
from sqlalchemy.exc import DBAPIError
from starlette.requests import Request as HttpRequest

from service.errors import is_unreachable
from service.kinds import TAG
from service.openapi import openapi_document
from service.problems import on_database_error
from service.schemas import PageParams, TagCreate, derive_slug
from tests.apps import ADMIN, Api

ARTICLE = "/api/v1/articles/hello-world"
COMMENTS = f"{ARTICLE}/comments"
MAX_BIGINT = 2**63 - 1
NEW_ARTICLE = {"title": "Fresh", "body": "b", "author": "ann"}


@dataclass(frozen=True)
class Request:
    """One request; ``body`` is sent as JSON when not None."""

    method: str
    path: str
    body: Any = None
    params: dict[str, str] = field(default_factory=dict)

    async def send(self, api: Api) -> httpx.Response:
        json = {} if self.body is None else {"json": self.body}
        return await api.client.request(
            self.method, self.path, params=self.params, headers=ADMIN, **json
        )


def bad(
    name: str, request: Request, member: str, says: str, status: int = 400
) -> Any:  # a pytest ParameterSet
    return pytest.param(request, status, member, says, id=name)


def post(path: str, body: Any) -> Request:
    return Request("POST", path, body)


def patch(path: str, body: Any) -> Request:
    return Request("PATCH", path, body)


def article(**members: Any) -> Request:
    return post("/api/v1/articles", {**NEW_ARTICLE, **members})


NUL = "must not contain the NUL character"
NOT_BLANK = "must hold a character other than whitespace, and no NUL character"
RFC3339 = "RFC 3339"

BAD_INPUT = [
    # PostgreSQL's text cannot hold U+0000: refused before any statement, in every text.
    bad("tag-name-nul", post("/api/v1/tags", {"name": "bad\x00name"}), "name", NOT_BLANK),
    bad(
        "author-display-name-nul",
        post("/api/v1/authors", {"username": "bo", "display_name": "B\x00o"}),
        "display_name",
        NOT_BLANK,
    ),
    bad("author-bio-nul", patch("/api/v1/authors/ann", {"bio": "\x00"}), "bio", NUL),
    bad(
        "category-description-nul",
        post("/api/v1/categories", {"name": "News", "description": "a\x00"}),
        "description",
        NUL,
    ),
    bad("article-title-nul", article(title="a\x00"), "title", NOT_BLANK),
    bad("article-body-nul", article(body="b\x00"), "body", NUL),
    bad("article-summary-nul", patch(ARTICLE, {"summary": "\x00"}), "summary", NUL),
    bad(
        "comment-author-nul",
        post(COMMENTS, {"author_name": "a\x00", "body": "b"}),
        "author_name",
        NOT_BLANK,
    ),
    bad(
        "comment-body-nul", post(COMMENTS, {"author_name": "a", "body": "\x00"}), "body", NOT_BLANK
    ),
    bad(
        "warm-key-nul",
        post("/admin/cache/warm", {"source": "keys", "keys": ["article:a\x00b"]}),
        "keys.0",
        NUL,
    ),
    bad("search-nul", Request("GET", "/api/v1/articles", params={"q": "a\x00b"}), "q", NUL),
    bad("article-path-nul", Request("GET", "/api/v1/articles/a%00b"), "slug", NUL),
    bad("comments-path-nul", Request("GET", "/api/v1/articles/a%00b/comments"), "slug", NUL),
    bad("tag-path-nul", Request("GET", "/api/v1/tags/a%00b"), "slug", NUL),
    bad("author-path-nul", Request("DELETE", "/api/v1/authors/a%00b"), "username", NUL),
    bad("article-patch-path-nul", patch("/api/v1/articles/a%00b", {"title": "x"}), "slug", NUL),
    # Times are RFC 3339 strings with an offset: pydantic's lax mode took 0 as 1970.
    bad("published-at-zero", article(published_at=0), "published_at", RFC3339),
    bad("published-at-unix-string", article(published_at="1700000000"), "published_at", RFC3339),
    bad("published-at-date-only", article(published_at="2026-01-31"), "published_at", RFC3339),
    bad(
        "published-at-space",
        article(published_at="2026-01-31 09:30:00Z"),
        "published_at",
        RFC3339,
    ),
    bad(
        "published-at-no-offset",
        article(published_at="2026-01-31T09:30:00"),
        "published_at",
        RFC3339,
    ),
    bad(
        "published-at-before-year-1-in-utc",
        article(published_at="0001-01-01T00:00:00+01:00"),
        "published_at",
        "within 0001-01-02 and 9999-12-30",
    ),
    bad("patch-published-at-zero", patch(ARTICLE, {"published_at": 0}), "published_at", RFC3339),
    # A slug is derived from a name or title only when it holds an ASCII letter or digit.
    bad("tag-name-no-slug-source", post("/api/v1/tags", {"name": "!!!"}), "slug", "give a slug"),
    bad(
        "category-name-non-ascii",
        post("/api/v1/categories", {"name": "日本"}),
        "slug",
        "give a slug",
    ),
    bad("article-title-no-slug-source", article(title="—"), "slug", "give a slug"),
    # Names, titles and comments hold something besides whitespace.
    bad("tag-name-blank", post("/api/v1/tags", {"name": "   "}), "name", NOT_BLANK),
    bad(
        "comment-body-blank",
        post(COMMENTS, {"author_name": "a", "body": " \n "}),
        "body",
        NOT_BLANK,
    ),
    # Ids fit PostgreSQL's bigint; JSON integers are numbers, never strings or booleans.
    bad(
        "parent-id-beyond-bigint",
        post(COMMENTS, {"author_name": "a", "body": "b", "parent_id": MAX_BIGINT + 1}),
        "parent_id",
        "less than or equal to",
    ),
    bad(
        "parent-id-zero",
        post(COMMENTS, {"author_name": "a", "body": "b", "parent_id": 0}),
        "parent_id",
        "greater than or equal to 1",
    ),
    bad(
        "parent-id-string",
        post(COMMENTS, {"author_name": "a", "body": "b", "parent_id": "1"}),
        "parent_id",
        "expected an integer",
    ),
    bad(
        "parent-id-boolean",
        post(COMMENTS, {"author_name": "a", "body": "b", "parent_id": True}),
        "parent_id",
        "expected an integer",
    ),
    bad(
        "comment-id-beyond-bigint",
        Request("DELETE", f"/api/v1/comments/{MAX_BIGINT + 1}"),
        "comment_id",
        "less than or equal to",
    ),
    bad("comment-id-zero", Request("DELETE", "/api/v1/comments/0"), "comment_id", "greater"),
    bad("warm-limit-string", post("/admin/cache/warm", {"limit": "10"}), "limit", "integer"),
    # A merge patch clears only what may be empty.
    bad("patch-article-status-null", patch(ARTICLE, {"status": None}), "status", "not be null"),
    bad(
        "patch-author-username-null",
        patch("/api/v1/authors/ann", {"username": None}),
        "username",
        "not be null",
    ),
    bad("patch-tag-name-null", patch("/api/v1/tags/caching", {"name": None}), "name", "null"),
    # Namespaces and warming requests.
    bad(
        "purge-empty-namespace",
        post("/admin/cache/purge", {"namespace": ""}),
        "namespace",
        "one of all",
    ),
    bad(
        "warm-keys-with-another-source",
        post("/admin/cache/warm", {"source": "hot", "keys": ["article:a"]}),
        "",
        "only read with source 'keys'",
    ),
    bad("warm-keys-missing", post("/admin/cache/warm", {"source": "keys"}), "", "non-empty"),
    bad(
        "warm-bare-key-without-namespace",
        post("/admin/cache/warm", {"source": "keys", "keys": ["x"]}),
        "",
        "namespace:identity",
    ),
    bad(
        "warm-unknown-namespace",
        post("/admin/cache/warm", {"namespace": "nope"}),
        "namespace",
        "one of article",
    ),
    # Filters that can name nothing.
    bad(
        "empty-category-filter",
        Request("GET", "/api/v1/articles", params={"category": ""}),
        "category",
        "at least 1 character",
    ),
    bad(
        "empty-author-filter",
        Request("GET", "/api/v1/articles", params={"author": ""}),
        "author",
        "at least 1 character",
    ),
    # Valid input that names a row that does not exist: a conflict with the current data.
    bad("article-unknown-author", article(author="ghost"), "author", "does not exist", 409),
    bad("article-unknown-category", article(category="nope"), "category", "does not exist", 409),
    bad("article-unknown-tag", article(tags=["nope"]), "tags", "unknown tags", 409),
    bad("patch-unknown-author", patch(ARTICLE, {"author": "ghost"}), "author", "not exist", 409),
    bad(
        "comment-unknown-parent",
        post(COMMENTS, {"author_name": "a", "body": "b", "parent_id": 999}),
        "parent_id",
        "not a comment of this article",
        409,
    ),
    bad(
        "comment-parent-at-bigint-max",
        post(COMMENTS, {"author_name": "a", "body": "b", "parent_id": MAX_BIGINT}),
        "parent_id",
        "not a comment of this article",
        409,
    ),
]


def problem_members(problem: dict[str, Any]) -> list[str]:
    """The members a problem names: its ``member``, and those of its ``errors`` list."""
    named = [problem["member"]] if "member" in problem else []
    return named + [e["member"] or "" for e in problem.get("errors", [])]


def assert_problem(r: httpx.Response, status: int, member: str, says: str) -> None:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text}"
    assert r.headers["content-type"] == "application/problem+json", r.headers["content-type"]
    problem = r.json()
    missing = {"type", "title", "status", "detail"} - set(problem)
    assert not missing, f"the problem lacks {missing}: {problem}"
    assert problem["status"] == status, f"status member {problem['status']} != {status}"
    assert says in problem["detail"], f"{says!r} is not in the detail {problem['detail']!r}"
    if member:
        assert member in problem_members(problem), f"{member!r} not named by {problem}"


def request_body_validator(request: Request) -> jsonschema_rs.Validator:
    """The validator of ``request``'s body by the schema the OpenAPI document states for it."""
    document = openapi_document()
    template = next(p for p in document["paths"] if _matches(p, request.path))
    ref = document["paths"][template][request.method.lower()]["requestBody"]["content"][
        "application/json"
    ]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return jsonschema_rs.validator_for(schema, validate_formats=True)


def _matches(template: str, path: str) -> bool:
    parts, given = template.split("/"), path.split("/")
    return len(parts) == len(given) and all(
        p == g or p.startswith("{") for p, g in zip(parts, given, strict=True)
    )


@pytest.mark.parametrize(("request_", "status", "member", "says"), BAD_INPUT)
async def test_bad_input_is_a_4xx_problem_that_no_breaker_counts(
    api: Api, content: dict[str, Any], request_: Request, status: int, member: str, says: str
) -> None:
    database, redis = api.state.database_breaker, api.state.redis_breaker
    before = (database.failures, redis.failures)
    api.sql.reset()
    r = await request_.send(api)
    assert_problem(r, status, member, says)
    if status == 400:
        assert api.sql.count == 0, f"the database saw refused input: {api.sql.statements}"
    after = (database.failures, redis.failures)
    assert after == before, f"breaker failures (database, redis) went from {before} to {after}"
    assert database.allows() and redis.allows()


# The cases whose fault is in the body (not in the path).
BODIES = [p for p in BAD_INPUT if p.values[0].body is not None and "%00" not in p.values[0].path]


@pytest.mark.parametrize(("request_", "status", "member", "says"), BODIES)
def test_the_document_refuses_a_body_exactly_when_the_service_answers_400(
    request_: Request, status: int, member: str, says: str
) -> None:
    valid = request_body_validator(request_).is_valid(request_.body)
    assert valid == (status != 400), f"the document says valid={valid}, the service {status}"


GOOD_INPUT = [
    pytest.param(post("/api/v1/tags", {"name": "&lt;"}), {"slug": "lt"}, id="entity-kept"),
    pytest.param(
        post("/api/v1/tags", {"name": "日本", "slug": "ja"}),
        {"slug": "ja", "name": "日本"},
        id="non-ascii-name-with-slug",
    ),
    pytest.param(
        post("/api/v1/tags", {"name": "  Padded\t"}), {"name": "Padded"}, id="blank-stripped"
    ),
    pytest.param(
        article(published_at="2026-01-31T09:30:00+02:00"),
        {"published_at": "2026-01-31T07:30:00Z"},
        id="published-at-offset",
    ),
    pytest.param(
        article(published_at="2026-01-31t09:30:00z"),
        {"published_at": "2026-01-31T09:30:00Z"},
        id="published-at-lowercase",
    ),
    pytest.param(patch(ARTICLE, {"category": None}), {"category": None}, id="clear-category"),
    pytest.param(
        article(title="Ωmega", category="guides", tags=["caching"]),
        {"slug": "omega", "category": {"slug": "guides", "name": "Guides"}},
        id="transliterated-title",
    ),
]


@pytest.mark.parametrize(("request_", "expected"), GOOD_INPUT)
async def test_input_the_document_allows_is_accepted(
    api: Api, content: dict[str, Any], request_: Request, expected: dict[str, Any]
) -> None:
    assert request_body_validator(request_).is_valid(request_.body), request_.body
    r = await request_.send(api)
    assert r.status_code in (200, 201), r.text
    got = {k: r.json()[k] for k in expected}
    assert got == expected, f"expected {expected}, got {got}"


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("Hello World", "hello-world"),
        ("&lt;", "lt"),
        ("Tom &amp; Jerry", "tom-amp-jerry"),
        ("&#65;", "65"),
        ("Ελληνικά", "ellenika"),
        ("🎉", ""),
        ("—", ""),
        ("a" * 300, "a" * 200),
        ("x" * 199 + " yz", "x" * 199),
    ],
)
def test_derive_slug_keeps_every_ascii_letter_and_digit(text: str, slug: str) -> None:
    assert derive_slug(text) == slug, f"derive_slug({text!r}) = {derive_slug(text)!r}"


def _strings(schema: dict[str, Any], where: str) -> list[tuple[str, dict[str, Any]]]:
    """Every string schema of a value within ``schema``, with where it is.

    An object's members are followed (not the rules it states across them, such as an
    ``anyOf`` of required members); a value's ``items`` and ``anyOf`` branches are.
    """
    if "properties" in schema:
        return [
            found
            for name, sub in schema["properties"].items()
            for found in _strings(sub, f"{where}.{name}")
        ]
    found = [(where, schema)] if schema.get("type") == "string" else []
    branches = [*schema.get("anyOf", []), *([schema["items"]] if "items" in schema else [])]
    for branch in branches:
        found += _strings(branch, where)
    return found


def _api_inputs() -> list[Any]:
    document = openapi_document()
    inputs = []
    for path, item in document["paths"].items():
        if not path.startswith("/api/"):
            continue
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method == "parameters":
                continue
            for parameter in [*shared, *op.get("parameters", [])]:
                if parameter["in"] not in ("path", "query"):
                    continue  # a header cannot carry a NUL character
                where = f"{method.upper()} {path} {parameter['name']}"
                inputs += _strings(parameter["schema"], where)
            body = op.get("requestBody")
            if body is not None:
                ref = body["content"]["application/json"]["schema"]["$ref"]
                schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
                inputs += _strings(schema, f"{method.upper()} {path} body")
    return [pytest.param(schema, id=where) for where, schema in inputs]


@pytest.mark.parametrize("schema", _api_inputs())
def test_every_text_input_the_document_states_refuses_nul(schema: dict[str, Any]) -> None:
    validator = jsonschema_rs.validator_for(schema, validate_formats=True)
    assert not validator.is_valid("a\x00b"), f"{schema} admits a NUL character"


# Behind the models, the translation of the database's refusals: a value that reaches
# PostgreSQL (or asyncpg) and that it cannot hold or compare is a 400 and not an outage.
Refused = Callable[[Api], Awaitable[Any]]

REFUSED_BY_THE_DATABASE = [
    pytest.param(lambda api: api.state.reader.article("a\x00b"), id="read-nul"),
    pytest.param(
        lambda api: api.state.reader.entities(
            "tag", PageParams.model_construct(page=2**62, per_page=100, cursor=None)
        ),
        id="read-offset-beyond-bigint",
    ),
    pytest.param(
        lambda api: api.state.article_writes.delete_comment(MAX_BIGINT + 1), id="write-id"
    ),
    pytest.param(
        lambda api: api.state.entity_writes.create(
            TAG, TagCreate.model_construct(name="x" * 300, slug="x")
        ),
        id="write-too-long",
    ),
]


@pytest.mark.parametrize("refused", REFUSED_BY_THE_DATABASE)
async def test_input_the_database_refuses_is_a_400_and_no_outage(
    api: Api, refused: Refused
) -> None:
    breaker = api.state.database_breaker
    before = breaker.failures
    with pytest.raises(DBAPIError) as caught:
        await refused(api)
    assert not is_unreachable(caught.value), f"{caught.value!r} was taken for an outage"
    assert breaker.failures == before, f"breaker failures went from {before} to {breaker.failures}"
    answer = await on_database_error(HttpRequest({"type": "http", "headers": []}), caught.value)
    body = bytes(answer.body)
    assert answer.status_code == 400 and json.loads(body)["status"] == 400, body
