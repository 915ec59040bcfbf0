"""Read statements built once, and the runners that execute them.

A :class:`Read` is a Core statement built once, at import, with ``bindparam`` placeholders.
A cache miss runs it through :class:`DriverReads`: compiled by SQLAlchemy once, at first use,
then sent as it is on the pooled connection's asyncpg connection, whose statement cache
prepares it once per connection; the rows come back as ``asyncpg.Record`` mappings, with no
SQLAlchemy execution context, result or ``Row`` built per call; a guarded runner
(:meth:`DriverReads.guarded`) first asks a guard about the connection (a read replica's replay
position, see :mod:`service.replicas`). Writes run the same statements inside their
transaction through :class:`SessionReads` (rows as ``RowMapping``). The
statements themselves are in :mod:`service.repository`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import asyncpg
from sqlalchemy import Select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.pool import PoolProxiedConnection, QueuePool
from sqlalchemy.util import greenlet_spawn

#: A row of a read: a mapping of column label to value (``asyncpg.Record`` or ``RowMapping``).
Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CompiledRead:
    """A read statement's SQL for one dialect and how to lay out its positional arguments.

    Attributes:
        sql: the statement's text with ``$n`` placeholders.
        template: the positional arguments, the per-call ones left as None.
        slots: (index in ``template``, bind name) of each per-call argument.
    """

    sql: str
    template: tuple[Any, ...]
    slots: tuple[tuple[int, str], ...]

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        """Return the positional arguments for ``values`` (bind name to value).

        Raises:
            KeyError: a per-call value is missing.
        """
        args = list(self.template)
        for index, name in self.slots:
            args[index] = values[name]
        return args


class Read:
    """One read statement, built once; compiled once per dialect, at its first use.

    Safe to share between tasks (compiling twice in a race gives the same result).

    Args:
        statement: a Core ``SELECT`` whose per-call values are ``bindparam``s without a value.
        names: the names of those bind parameters.
    """

    __slots__ = ("_compiled", "names", "statement")

    def __init__(self, statement: Select[*tuple[Any, ...]], *names: str) -> None:
        self.statement = statement
        self.names = names
        self._compiled: tuple[Dialect, CompiledRead] | None = None

    def compiled(self, dialect: Dialect) -> CompiledRead:
        """Return the statement compiled for ``dialect`` (a positional-parameter dialect).

        Raises:
            TypeError: a parameter needs a bind processor (it could not be sent as it is).
        """
        cached = self._compiled
        if cached is not None and cached[0] is dialect:
            return cached[1]
        compiled = self.statement.compile(dialect=dialect)
        order = compiled.positiontup or []
        # Read statements bind only strings and integers, which asyncpg encodes itself; a
        # type that needs converting first would be sent wrong, so it is refused here.
        processed = {n for n in order if compiled._bind_processors.get(n) is not None}
        if processed:
            raise TypeError(f"parameters {sorted(processed)} need a bind processor")
        params = compiled.construct_params(dict.fromkeys(self.names))
        result = CompiledRead(
            compiled.string,
            tuple(params[n] for n in order),
            tuple((i, n) for i, n in enumerate(order) if n in self.names),
        )
        self._compiled = (dialect, result)
        return result


class Reads(Protocol):
    """Runs read statements: on the driver for cache misses, in a session for writes."""

    async def first(self, read: Read, **values: Any) -> Row | None:
        """Return the statement's first row, or None."""
        ...

    async def all(self, read: Read, **values: Any) -> Sequence[Row]:
        """Return the statement's rows, in order."""
        ...


class SessionReads:
    """Runs read statements through ``session`` (its transaction, its autoflush).

    SQLAlchemy's compiled cache holds each statement after its first run, so nothing is built
    or compiled per call. Not safe to share between tasks (the session is not).
    """

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def first(self, read: Read, **values: Any) -> Row | None:
        """Return the statement's first row as a ``RowMapping``, or None."""
        result = await self._session.execute(read.statement, values)
        # RowMapping is keyed by labels and by column objects; reads use only the labels.
        return cast(Row | None, result.mappings().first())

    async def all(self, read: Read, **values: Any) -> Sequence[Row]:
        """Return the statement's rows as ``RowMapping``s."""
        result = await self._session.execute(read.statement, values)
        return cast(Sequence[Row], result.mappings().all())


#: Decides, on the checked-out connection, whether a statement may run on it (see
#: :meth:`DriverReads.guarded`). It may run statements of its own on the connection.
Guard = Callable[[PoolProxiedConnection], Awaitable[bool]]


class GuardRefusedError(Exception):
    """A guard refused the connection a statement was to run on; the statement did not run."""


