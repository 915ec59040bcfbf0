"""The fast path: cache hits answered by the HTTP protocol itself, without an ASGI task.

uvicorn serves every request with an ASGI task: a request-response cycle, a task, the app's
layers, two ASGI messages through each (each header checked by two regular expressions), two
socket writes. A cache hit needs none of it. :class:`FastPathProtocol` is uvicorn's httptools
protocol that, when a request's head is complete, first asks the app for a fast answer
(``app.fast_answer(scope)``, :meth:`service.app.ContentApp.fast_answer`):

* a :class:`service.responses.FastAnswer` (a near-cache hit) is written at once;
* a :class:`cache.PendingHit` (the entry is being read from Redis) is written when the read is
  done, from the read's callback, if it is a hit; if it is not (a miss, a stale entry, a
  failure), the request's task starts then, as it would have, and its endpoint takes the
  read done (:data:`service.endpoints.EARLIER_READ`) instead of reading Redis again;
* None, or an app without ``fast_answer``: the request's task starts now, unchanged.

An answer is written as uvicorn's cycle would have sent it (uvicorn's default headers, then the
app's, ``connection: close`` when the connection is not kept alive; head and body in one
write), and the cycle is completed as uvicorn completes it (the keep-alive timer, the pipelined
requests behind it, the next of which starts in the loop's next pass). A request is answered
fast only when uvicorn would start its task now (a pipelined request behind an unfinished one
waits its turn), and while the transport takes writes (when uvicorn's flow control has paused
writing, the task, which waits for the client, answers). A request body (a GET may have one) is
left unread, as the app's endpoint leaves it. Until its answer is written, a request holds its
connection as a task would: requests pipelined behind it wait, a shutdown closes the connection
after it.

The hook is uvicorn's ``HttpToolsProtocol._start_asgi_task`` (uvicorn 0.54, to which the
project's dependencies bound it); ``tests/service/test_fast_path.py`` checks the answers
against uvicorn's own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from uvicorn._types import ASGI3Application, Scope
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from cache import PendingHit
from service.responses import FastAnswer

logger = logging.getLogger(__name__)


#: an app's ``fast_answer`` (:meth:`service.app.ContentApp.fast_answer`): the answer to a scope
#: without a task, now or once a read is done, else None
FastAnswerer = Callable[[Scope], FastAnswer | PendingHit[FastAnswer] | None]


class FastPathProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing the answers the app gives without a task.

    Fails open: an error of the app's ``fast_answer`` (or of a pending hit's ``finish()``) is
    logged with its traceback and the request goes to its task, which answers it as if there
    were no fast path (it may then be counted twice: the error came after the count).
    """

    #: True while an answer written here completes its cycle (see :meth:`_start_asgi_task`)
    _completing = False

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        if self._completing:
            # Called back by uvicorn's completion of the answer just written, for the next
            # pipelined request: started in the loop's next pass, as uvicorn's own task would
            # be, so that a long pipeline of hits does not nest one call per request.
            self.loop.call_soon(self._start_asgi_task, cycle, app)
            return
        fast_answer: FastAnswerer | None = getattr(app, "fast_answer", None)
        if fast_answer is not None and not self.flow.write_paused and not cycle.disconnected:
            try:
                answer = fast_answer(cycle.scope)
            except Exception:
                logger.exception("the fast answer failed; the request goes to its task")
                answer = None
            if isinstance(answer, FastAnswer):
                self._write(cycle, answer)
                return
            if answer is not None:
                finish = answer.finish
                answer.read.add_done_callback(lambda _: self._finish(cycle, app, finish))
                return
        super()._start_asgi_task(cycle, app)

    def _finish(
        self,
        cycle: RequestResponseCycle,
        app: ASGI3Application,
        finish: Callable[[], FastAnswer | None],
    ) -> None:
        """Once a hit's read is done: write its answer, or start the request's task."""
        if self.flow.write_paused and not cycle.disconnected:
            # The task waits for the client to read; nothing was counted here yet.
            super()._start_asgi_task(cycle, app)
            return
        try:
            answer = finish()
        except Exception:
            logger.exception("the fast answer failed; the request goes to its task")
            answer = None
        if answer is None:
            if not self.transport.is_closing():
                super()._start_asgi_task(cycle, app)
            return
        if cycle.disconnected or self.transport.is_closing():
            return  # counted and recorded, as a task's answer to a client that left
        self._write(cycle, answer)

    def _write(self, cycle: RequestResponseCycle, answer: FastAnswer) -> None:
        """Write ``answer`` and complete ``cycle`` as its task's last send would have."""
        content: list[bytes | memoryview] = [STATUS_LINE[answer.status]]
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
        self._completing = True
        try:
            cycle.on_response()
        finally:
            self._completing = False
