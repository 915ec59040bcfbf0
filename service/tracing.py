"""Request ids: every answer carries ``X-Request-ID``, and so does every log line of its request.

A client's own id is kept when it is sane (1 to 128 characters of letters, digits and
``-_.:``), so that a trace can cross the service; otherwise a new random one is made. The id of
the request being served is in :data:`REQUEST_ID` (a context variable, so each task sees its
own) and in the ``request_id`` attribute of every log record (``-`` outside a request).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from time import perf_counter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: the id of the request the current task serves; "-" outside a request
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")

_SANE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
#: the header of the request id, as ASGI spells it
REQUEST_ID_HEADER = b"x-request-id"


def request_id_of(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Return the id of a request: its sane ``X-Request-ID``, else a new one.

    Args:
        headers: the request's headers, as the ASGI scope has them (lower-case names).

    Returns:
        The id, ASCII bytes; a new one is 32 random hex digits.
    """
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            if _SANE.fullmatch(value):
                return value
            break
    return os.urandom(16).hex().encode("ascii")


AnswerObserver = Callable[[Scope, int, float], None]


class RequestIdMiddleware:
    """Pure ASGI middleware: takes or makes the request's id and adds it to the answer.

    It also tells ``observer`` of every answer, with the scope, the status and the seconds since
    the request arrived, just before the answer's last body message goes to the server (so that
    whatever the observer counts is visible before the client has the whole answer), in the
    request's context. An answer that never completes (the app raised before answering, the
    client left) is reported when the app returns, with status 500 if none was sent.

    Args:
        app: the application it wraps.
        observer: told of every answer; None for none. Its exceptions propagate.
    """

    def __init__(self, app: ASGIApp, observer: AnswerObserver | None = None) -> None:
        self.app = app
        self.observer = observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve ``scope`` with its id set in :data:`REQUEST_ID` and sent as ``X-Request-ID``."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        request_id = request_id_of(scope["headers"])
        observer = self.observer
        status = 500
        observed = observer is None

        async def send_with_id(message: Message) -> None:
            nonlocal status, observed
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id)]
            elif not observed and not message.get("more_body", False):
                observed = True
                observer(scope, status, perf_counter() - started)  # type: ignore[misc]
            await send(message)

        token = REQUEST_ID.set(request_id.decode("ascii"))
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if not observed:
                observer(scope, status, perf_counter() - started)  # type: ignore[misc]
            REQUEST_ID.reset(token)


def install_log_record_factory() -> None:
    """Give every log record a ``request_id`` attribute (for ``%(request_id)s`` in formats).

    Idempotent: installing it twice wraps the factory once.
    """
    current = logging.getLogRecordFactory()
    if getattr(current, "adds_request_id", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        record.request_id = REQUEST_ID.get()
        return record

    factory.adds_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
