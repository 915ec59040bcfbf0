"""The article read path against Starlette's own stack, in one process, on L1 hits.

One app is started (its lifespan, on ``DATABASE_URL`` and ``REDIS_URL``) and asked plain GETs
of up to 100 published articles, called as an ASGI app with no server and no socket, so that
only the app's own work is counted: once through its whole stack (where
:class:`service.read_path.ArticleReadPath` answers) and once through Starlette's stack behind
the read path, wrapped in the same request-id layer (what the app was without it). After a
warm-up every answer comes from the worker's L1. Interleaved rounds; the process's CPU time per
answer (``time.process_time``), median and minimum over the rounds.

Usage::

    DATABASE_URL=... REDIS_URL=... .venv/bin/python -m benchmarks.read_path [--rounds 15]
        [--answers 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.app import ContentApp, create_app
from service.tracing import RequestIdMiddleware


def scope_of(path: str) -> Scope:
    """The scope uvicorn would build for a plain GET of ``path`` from wrk."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def receive() -> Message:
    """An empty request body."""
    return {"type": "http.request", "body": b"", "more_body": False}


#: the Cache-Status of the last answer
last_cache_status: list[bytes] = [b""]


async def send(message: Message) -> None:
    """Drop the answer, keeping its Cache-Status; refuse any status but 200 (hits only).

    Raises:
        RuntimeError: an answer was not a 200.
    """
    if message["type"] == "http.response.start":
        if message["status"] != 200:
            raise RuntimeError(f"answered {message['status']}")
        last_cache_status[0] = dict(message["headers"]).get(b"cache-status", b"")


async def cpu_per_answer(app: ASGIApp, scopes: list[Scope], answers: int) -> float:
    """Ask ``answers`` questions of ``app``, round robin; return the CPU µs per answer."""
    began = time.process_time()
    for i in range(answers):
        await app(dict(scopes[i % len(scopes)]), receive, send)
    return (time.process_time() - began) / answers * 1e6


async def main(args: argparse.Namespace) -> None:
    """Measure both stacks and print their figures (see the module's docstring)."""
    os.environ.setdefault("LOG_LEVEL", "warning")
    app = create_app()
    assert isinstance(app, ContentApp)
    async with app.router.lifespan_context(app):
        state: Any = app.state.ctx
        async with state.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT slug FROM articles WHERE status = 'published' ORDER BY id LIMIT 100")
            )
            slugs = [r.slug for r in rows]
        if not slugs:
            raise SystemExit("no published article: seed some (content-service seed)")
        app.middleware_stack = app.build_middleware_stack()
        assert app.read_path is not None
        behind = app.read_path.app

        async def starlette_alone(scope: Scope, receive: Receive, send: Send) -> None:
            scope["app"] = app  # as Starlette's own entry sets it
            await behind(scope, receive, send)

        recorder = app.recorder
        assert recorder is not None
        targets: dict[str, ASGIApp] = {
            "read path": app,
            "Starlette's stack": RequestIdMiddleware(starlette_alone, recorder),
        }
        scopes = [scope_of(f"/api/v1/articles/{s}") for s in slugs]
        for name, target in targets.items():
            await cpu_per_answer(target, scopes, len(scopes) * 3)  # loads, fills L1
            if not last_cache_status[0].endswith(b"detail=l1"):
                raise SystemExit(f"{name}: not answered from L1 ({last_cache_status[0]!r})")
        figures: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, target in targets.items():
                figures[name].append(await cpu_per_answer(target, scopes, args.answers))
    print(f"{len(slugs)} articles, L1 hits, {args.rounds} rounds of {args.answers} answers each")
    for name, values in figures.items():
        print(
            f"{name:>18}: median {statistics.median(values):6.1f} µs CPU per answer,"
            f" min {min(values):6.1f}"
        )
    a, b = (statistics.median(v) for v in figures.values())
    print(f"read path / Starlette's stack: {a / b:.2f} (medians)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--answers", type=int, default=5000, help="answers per round and target")
    asyncio.run(main(parser.parse_args()))
