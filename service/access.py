"""What is recorded of every answer: the HTTP metrics and, when asked for, the access log.

The route is the template Starlette's router matched (``scope["route"].path``, e.g.
``/api/v1/articles/{slug}``), never the raw path, so that the metrics have one series per route;
``unmatched`` when no route matched (a 404, a slash redirect). The access log line also holds
the raw path.
"""

from __future__ import annotations

import logging

from starlette.types import Scope

from service.logs import ACCESS_LOGGER
from service.metrics import UNMATCHED, ServiceMetrics

access_logger = logging.getLogger(ACCESS_LOGGER)


def route_template(scope: Scope) -> str:
    """Return the path template of the route that served ``scope``, or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class AccessRecorder:
    """Records answers in ``metrics`` and, with ``access_log``, one INFO line each.

    Called by :class:`service.tracing.RequestIdMiddleware` as each answer's last byte is handed
    to the server (so that a scrape that follows the answer counts it), within the request's
    context (the line carries its ``request_id``).

    Args:
        metrics: where ``http_requests_total`` and ``http_request_duration_seconds`` go.
        access_log: whether to log a line per answer on ``service.access``.
    """

    def __init__(self, metrics: ServiceMetrics, *, access_log: bool = False) -> None:
        self.metrics = metrics
        self.access_log = access_log

    def __call__(self, scope: Scope, status: int, seconds: float) -> None:
        """Record the answer ``status`` to ``scope``, ``seconds`` after the request arrived."""
        route = route_template(scope)
        method: str = scope["method"]
        self.metrics.answered(route, method, status, seconds)
        if self.access_log:
            client = scope.get("client")
            path: str = scope["path"]
            access_logger.info(
                "%s %s %d",
                method,
                path,
                status,
                extra={
                    "method": method,
                    "route": route,
                    "path": path,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "client": f"{client[0]}:{client[1]}" if client else None,
                },
            )
