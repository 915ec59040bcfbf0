"""The monitoring files: the Grafana dashboard, its provisioning, Prometheus and compose.

The dashboard's queries may only name metric families that the service exports; the list is
the contract's (``/metrics`` families, names fixed), and ``tests/service/test_metrics.py``
checks that a served app exports each of them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "content-service.json"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"

#: The contract's ``/metrics`` families and their types.
FAMILIES = {
    "content_cache_requests_total": "counter",
    "content_cache_load_seconds": "histogram",
    "http_requests_total": "counter",
    "http_request_duration_seconds": "histogram",
    "content_db_pool_connections": "gauge",
    "content_redis_pool_connections": "gauge",
    "content_outbox_backlog": "gauge",
    "content_breaker_open": "gauge",
    "content_warming_keys_total": "counter",
}
_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Return the metric names a PromQL expression selects (functions and labels left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    names = set()
    identifier = r"(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*(?![A-Za-z0-9_:]|\s*\()"
    for match in re.finditer(identifier, expr):
        word = match.group()
        if word not in _PROMQL_WORDS and not re.fullmatch(r"\d*e\d*|Inf|NaN", word):
            names.add(word)
    return names


def family_of(name: str) -> str | None:
    """Return the contract family a sample name belongs to (``*_bucket`` of a histogram...)."""
    if name in FAMILIES:
        return name
    base, _, suffix = name.rpartition("_")
    if FAMILIES.get(base) == "histogram" and suffix in ("bucket", "sum", "count"):
        return base
    return None


def expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every query of the dashboard: its panels' targets and its template variables."""
    found = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        found.append(query["query"] if isinstance(query, dict) else query)
    return found


def test_the_parser_finds_metric_names() -> None:
    assert metric_names(
        "histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket"
        '{route=~"/api.*"}[5m]))) / on (route) group_left sum(up offset 5m)'
    ) == {"http_request_duration_seconds_bucket", "up"}
    assert metric_names("label_values(content_cache_requests_total, namespace)") == {
        "content_cache_requests_total",
        "namespace",
    }


def test_dashboard_queries_only_exported_metrics_and_show_every_family() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used: set[str] = set()
    for expr in expressions(dashboard):
        if expr.startswith("label_values("):  # label_values(metric, label)
            expr = expr.removeprefix("label_values(").split(",")[0]
        for name in metric_names(expr):
            family = family_of(name)
            assert family is not None, f"{name!r} (in {expr!r}) is not a metric the service exports"
            used.add(family)
    assert used == set(FAMILIES), f"no panel shows {set(FAMILIES) - used}"


def test_dashboard_panels_are_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    uids = {d["uid"] for d in datasources["datasources"]}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] and dashboard["title"]
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] in uids, panel["title"]
    # Panels of one row do not overlap.
    cells = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, panel["title"]
                cells.add((x, y))


def test_provisioning_prometheus_and_compose_agree() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
    mounts = dict(v.removesuffix(":ro").split(":", 1) for v in services["grafana"]["volumes"])
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "content-service.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == mounts["./deploy/grafana/dashboards"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"

    prometheus = yaml.safe_load(PROMETHEUS.read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    # Every replica is a target of its own (nginx's upstream lists the same).
    (targets,) = (static["targets"] for static in job["static_configs"])
    replicas = [name for name in services if re.fullmatch(r"service-\d+", name)]
    assert sorted(targets) == sorted(f"{r}:{services[r]['expose'][0]}" for r in replicas)
    # The stats token reaches Prometheus through the file its entrypoint writes.
    token_file = job["authorization"]["credentials_file"]
    entrypoint = " ".join(services["prometheus"]["entrypoint"])
    assert f'"$$STATS_TOKEN" > {token_file}' in entrypoint, entrypoint
    assert "STATS_TOKEN" in services["prometheus"]["environment"]
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"


def test_prometheus_configuration_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI_REQUIRE_PROMTOOL"):
            pytest.fail("promtool is missing and CI_REQUIRE_PROMTOOL is set")
        pytest.skip("promtool is absent (Debian: apt-get install prometheus)")
    # --syntax-only: the token file exists only inside the container.
    result = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(PROMETHEUS)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