class DriverReads:
    """Runs read statements on pooled connections' asyncpg connections, one statement each.

    Each statement's SQL is compiled once (see :class:`Read`) and sent as it is; asyncpg's
    statement cache prepares it once per connection, so a call costs a pool checkout, one
    round trip and the records. Errors are translated as SQLAlchemy's execution would (see
    :func:`translated`), a connection whose statement failed mid-way or was cancelled is
    invalidated, and the engine's ``before_cursor_execute`` listeners are told of each
    statement (with no connection, cursor or execution context), so statement logs and counts
    still see it.

    At most ``pool_size`` statements run at once: past it they wait here, up to the pool's
    timeout, rather than open overflow connections, which the pool closes on return whenever
    its idle queue is full and a burst of misses would otherwise open and close a connection
    per statement. Overflow stays for the writes. Safe to share between tasks.

    Args:
        engine: the request engine (transactions are never begun: each statement commits
            on its own).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._dialect = engine.dialect
        self._dispatch = engine.sync_engine.dispatch
        pool = engine.sync_engine.pool
        self._slots: asyncio.Semaphore | None = None
        self._timeout_seconds = 0.0
        if isinstance(pool, QueuePool):
            self._slots = asyncio.Semaphore(pool.size())
            self._timeout_seconds = pool.timeout()

    async def first(self, read: Read, **values: Any) -> Row | None:
        """Return the statement's first row as an ``asyncpg.Record``, or None.

        Raises:
            sqlalchemy.exc.TimeoutError: no connection came free within the pool's timeout.
            sqlalchemy.exc.DBAPIError: the statement failed (see :func:`translated`).
            OSError: the server could not be reached, or did not answer in time.
        """
        rows = await self._run(read, values, one=True)
        return rows[0] if rows else None

    async def all(self, read: Read, **values: Any) -> Sequence[Row]:
        """Return the statement's rows as ``asyncpg.Record``s; raises as :meth:`first`."""
        return await self._run(read, values, one=False)

    def guarded(self, guard: Guard) -> Reads:
        """Return a runner of these reads that asks ``guard`` before each statement.

        The guard is awaited on the connection the statement was to run on, after checkout;
        when it answers False the connection goes back to the pool and
        :class:`GuardRefusedError` is raised. What the guard raises is handled as a failure of
        the statement. Shares this runner's pool slots; safe to share between tasks.
        """
        return _GuardedReads(self, guard)

    async def _run(
        self, read: Read, values: Mapping[str, Any], *, one: bool, guard: Guard | None = None
    ) -> list[Any]:
        compiled = read.compiled(self._dialect)
        args = compiled.arguments(values)
        slots = self._slots
        if slots is not None:
            if slots.locked():
                try:
                    async with asyncio.timeout(self._timeout_seconds):
                        await slots.acquire()
                except TimeoutError as exc:
                    raise sa_exc.TimeoutError(
                        f"no database connection came free in {self._timeout_seconds} s"
                    ) from exc
            else:
                await slots.acquire()  # free: returns at once
        try:
            raw = await self._engine.raw_connection()
            driver: Any = raw.driver_connection
            refused = False
            rows: list[Any] = []
            try:
                if guard is not None and not await guard(raw):
                    refused = True
                else:
                    if self._dispatch.before_cursor_execute:
                        self._dispatch.before_cursor_execute(
                            None, None, compiled.sql, args, None, False
                        )
                    if one:
                        record = await driver.fetchrow(compiled.sql, *args)
                        rows = [] if record is None else [record]
                    else:
                        rows = await driver.fetch(compiled.sql, *args)
            except BaseException as exc:
                lost = driver.is_closed() or not isinstance(
                    exc, asyncpg.PostgresError | asyncpg.InterfaceError
                )
                if lost:
                    # Lost, timed out or cancelled mid-statement: its state is unknown, so it
                    # is closed now (outside a greenlet SQLAlchemy terminates it at once).
                    raw.invalidate(exc if isinstance(exc, Exception) else None)
                    raw.close()
                else:
                    await greenlet_spawn(raw.close)
                error = translated(exc, compiled.sql, args, invalidated=lost)
                if error is exc:
                    raise
                raise error from exc
            await greenlet_spawn(raw.close)
            if refused:
                raise GuardRefusedError("the connection's guard refused the statement")
            return rows
        finally:
            if slots is not None:
                slots.release()


class _GuardedReads:
    """:class:`DriverReads` whose statements each ask a guard first (see ``guarded``)."""

    def __init__(self, reads: DriverReads, guard: Guard) -> None:
        self._reads = reads
        self._guard = guard

    async def first(self, read: Read, **values: Any) -> Row | None:
        """Return the statement's first row, or None; raises as :meth:`DriverReads.first`.

        Raises:
            GuardRefusedError: the guard refused the connection.
        """
        rows = await self._reads._run(read, values, one=True, guard=self._guard)
        return rows[0] if rows else None

    async def all(self, read: Read, **values: Any) -> Sequence[Row]:
        """Return the statement's rows; raises as :meth:`first`."""
        return await self._reads._run(read, values, one=False, guard=self._guard)


def translated(
    exc: BaseException, sql: str, args: Sequence[Any], *, invalidated: bool
) -> BaseException:
    """Return the exception SQLAlchemy's execution would raise for ``exc`` of asyncpg.

    * an argument asyncpg cannot encode (a bad input, not an outage):
      ``sqlalchemy.exc.DataError``;
    * another asyncpg interface error: ``sqlalchemy.exc.InterfaceError``;
    * an error of PostgreSQL (a statement timeout, a lost connection):
      ``sqlalchemy.exc.DBAPIError``;

    each with ``connection_invalidated`` set from ``invalidated``. Anything else (``OSError``,
    a ``TimeoutError`` of the client's command timeout, a cancellation) is returned as it is.
    """
    if isinstance(exc, asyncpg.InterfaceError):
        if isinstance(exc, ValueError):
            return sa_exc.DataError(sql, args, exc)
        return sa_exc.InterfaceError(sql, args, exc, connection_invalidated=invalidated)
    if isinstance(exc, asyncpg.PostgresError):
        return sa_exc.DBAPIError(sql, args, exc, connection_invalidated=invalidated)
    return exc
