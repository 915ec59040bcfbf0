"""The articles' operations, and their comments'."""

from __future__ import annotations

from service import representations as rep
from service.operation_table.answers import (
    BAD_BODY,
    DELETED,
    LIST_400,
    NO_QUERY,
    cached_read,
    link,
    problems,
    writes,
    written,
)
from service.operation_table.declarations import EDITOR, STRING, Operation, Parameter
from service.operation_table.parameters import (
    IF_NONE_MATCH,
    PAGE_QUERIES,
    ROW_ID,
    path_parameter,
)
from service.schemas import ArticleCreate, ArticleListParams, ArticlePatch, CommentCreate


def article_operations() -> tuple[Operation, ...]:
    """Return the operations of the articles and their comments, in the document's order."""
    articles, article = "/api/v1/articles", "/api/v1/articles/{slug}"
    comments = f"{article}/comments"
    slug = path_parameter("slug", "the article's slug")
    missing = "no visible article has that slug"
    return (
        Operation(
            "GET",
            articles,
            "listArticles",
            "articles",
            "A page of visible article summaries",
            {
                **cached_read(rep.Page[rep.ArticleSummary], paged=True),
                **problems({400: LIST_400, 404: "category, tag or author names none"}),
            },
            description=(
                "Visible: published, and published_at not in the future. Newest first unless "
                f"sort is given; by relevance when q is given without sort. {PAGE_QUERIES}"
            ),
            query=ArticleListParams,
            parameters=(IF_NONE_MATCH,),
        ),
        Operation(
            "POST",
            articles,
            "createArticle",
            "articles",
            "Create an article",
            {
                **written(
                    201,
                    rep.Article,
                    "the new article (a draft unless status says otherwise: a draft is not "
                    "visible to the reads)",
                    location=True,
                    links=(
                        link("patch", "patchArticle", "slug", "/slug"),
                        link("delete", "deleteArticle", "slug", "/slug"),
                    ),
                ),
                **problems(
                    {
                        400: f"{BAD_BODY}; or series_position comes without series",
                        409: "the slug is taken (the problem's slug member names it), or the "
                        "author, category, series or a tag named does not exist (the member "
                        "member names which)",
                    }
                ),
                **writes("editor"),
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
                **cached_read(
                    rep.Article,
                    links=(
                        link("comments", "listArticleComments", "slug", "/slug"),
                        link("patch", "patchArticle", "slug", "/slug"),
                    ),
                ),
                **problems({400: NO_QUERY, 404: missing}),
            },
            parameters=(slug, IF_NONE_MATCH),
        ),
        Operation(
            "PATCH",
            article,
            "patchArticle",
            "articles",
            "Merge-patch an article (of any status)",
            {
                **written(200, rep.Article, "the article, patched"),
                **problems(
                    {
                        400: f"{BAD_BODY}; or series_position is given for an article in no series",
                        404: "no article has that slug",
                        409: "the new slug is taken (the problem's slug member names it), or the "
                        "author, category, series or a tag named does not exist (the member "
                        "member names which)",
                        412: "If-Match does not name the article's current ETag",
                    }
                ),
                **writes("editor"),
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
                    STRING,
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
                **DELETED,
                **problems({400: NO_QUERY, 404: "no article has that slug"}),
                **writes("editor", body=False),
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
            {**cached_read(rep.Comments), **problems({400: NO_QUERY, 404: missing})},
            parameters=(slug, IF_NONE_MATCH),
        ),
        Operation(
            "POST",
            comments,
            "createComment",
            "comments",
            "Comment on a visible article, or reply to one of its comments",
            {
                **written(
                    201,
                    rep.Comment,
                    "the new comment",
                    links=(link("delete", "deleteComment", "comment_id", "/id"),),
                ),
                **problems(
                    {
                        400: BAD_BODY,
                        404: missing,
                        409: "parent_id is not a comment of the article, or the article or the "
                        "parent comment was deleted while the comment was written",
                    }
                ),
                **writes("editor"),
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
                **DELETED,
                **problems({400: NO_QUERY, 404: "no comment has that id"}),
                **writes("editor", body=False),
            },
            parameters=(path_parameter("comment_id", "the comment's id", ROW_ID),),
            security=EDITOR,
        ),
    )
