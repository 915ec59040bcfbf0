from __future__ import annotations

import asyncio

import fakeredis
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from cache import AutoPipeline, CacheUnavailableError


async def test_reads_of_one_loop_iteration_share_one_command(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    await redis.mset({f"k{i}": f"v{i}" for i in range(50)})
    pipeline = AutoPipeline(redis)
    values = await asyncio.gather(*(pipeline.get(f"k{i}") for i in range(50)), pipeline.get("no"))
    assert values == [f"v{i}".encode() for i in range(50)] + [None]
    assert (pipeline.batches, pipeline.keys) == (1, 51)


async def test_a_lone_read_is_sent_in_the_same_iteration(redis: fakeredis.FakeAsyncRedis) -> None:
    await redis.set("k", "v")
    pipeline = AutoPipeline(redis)
    assert await pipeline.get("k") == b"v"
    assert await pipeline.get("k") == b"v"
    assert (pipeline.batches, pipeline.keys) == (2, 2)


async def test_a_full_batch_is_sent_without_waiting_for_the_iteration(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    pipeline = AutoPipeline(redis, max_batch=10)
    await asyncio.gather(*(pipeline.get(f"k{i}") for i in range(25)))
    assert (pipeline.batches, pipeline.keys) == (3, 25)


class _FailingRedis:
    """Stands for a client whose connection broke: every command raises."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def get(self, key: str) -> bytes | None:
        raise self.error

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        raise self.error


@pytest.mark.parametrize(
    "error", [RedisConnectionError("reset"), OSError("broken pipe"), AttributeError("NoneType")]
)
async def test_any_failure_of_the_command_fails_every_read_as_unavailable(
    error: Exception,
) -> None:
    pipeline = AutoPipeline(_FailingRedis(error))  # type: ignore[arg-type]
    results = await asyncio.gather(pipeline.get("a"), pipeline.get("b"), return_exceptions=True)
    assert all(isinstance(r, CacheUnavailableError) for r in results), results
    assert all(r.__cause__ is error for r in results if isinstance(r, BaseException))


async def test_a_cancelled_read_leaves_the_others_of_its_batch_answered(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    await redis.set("k", "v")
    pipeline = AutoPipeline(redis)
    first, second = pipeline.get("k"), pipeline.get("k")
    first.cancel()
    assert await second == b"v"
    assert first.cancelled()
