"""The command line: ``content-service`` (or ``python -m service``).

Commands: ``serve``, ``migrate``, ``seed``, ``import PATH``, ``warm``. Each reads the
configuration from the environment; with neither ``DATABASE_URL`` nor ``REDIS_URL`` set, each
starts the embedded servers under ``DATA_DIR`` first (``serve`` keeps them until it exits), and
exits with status 2 and a message naming the ``embedded`` extra when it is not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from service import embedded
from service.logs import configure_logging
from service.metrics_dir import prepare_multiprocess_dir, remove_multiprocess_dir
from service.settings import Settings

if TYPE_CHECKING:
    from service.admin_requests import WarmRequest
    from service.state import AppState

logger = logging.getLogger("service")

#: How long uvicorn keeps an idle keep-alive connection open, in seconds. A server that closes an
#: idle connection while a client still counts it reusable loses the request the client sends
#: on it at that moment: the connection is closed unanswered and nothing is logged (RFC 9112,
#: section 9.3.1). uvicorn's default, 5 s, equals httpx's ``keepalive_expiry``; 75 s (nginx's
#: ``keepalive_timeout``) outlasts that and the 60 s idle timeouts of nginx's upstream pools
#: and of AWS load balancers, so such clients always drop an idle connection first.
KEEP_ALIVE_SECONDS = 75


@contextmanager
def _servers(settings: Settings) -> Iterator[Settings]:
    """Yield settings with both URLs; uvicorn's workers inherit them through the environment."""
    with embedded.servers_for(settings) as ready:
        os.environ["DATABASE_URL"] = ready.database_url or ""
        os.environ["REDIS_URL"] = ready.redis_url or ""
        yield ready


async def _migrate(settings: Settings) -> None:
    from service.migrations import upgrade

    await upgrade(settings.database_url or "")
    logger.info("schema is at the newest revision")


async def _import(settings: Settings, root: Path) -> None:
    from service.admin_requests import WarmRequest
    from service.app import open_state
    from service.importer import import_tree

    async with open_state(settings) as state:
        report = await import_tree(state.unit_of_work, root)
        if settings.warm_after_import:
            await _warm_with_progress(state, WarmRequest(source="recent"))
    print(
        f"imported {root}: {report.created} created, {report.updated} updated, "
        f"{report.unchanged} unchanged, {len(report.skipped)} skipped"
    )
    for line in report.skipped:
        print(f"  skipped {line}", file=sys.stderr)


async def _seed(settings: Settings, args: argparse.Namespace) -> None:
    from service.admin_requests import WarmRequest
    from service.app import open_state
    from service.seed import SeedCounts, seed

    counts = SeedCounts(
        articles=args.articles,
        authors=args.authors,
        categories=args.categories,
        tags=args.tags,
        comments_per_article=args.comments_per_article,
        body_bytes=args.body_bytes,
    )
    async with open_state(settings) as state:
        added = await seed(state, counts, progress=lambda t, n: print(f"{t}: {n} rows"))
        print(f"seeded {sum(added.values())} rows")
        if settings.warm_after_import:
            await _warm_with_progress(state, WarmRequest(source="recent"))


async def _warm(settings: Settings, args: argparse.Namespace) -> int:
    from service.admin_requests import WarmRequest
    from service.app import open_state

    request = WarmRequest(
        source=args.source, namespace=args.namespace, limit=args.limit, keys=args.keys or None
    )
    async with open_state(settings) as state:
        return await _warm_with_progress(state, request)


