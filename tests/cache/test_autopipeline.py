from __future__ import annotations

import asyncio

import fakeredis
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from cache import AutoPipeline, CacheUnavailableError


async def test_reads_of_one_loop_iteration_share_one_command(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    await redis.mset({f"k{i}": f"v{i}" for i in range(50)})
    pipeline = AutoPipeline(redis)
    values = await asyncio.gather(*(pipeline.get(f"k{i}") for i in range(50)), pipeline.get("no"))
    assert values == [f"v{i}".encode() for i in range(50)] + [None]
    assert (pipeline.batches, pipeline.commands) == (1, 51)


async def test_a_lone_read_is_sent_in_the_same_iteration(redis: fakeredis.FakeAsyncRedis) -> None:
    await redis.set("k", "v")
    pipeline = AutoPipeline(redis)
    assert await pipeline.get("k") == b"v"
    assert await pipeline.get("k") == b"v"
    assert (pipeline.batches, pipeline.commands) == (2, 2)


async def test_a_full_batch_is_sent_without_waiting_for_the_iteration(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    pipeline = AutoPipeline(redis, max_batch=10)
    await asyncio.gather(*(pipeline.get(f"k{i}") for i in range(25)))
    assert (pipeline.batches, pipeline.commands) == (3, 25)


class _BrokenConnection:
    """Stands for a connection that broke mid-answer: every read raises ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.disconnected = False

    def pack_commands(self, commands: list[tuple[object, ...]]) -> list[bytes]:
        return [b""]

    async def send_packed_command(self, data: list[bytes]) -> None:
        return None

    async def read_response(self) -> object:
        raise self.error

    async def disconnect(self) -> None:
        self.disconnected = True


class _Pool:
    def __init__(self, connection: _BrokenConnection) -> None:
        self.connection = connection
        self.released = 0

    async def get_connection(self) -> _BrokenConnection:
        return self.connection

    async def release(self, connection: _BrokenConnection) -> None:
        self.released += 1


class _Client:
    def __init__(self, pool: _Pool) -> None:
        self.connection_pool = pool


@pytest.mark.parametrize(
    "error", [RedisConnectionError("reset"), OSError("broken pipe"), AttributeError("NoneType")]
)
async def test_any_failure_of_the_connection_fails_every_command_and_closes_it(
    error: Exception, redis: fakeredis.FakeAsyncRedis
) -> None:
    connection = _BrokenConnection(error)
    pool = _Pool(connection)
    pipeline = AutoPipeline(_Client(pool))  # type: ignore[arg-type]
    script = redis.register_script("return 1")
    results = await asyncio.gather(
        pipeline.get("a"), pipeline.get("b"), pipeline.run_script(script, [], []),
        return_exceptions=True,
    )  # fmt: skip
    assert all(isinstance(r, CacheUnavailableError) for r in results), results
    assert all(r.__cause__ is error for r in results if isinstance(r, BaseException))
    assert connection.disconnected and pool.released == 1


async def test_scripts_share_the_batch_of_the_reads_and_survive_a_script_flush(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    await redis.set("k", "v")
    script = redis.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    pipeline = AutoPipeline(redis)
    results = await asyncio.gather(
        pipeline.get("k"), *(pipeline.run_script(script, ["n"], [2]) for _ in range(5))
    )
    assert results[0] == b"v" and sorted(results[1:]) == [2, 4, 6, 8, 10]
    assert (pipeline.batches, pipeline.commands) == (1, 6)
    await redis.script_flush()
    assert await pipeline.run_script(script, ["n"], [1]) == 11


async def test_an_error_answer_fails_its_own_command_only(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    await redis.set("k", "v")
    failing = redis.register_script("return redis.error_reply('no')")
    pipeline = AutoPipeline(redis)
    answers: list[object] = await asyncio.gather(
        pipeline.get("k"), pipeline.run_script(failing, [], []), return_exceptions=True
    )
    value, error = answers
    assert value == b"v" and isinstance(error, ResponseError)


async def test_a_cancelled_read_leaves_the_others_of_its_batch_answered(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    await redis.set("k", "v")
    pipeline = AutoPipeline(redis)
    first, second = pipeline.get("k"), pipeline.get("k")
    first.cancel()
    assert await second == b"v"
    assert first.cancelled()


async def test_an_error_answer_to_a_lone_read_fails_it_open(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    await redis.sadd("a-set", "x")  # GET of a set answers WRONGTYPE
    pipeline = AutoPipeline(redis)
    with pytest.raises(CacheUnavailableError) as caught:
        await pipeline.get("a-set")
    assert isinstance(caught.value.__cause__, ResponseError)


async def test_a_batch_cancelled_at_shutdown_fails_its_reads_open() -> None:
    class _Stuck(_BrokenConnection):
        async def read_response(self) -> object:
            await asyncio.sleep(3600)
            return None

    pipeline = AutoPipeline(_Client(_Pool(_Stuck(OSError()))))  # type: ignore[arg-type]
    read = pipeline.get("k")
    await asyncio.sleep(0.01)
    for task in list(pipeline._sending):
        task.cancel()
    with pytest.raises(CacheUnavailableError):
        await read
