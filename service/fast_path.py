"""The fast path: cache hits answered by the HTTP protocol itself, without an ASGI task.

uvicorn serves every request with an ASGI task: a request-response cycle, a task, the app's
layers, two ASGI messages through each (each header checked by two regular expressions), two
socket writes. A cache hit needs none of it. :class:`FastPathProtocol` is uvicorn's httptools
protocol that, when a request's head is complete, first asks the app for a fast answer
(``app.fast_answer(scope)``, :meth:`service.app.ContentApp.fast_answer`):

* a :class:`FastAnswer` (a near-cache hit) is written at once;
* a :class:`cache.PendingHit` (the entry is being read from Redis) is written when the read is
  done, from the read's callback, if it is a hit; if it is not (a miss, a stale entry, a
  failure), the request's task starts then, as it would have (and reads Redis again);
* None, or an app without ``fast_answer``: the request's task starts now, unchanged.

An answer is written as uvicorn's cycle would have sent it (uvicorn's default headers, then the
app's, ``connection: close`` when the connection is not kept alive; head and body in one
write), and the cycle is completed as uvicorn completes it (the keep-alive timer, the pipelined
requests behind it). A request is answered fast only when uvicorn would start its task now (a
pipelined request behind an unfinished one waits its turn), and while the transport takes
writes (when uvicorn's flow control has paused writing, the task, which waits for the client,
answers). A request body (a GET may have one) is left unread, as the app's endpoint leaves it.
Until its answer is written, a request holds its connection as a task would: requests
pipelined behind it wait, a shutdown closes the connection after it.

The hook is uvicorn's ``HttpToolsProtocol._start_asgi_task`` (uvicorn 0.54, the version the
lock file pins); ``tests/service/test_fast_path.py`` checks the answers against uvicorn's own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from cache import PendingHit

logger = logging.getLogger(__name__)


class FastAnswer(NamedTuple):
    """An answer the app gives without a task.

    Attributes:
        status: the HTTP status.
        headers: the app's headers, (lower-case name, value) bytes, in order; they include
            ``content-length`` when there is a body.
        body: the body (empty for a 304).
    """

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class FastPathProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing the answers the app gives without a task."""

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        fast_answer = getattr(app, "fast_answer", None)
        if fast_answer is not None and not self.flow.write_paused and not cycle.disconnected:
            answer: FastAnswer | PendingHit[FastAnswer] | None = fast_answer(cycle.scope)
            if isinstance(answer, FastAnswer):
                self._write(cycle, answer)
                return
            if answer is not None:
                finish = answer.finish
                answer.read.add_done_callback(lambda _: self._finish(cycle, app, finish))
                return
        super()._start_asgi_task(cycle, app)

    def _finish(
        self, cycle: RequestResponseCycle, app: Any, finish: Callable[[], FastAnswer | None]
    ) -> None:
        """Write the answer of a hit once its read is done; else start the request's task."""
        if cycle.disconnected or self.transport.is_closing():
            return  # the client left: nobody to answer (a task would stop here too)
        try:
            answer = finish()
        except Exception:
            logger.exception("a fast answer failed; the request goes to its task")
            answer = None
        if answer is None or self.flow.write_paused:
            super()._start_asgi_task(cycle, app)
            return
        self._write(cycle, answer)

    def _write(self, cycle: RequestResponseCycle, answer: FastAnswer) -> None:
        """Write ``answer`` and complete ``cycle`` as its task's last send would have."""
        content = [STATUS_LINE[answer.status]]
        for name, value in cycle.default_headers:
            content += (name, b": ", value, b"\r\n")
        for name, value in answer.headers:
            content += (name, b": ", value, b"\r\n")
        if not cycle.keep_alive:
            content.append(b"connection: close\r\n")
        content += (b"\r\n", answer.body)
        cycle.response_started = True
        cycle.response_complete = True
        self.transport.write(b"".join(content))
        cycle.message_event.set()
        if not cycle.keep_alive:
            self.transport.close()
        cycle.on_response()
