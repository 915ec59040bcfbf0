"""``/metrics`` of one process: families, labels by route template, gauges, auth, promtool."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.apps import EDITOR, Api
from tests.deploy.test_monitoring import FAMILIES as GRAFANA_FAMILIES


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Return the ``(labels, value)`` of every sample called ``name`` in an exposition."""
    return [
        (s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def promtool_check(text: str) -> None:
    """Run ``promtool check metrics`` on ``text``; skip when promtool is absent (unless CI)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI_REQUIRE_PROMTOOL"):
            pytest.fail("promtool is not installed but CI_REQUIRE_PROMTOOL is set")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


async def scrape(api: Api, **headers: str) -> str:
    r = await api.client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return r.text


async def test_http_metrics_are_labelled_by_route_template_never_by_path(
    api: Api, content: dict[str, Any]
) -> None:
    for _ in range(3):
        assert (await api.client.get("/api/v1/articles/hello-world")).status_code == 200
    assert (await api.client.get("/api/v1/articles/no-such-article")).status_code == 404
    assert (await api.client.get("/no/such/path")).status_code == 404
    assert (await api.client.delete("/health/live")).status_code == 405
    text = await scrape(api)

    counts = {
        (labels["route"], labels["method"], labels["status"]): value
        for labels, value in samples(text, "http_requests_total")
    }
    assert counts[("/api/v1/articles/{slug}", "GET", "200")] == 3
    assert counts[("/api/v1/articles/{slug}", "GET", "404")] == 1
    assert counts[("unmatched", "GET", "404")] == 1
    assert counts[("/health/live", "DELETE", "405")] == 1
    assert "hello-world" not in text and "no-such" not in text and "/no/such" not in text
    durations = {
        (labels["route"], labels["method"]): value
        for labels, value in samples(text, "http_request_duration_seconds_count")
    }
    assert durations[("/api/v1/articles/{slug}", "GET")] == 4
    # The scrape counts itself only once its answer has gone: the next scrape shows it.
    assert not any(route == "/metrics" for route, _, _ in counts)
    again = await scrape(api)
    assert ("/metrics", "GET", "200") in {
        (labels["route"], labels["method"], labels["status"])
        for labels, _ in samples(again, "http_requests_total")
    }


async def test_cache_results_and_load_times_are_exported_at_each_flush(
    api: Api, content: dict[str, Any]
) -> None:
    await api.state.invalidator.purge(None)
    await api.state.stats.flush()
    before = await scrape(api)
    assert (await api.client.get("/api/v1/articles/hello-world")).headers["x-cache"] == "MISS"
    assert (await api.client.get("/api/v1/articles/hello-world")).headers["x-cache"] == "HIT"
    await api.state.stats.flush()
    after = await scrape(api)

    def results(text: str) -> dict[tuple[str, str], float]:
        return {
            (labels["namespace"], labels["result"]): value
            for labels, value in samples(text, "content_cache_requests_total")
        }

    grown = {k: v - results(before).get(k, 0) for k, v in results(after).items()}
    assert grown[("article", "miss")] == 1 and grown[("article", "hit")] == 1
    loads = {
        labels["namespace"]: value
        for labels, value in samples(after, "content_cache_load_seconds_count")
    }
    assert loads["article"] >= 1
    # The other counters of the cache go to their own family, not to the results.
    assert {r for _, r in results(after)} <= {"hit", "miss", "stale", "bypass"}


async def test_pool_breaker_outbox_and_warming_gauges(api: Api) -> None:
    api.state.metrics.set_outbox_backlog(7)
    api.state.metrics.count_warmed("done", 3)
    api.state.metrics.count_warmed("error")
    with pytest.raises(ValueError, match="warming result"):
        api.state.metrics.count_warmed("lost")
    api.state.redis_breaker.trip()
    text = await scrape(api)

    db = {labels["state"]: value for labels, value in samples(text, "content_db_pool_connections")}
    assert set(db) == {"size", "checked_out", "checked_in", "overflow"}
    assert db["size"] == api.state.settings.db_pool_size
    assert db["checked_out"] == 0  # a scrape reads memory only
    redis = {
        labels["state"]: value for labels, value in samples(text, "content_redis_pool_connections")
    }
    assert redis["max"] == api.state.settings.redis_max_connections
    breakers = {labels["backend"]: value for labels, value in samples(text, "content_breaker_open")}
    assert breakers == {"redis": 1.0, "database": 0.0}
    assert samples(text, "content_outbox_backlog") == [({}, 7.0)]
    warmed = {
        labels["result"]: value for labels, value in samples(text, "content_warming_keys_total")
    }
    assert warmed == {"done": 3.0, "skipped": 0.0, "error": 1.0}


async def test_metrics_need_the_stats_token_when_one_is_set(app_on: Any, servers: Any) -> None:
    async with app_on(servers.database_url, servers.redis_url, stats_token="s3cret") as api:
        assert (await api.client.get("/metrics")).status_code == 401
        await scrape(api, authorization="Bearer s3cret")


async def test_exposition_of_one_process_passes_promtool(api: Api, content: dict[str, Any]) -> None:
    await api.client.get("/api/v1/articles/hello-world")
    await api.state.stats.flush()
    promtool_check(await scrape(api))


async def test_the_service_exports_every_family_the_grafana_dashboard_reads(api: Api) -> None:
    scrape = await api.client.get("/metrics")
    assert scrape.status_code == 200
    exported = dict(re.findall(r"^# TYPE (\S+) (\S+)$", scrape.text, flags=re.M))
    for family, kind in GRAFANA_FAMILIES.items():
        # A counter's TYPE line names it with or without _total, by exposition version.
        names = {family, family.removesuffix("_total")}
        assert kind in {exported.get(name) for name in names}, (family, kind)


async def test_near_cache_families_show_its_answers_and_this_workers_near_cache(
    api: Api, content: dict[str, Any]
) -> None:
    from tests.service.test_stats import read_until_near_hit

    await api.state.stats.flush()
    before = await scrape(api)
    reads = await read_until_near_hit(api.client, "/api/v1/articles/hello-world")
    await api.state.stats.flush()
    text = await scrape(api)

    def l1_results(exposition: str) -> dict[tuple[str, str], float]:
        return {
            (labels["namespace"], labels["result"]): value
            for labels, value in samples(exposition, "content_cache_l1_requests_total")
        }

    grown = {k: v - l1_results(before).get(k, 0) for k, v in l1_results(text).items()}
    assert 1 <= grown[("article", "hit")] < reads
    # Counted in the reads' results too, and nowhere among the other events.
    results = {
        (labels["namespace"], labels["result"]): value
        for labels, value in samples(text, "content_cache_requests_total")
    }
    assert results[("article", "hit")] >= grown[("article", "hit")]
    events = {labels["event"] for labels, _ in samples(text, "content_cache_events_total")}
    assert "l1_hits" not in events

    def gauge(name: str) -> float:
        ((labels, value),) = samples(text, name)
        assert labels == {}  # one process: no pid label
        return value

    assert gauge("content_cache_l1_entries") >= 1
    assert gauge("content_cache_l1_max_bytes") == api.state.settings.cache_l1_max_bytes
    assert 0 < gauge("content_cache_l1_bytes") <= gauge("content_cache_l1_max_bytes")
    assert gauge("content_cache_l1_lease_valid") == 1
    for family in ("evictions", "fills_refused", "lapsed_leases", "invalidations"):
        assert samples(text, f"content_cache_l1_{family}_total"), family
    assert samples(text, "content_cache_l1_evictions_total") == [({}, 0.0)]
    assert samples(text, "content_cache_l1_lapsed_leases_total") == [({}, 0.0)]
    promtool_check(text)

    # A write's invalidation reaches the near cache, which drops the article.
    ((_, applied),) = samples(text, "content_cache_l1_invalidations_total")
    r = await api.client.patch(
        "/api/v1/articles/hello-world", json={"summary": "Changed"}, headers=EDITOR
    )
    assert r.status_code == 200, r.text
    after = await scrape(api)
    ((_, applied_after),) = samples(after, "content_cache_l1_invalidations_total")
    assert applied_after > applied


async def test_a_worker_without_near_cache_reports_zero_figures(app_on: Any, servers: Any) -> None:
    async with app_on(servers.database_url, servers.redis_url, cache_l1_max_bytes=0) as api:
        text = await scrape(api)
        for name in (
            "content_cache_l1_entries",
            "content_cache_l1_bytes",
            "content_cache_l1_max_bytes",
            "content_cache_l1_lease_valid",
        ):
            assert samples(text, name) == [({}, 0.0)], name
