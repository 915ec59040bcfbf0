"""The route table: every path of the contract and the endpoint that answers it."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from service.endpoints import (
    admin,
    articles,
    dashboard,
    health,
    operations,
    statistics,
    taxonomy,
)
from service.kinds import KINDS

_READ_WRITE = ["GET", "POST"]
_ITEM = ["GET", "PATCH", "DELETE"]


def routes() -> list[BaseRoute]:
    """Return the routes of the app."""
    table: list[BaseRoute] = [
        Route("/api/v1/articles", articles.article_collection, methods=_READ_WRITE),
        Route("/api/v1/articles/{slug}", articles.article_item, methods=_ITEM),
        Route("/api/v1/articles/{slug}/comments", articles.article_comments, methods=_READ_WRITE),
        Route("/api/v1/comments/{comment_id:int}", articles.comment_item, methods=["DELETE"]),
    ]
    for kind in KINDS:
        table.append(Route(kind.path, taxonomy.collection_endpoint(kind), methods=_READ_WRITE))
        item = f"{kind.path}/{{{kind.key}}}"
        table.append(Route(item, taxonomy.item_endpoint(kind), methods=_ITEM))
    table += [
        Route("/openapi.json", operations.openapi, methods=["GET"]),
        Route("/health/live", health.live, methods=["GET"]),
        Route("/health/ready", health.ready, methods=["GET"]),
        Route("/stats", statistics.stats, methods=["GET"]),
        Route("/metrics", statistics.metrics, methods=["GET"]),
        Route("/dashboard", dashboard.page, methods=["GET"]),
        Route("/dashboard/{name}", dashboard.static_file, methods=["GET"]),
        Route("/admin/cache/purge", admin.purge, methods=["POST"]),
        Route(admin.WARM_PATH, admin.warm_start, methods=["POST"]),
        Route(f"{admin.WARM_PATH}/{{job_id}}", admin.warm_job, methods=["GET", "DELETE"]),
    ]
    return table
