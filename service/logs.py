"""Log lines: one JSON object a line (or plain text), uvicorn's loggers included.

A JSON line holds ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, ``request_id``
(``-`` outside a request) and every extra field of the record (the access log's ``method``,
``route``, ``path``, ``status``, ``duration_ms``, ``client``); an exception adds ``exc_info``.
:func:`configure_logging` installs one handler on the root logger, on standard error, and makes
uvicorn's loggers hand their records to it; it runs in :func:`service.app.create_app`, so that
every uvicorn worker (which builds its own app) logs alike.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Final

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from service.settings import Settings
from service.tracing import install_log_record_factory

#: the logger of the access log (one line per answer, when ``ACCESS_LOG`` is on)
ACCESS_LOGGER: Final = "service.access"
HANDLER_NAME: Final = "content-service"
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

# uvicorn's loggers: their records go to the root handler. Its access log stays off: the
# service's own (service.access) says more, with the route template and the request id.
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.asgi")
_UVICORN_ACCESS = "uvicorn.access"


class StandardErrorHandler(logging.StreamHandler[Any]):
    """Writes to whatever ``sys.stderr`` is at each record (a test's capture comes and goes)."""

    def __init__(self) -> None:
        super().__init__()
        self.set_name(HANDLER_NAME)

    @property
    def stream(self) -> Any:
        """``sys.stderr`` now."""
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def json_formatter() -> logging.Formatter:
    """Return the formatter of the JSON lines (uvicorn's ``color_message`` left out)."""
    return JsonFormatter(
        ["levelname", "name", "message", "request_id"],
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
        reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        json_ensure_ascii=False,
    )


def configure_logging(settings: Settings) -> None:
    """Log to standard error in ``LOG_FORMAT`` from ``LOG_LEVEL`` up; idempotent.

    The handler this installed before is replaced; handlers that others added to the root
    logger (a test's capture) are kept.
    """
    install_log_record_factory()
    handler = StandardErrorHandler()
    if settings.log_format == "json":
        handler.setFormatter(json_formatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    level = settings.log_level.upper()
    root.setLevel(level)
    for name in _UVICORN:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers = []
        uvicorn_logger.propagate = True
        uvicorn_logger.setLevel(level)
    access = logging.getLogger(_UVICORN_ACCESS)
    access.handlers = []
    access.propagate = False
