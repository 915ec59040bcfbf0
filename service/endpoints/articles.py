"""Articles and their comments."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from service.endpoints import cached, ctx, earlier_read, list_query, path_id, path_key, written
from service.responses import body, no_query
from service.schemas import ArticleCreate, ArticleListParams, ArticlePatch, CommentCreate


async def article_collection(request: Request) -> Response:
    """GET: a page of visible article summaries. POST: create an article (editor)."""
    state = ctx(request)
    if request.method == "POST":
        state.auth.require(request, "editor")
        no_query(request)
        doc = await state.article_writes.create_article(await body(request, ArticleCreate))
        return written(doc, 201, location=f"/api/v1/articles/{doc['slug']}")
    params = list_query(request, ArticleListParams)
    return await cached(request, state.reader.articles(params), paged=True)


async def article_item(request: Request) -> Response:
    """GET: one visible article. PATCH: merge-patch it (editor). DELETE: delete it (editor).

    A GET that is a cache hit is answered alike, without a task, by
    :meth:`service.read_path.ArticleReadPath.answer_hit` (what its GET checks and answers,
    that repeats; ``tests/service/test_fast_path.py`` compares the two).
    """
    state = ctx(request)
    slug = path_key(request, "slug")
    if request.method == "GET" or request.method == "HEAD":
        no_query(request)
        return await cached(request, state.reader.article(slug, after=earlier_read(request)))
    state.auth.require(request, "editor")
    no_query(request)
    if request.method == "PATCH":
        patch = await body(request, ArticlePatch)
        doc = await state.article_writes.patch_article(slug, patch, request.headers.get("if-match"))
        return written(doc)
    await state.article_writes.delete_article(slug)
    return Response(status_code=204)


async def article_comments(request: Request) -> Response:
    """GET: the article's comment threads. POST: add a comment (editor)."""
    state = ctx(request)
    slug = path_key(request, "slug")
    no_query(request)
    if request.method == "POST":
        state.auth.require(request, "editor")
        doc = await state.article_writes.create_comment(slug, await body(request, CommentCreate))
        return written(doc, 201)
    return await cached(request, state.reader.comments(slug))


async def comment_item(request: Request) -> Response:
    """DELETE: delete a comment and its replies (editor)."""
    state = ctx(request)
    state.auth.require(request, "editor")
    no_query(request)
    await state.article_writes.delete_comment(path_id(request, "comment_id"))
    return Response(status_code=204)
