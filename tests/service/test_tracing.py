from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.apps import Api


async def test_every_answer_carries_a_new_request_id_unless_the_client_sent_a_sane_one(
    api: Api, content: dict[str, Any]
) -> None:
    ids = {(await api.client.get("/api/v1/articles/hello-world")).headers["x-request-id"]}
    ids.add((await api.client.get("/api/v1/articles/nothing")).headers["x-request-id"])
    ids.add((await api.client.get("/health/live")).headers["x-request-id"])
    assert len(ids) == 3 and all(len(i) == 32 for i in ids)
    sent = {"X-Request-ID": "trace-42.a:b"}
    r = await api.client.get("/api/v1/articles/hello-world", headers=sent)
    assert r.headers["x-request-id"] == "trace-42.a:b"
    r = await api.client.get("/api/v1/articles?page=0", headers={"X-Request-ID": "bad id\t"})
    assert r.status_code == 400 and r.headers["x-request-id"] != "bad id\t"
    assert len(r.headers["x-request-id"]) == 32


async def test_log_lines_of_a_request_carry_its_id(
    api: Api, content: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # A foreign value at the entry's key makes the read log a warning, then reload.
    await api.state.redis.set(api.state.keys.article.key("hello-world").redis_key, b"\x09junk")
    with caplog.at_level(logging.WARNING, logger="cache"):
        r = await api.client.get("/api/v1/articles/hello-world", headers={"X-Request-ID": "req-7"})
    assert r.status_code == 200 and r.headers["x-cache"] == "MISS"
    warnings = [rec for rec in caplog.records if "undecodable" in rec.getMessage()]
    assert [getattr(rec, "request_id", None) for rec in warnings] == ["req-7"]
