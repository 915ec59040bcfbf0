"""The phase of an app's life that ``/health/ready`` reports: starting, serving, draining.

An app is ``starting`` until its lifespan has built everything, ``serving`` after, and
``draining`` from the SIGTERM that stops it. uvicorn installs its own SIGTERM handler
(``Server.capture_signals``, with ``signal.signal``) before it runs the lifespan;
:meth:`Lifecycle.drain_on_sigterm` wraps that handler so that the app reports ``draining``
first and, after ``drain_seconds``, hands the signal on to uvicorn, which then stops accepting
connections and finishes the requests in flight. A load balancer that probes readiness sees 503
during that delay and stops sending new requests before the server goes away.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

SignalHandler = Callable[[int, FrameType | None], Any]


class Phase(enum.Enum):
    """Where an app is in its life."""

    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"


class Lifecycle:
    """The phase of one app; changed by its lifespan and by SIGTERM.

    Only the event loop's thread changes it (signal handlers run there too).
    """

    def __init__(self) -> None:
        self.phase = Phase.STARTING
        self._installed: tuple[SignalHandler, SignalHandler] | None = None

    def serving(self) -> None:
        """Mark the app ready to serve (the lifespan has built everything)."""
        self.phase = Phase.SERVING

    def drain(self) -> None:
        """Mark the app draining: readiness answers 503 from now on."""
        if self.phase is not Phase.DRAINING:
            logger.info("draining: /health/ready answers 503 from now on")
        self.phase = Phase.DRAINING

    def drain_on_sigterm(self, drain_seconds: float) -> bool:
        """Wrap the running server's SIGTERM handler: drain first, hand the signal on later.

        Nothing is wrapped off the main thread, nor when SIGTERM has no Python handler (the
        default action or ignored: no server that stops gracefully is running, as in tests
        that run the lifespan themselves).

        Args:
            drain_seconds: how long to report ``draining`` before the server's own handler
                runs, seconds (0: at once).

        Returns:
            True when the handler was wrapped.
        """
        if threading.current_thread() is not threading.main_thread():
            return False
        server_handler = signal.getsignal(signal.SIGTERM)
        if not callable(server_handler):
            return False
        loop = asyncio.get_running_loop()

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            self.drain()
            if drain_seconds <= 0:
                server_handler(signum, frame)
            else:
                # call_soon_threadsafe wakes the loop, which a signal handler cannot count on.
                loop.call_soon_threadsafe(
                    loop.call_later, drain_seconds, server_handler, signum, None
                )

        signal.signal(signal.SIGTERM, on_sigterm)
        self._installed = (on_sigterm, server_handler)
        return True

    def restore_sigterm(self) -> None:
        """Put the server's own SIGTERM handler back, unless someone replaced ours since."""
        if self._installed is None:
            return
        ours, server_handler = self._installed
        self._installed = None
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is ours
        ):
            signal.signal(signal.SIGTERM, server_handler)