async def _warm_with_progress(state: AppState, request: WarmRequest) -> int:
    """Run a warming job in this process with a progress bar; return the exit status.

    1 when another job runs in the deployment, or Redis is unavailable; 0 otherwise.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from cache import CacheUnavailableError, WarmingBusyError

    try:
        job_id = await state.warming.start(request)
    except WarmingBusyError as exc:
        print(f"not started: warming job {exc.job_id} is running", file=sys.stderr)
        return 1
    except CacheUnavailableError as exc:
        print(f"not started: Redis is unavailable ({exc})", file=sys.stderr)
        return 1
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(f"warming ({request.source})", total=None)
        waiting = asyncio.ensure_future(state.warming.jobs.wait())
        while not waiting.done():
            await asyncio.wait({waiting}, timeout=0.2)
            job = await state.warming.jobs.get(job_id)
            if job is not None and job["total"]:
                processed = job["done"] + job["skipped"] + job["errors"]
                bar.update(task, total=job["total"], completed=processed)
    job = await state.warming.jobs.get(job_id)
    assert job is not None
    print(
        f"warming job {job_id} {job['state']}: {job['total']} keys, {job['done']} loaded,"
        f" {job['skipped']} skipped, {job['errors']} errors, {job['keys_per_second']} keys/s"
    )
    return 0 if job["state"] == "done" else 1


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    # Before prometheus_client is imported here or in a worker (they inherit the environment):
    # each worker then writes its samples where every other can read them.
    made = prepare_multiprocess_dir()
    try:
        import uvicorn

        if settings.migrate_on_start:
            asyncio.run(_migrate(settings))
        if args.import_path is not None:
            if args.import_path.is_dir():
                asyncio.run(_import(settings, args.import_path))
            else:
                print(f"nothing to import: {args.import_path} is not a directory", file=sys.stderr)
        uvicorn.run(
            "service.app:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            loop="uvloop",
            # httptools; cache hits are written without an ASGI task (service.fast_path)
            http="service.fast_path:FastPathProtocol",
            # The app configures logging (create_app); uvicorn's loggers go through it, and the
            # service's access log (ACCESS_LOG) replaces uvicorn's.
            log_config=None,
            log_level=settings.log_level,
            access_log=False,
            timeout_keep_alive=args.keep_alive_seconds,
            # The client address is the peer's; X-Forwarded-For is read by the service itself,
            # only from TRUSTED_PROXIES (see service.ratelimits).
            proxy_headers=False,
        )
    finally:
        if made is not None:
            remove_multiprocess_dir(made)


def _byte_range(value: str) -> tuple[int, int]:
    """Parse ``LOW-HIGH`` (or one number) into an inclusive range of byte counts."""
    low, _, high = value.partition("-")
    try:
        bounds = int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH in bytes, got {value!r}") from None
    if not 0 < bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"expected 0 < LOW <= HIGH, got {value!r}")
    return bounds


def parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``content-service``."""
    from service.keyspaces import NAMESPACES

    p = argparse.ArgumentParser(prog="content-service", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", help="migrate (unless --no-migrate), optionally import, and serve HTTP"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--import", dest="import_path", type=Path, help="import this tree first")
    serve.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error", "critical"),
        help="sets LOG_LEVEL (default: LOG_LEVEL, else info)",
    )
    serve.add_argument(
        "--access-log", action="store_true", help="log every answer: sets ACCESS_LOG=true"
    )
    serve.add_argument(
        "--no-migrate",
        action="store_true",
        help="serve the schema as it is, without upgrading it: sets MIGRATE_ON_START=false",
    )
    serve.add_argument(
        "--keep-alive-seconds",
        type=int,
        default=KEEP_ALIVE_SECONDS,
        help="how long an idle client connection stays open, seconds (default"
        f" {KEEP_ALIVE_SECONDS}); keep it above the idle timeout of every client and proxy",
    )
    sub.add_parser("migrate", help="upgrade the schema to the newest revision")
    seed = sub.add_parser("seed", help="add synthetic content with COPY")
    seed.add_argument("--articles", type=int, default=1000)
    seed.add_argument("--authors", type=int, default=50)
    seed.add_argument("--categories", type=int, default=10)
    seed.add_argument("--tags", type=int, default=100)
    seed.add_argument("--comments-per-article", type=int, default=2)
    seed.add_argument(
        "--body-bytes",
        type=_byte_range,
        metavar="LOW-HIGH",
        help="article body sizes in bytes, drawn uniformly (default: about 1.2 KB each)",
    )
    imp = sub.add_parser("import", help="import a tree of reStructuredText or Markdown files")
    imp.add_argument("path", type=Path)
    warm = sub.add_parser("warm", help="load the hottest (or newest, or given) keys into Redis")
    warm.add_argument("--source", choices=("hot", "recent", "keys"), default="hot")
    warm.add_argument("--namespace", choices=NAMESPACES, help="only this namespace")
    warm.add_argument("--limit", type=int, help="at most this many keys (hot, recent)")
    warm.add_argument(
        "--keys", nargs="+", metavar="KEY", help="namespace:identity, e.g. article:my-slug"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = parser().parse_args(argv)
    # uvicorn re-raises SIGTERM after its shutdown; as SystemExit it unwinds through the
    # embedded servers' cleanup instead of killing the process before it.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.command == "serve":
        # The workers read their settings from the environment, as they build their apps.
        if args.log_level is not None:
            os.environ["LOG_LEVEL"] = args.log_level
        if args.access_log:
            os.environ["ACCESS_LOG"] = "true"
        if args.no_migrate:
            os.environ["MIGRATE_ON_START"] = "false"
    try:
        settings = Settings()
    except ValueError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    if settings.is_embedded:
        try:
            embedded.ensure_installed()
        except embedded.EmbeddedServersMissingError as exc:
            print(f"cannot start: {exc}", file=sys.stderr)
            return 2
    with _servers(settings) as ready:
        if args.command == "serve":
            _serve(ready, args)
        elif args.command == "migrate":
            asyncio.run(_migrate(ready))
        elif args.command == "seed":
            asyncio.run(_migrate(ready))
            asyncio.run(_seed(ready, args))
        elif args.command == "import":
            asyncio.run(_migrate(ready))
            asyncio.run(_import(ready, args.path))
        elif args.command == "warm":
            return asyncio.run(_warm(ready, args))
    return 0
