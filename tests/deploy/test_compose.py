"""docker-compose.yml: replicas behind nginx, a migration job, secrets without defaults, profiles.

The structure is read from the file itself (YAML merge keys resolved); whether compose accepts
it is asked of ``docker-compose config``, in each profile, with and without the secrets.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
PROFILES = ("", "monitoring", "cluster")
SECRETS = {"API_TOKENS": "0123456789abcdef0123:editor", "STATS_TOKEN": "fedcba9876543210fedc"}

needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose is absent"
)

Service = dict[str, Any]


def services() -> dict[str, Service]:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    found: dict[str, Service] = compose["services"]
    return found


def compose_config(profile: str, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``docker-compose config -q`` in ``profile`` with only ``environment`` (and PATH)."""
    extra = ["--profile", profile] if profile else []
    return subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", *extra, "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], **environment},
    )


def upstream_servers(conf: str) -> list[tuple[str, int]]:
    """The ``server host:port`` lines of the ``upstream`` blocks of an nginx configuration."""
    found = []
    for block in re.findall(r"upstream\s+\S+\s*\{(.*?)\}", conf, flags=re.S):
        for host, port in re.findall(r"^\s*server\s+([\w.-]+):(\d+)", block, flags=re.M):
            found.append((host, int(port)))
    return found


def networks_of(service: Service) -> dict[str, list[str]]:
    """The networks a service is attached to, each with the service's aliases on it."""
    attached = service.get("networks", ["default"])
    if isinstance(attached, list):
        return {network: [] for network in attached}
    return {network: (options or {}).get("aliases", []) for network, options in attached.items()}


def resolve(network: str, host: str) -> set[str]:
    """The services that a container on ``network`` reaches as ``host`` (names and aliases)."""
    return {
        name
        for name, service in services().items()
        if network in networks_of(service)
        and (host == name or host in networks_of(service)[network])
    }


@needs_compose
@pytest.mark.parametrize("profile", PROFILES)
def test_each_profile_parses_with_the_secrets_set(profile: str) -> None:
    result = compose_config(profile, SECRETS)
    assert result.returncode == 0, result.stderr


@needs_compose
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(
    ("missing", "environment"),
    [
        ("API_TOKENS", {"STATS_TOKEN": SECRETS["STATS_TOKEN"]}),
        ("API_TOKENS", {**SECRETS, "API_TOKENS": ""}),
        ("STATS_TOKEN", {"API_TOKENS": SECRETS["API_TOKENS"]}),
    ],
)
def test_compose_refuses_to_start_without_a_secret(
    profile: str, missing: str, environment: dict[str, str]
) -> None:
    result = compose_config(profile, environment)
    assert result.returncode != 0, f"compose accepted the file without {missing}"
    assert f"set {missing}" in result.stderr, result.stderr


def test_secrets_have_no_default_values() -> None:
    raw = (ROOT / "docker-compose.yml").read_text()
    for name in SECRETS:
        uses = re.findall(rf"^\s+{name}: (.*)$", raw, flags=re.M)
        assert uses, f"{name} is not set anywhere"
        for value in uses:
            assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", value), f"{name}: {value}"


STANDALONE = ("service-1", "service-2")
CLUSTERED = ("service-cluster-1", "service-cluster-2")


@pytest.mark.parametrize(
    ("replicas", "migrate_name"), [(STANDALONE, "migrate"), (CLUSTERED, "migrate-cluster")]
)
def test_replicas_serve_without_migrating_after_the_one_shot_migration(
    replicas: tuple[str, ...], migrate_name: str
) -> None:
    found = services()
    migrate = found[migrate_name]
    assert migrate["command"] == ["content-service", "migrate"]
    assert migrate["restart"] == "no"
    assert len(replicas) >= 2
    hostnames = {found[name]["hostname"] for name in replicas}
    assert hostnames == set(replicas), "each replica is its own INSTANCE_NAME"
    for name in replicas:
        service = found[name]
        assert service["command"][:2] == ["content-service", "serve"], service["command"]
        assert "--no-migrate" in service["command"], service["command"]
        assert "ports" not in service, "replicas publish nothing: nginx does"
        assert service["depends_on"][migrate_name] == {
            "condition": "service_completed_successfully"
        }
        assert migrate["environment"]["DATABASE_URL"] == service["environment"]["DATABASE_URL"]
        assert service["image"] == migrate["image"], "the job and the replicas run one image"
        for secret in SECRETS:
            assert secret in service["environment"], f"{name} lacks {secret}"


@pytest.mark.parametrize(
    ("nginx_name", "replicas"), [("nginx", STANDALONE), ("nginx-cluster", CLUSTERED)]
)
def test_nginx_fronts_the_replicas_of_its_network(
    nginx_name: str, replicas: tuple[str, ...]
) -> None:
    found = services()
    nginx = found[nginx_name]
    assert nginx["image"].startswith("nginx:1.27"), nginx["image"]
    assert "./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    for name in replicas:
        assert nginx["depends_on"][name] == {"condition": "service_healthy"}
    conf = NGINX_CONF.read_text()
    listen = {int(port) for port in re.findall(r"^\s*listen\s+(\d+)", conf, flags=re.M)}
    published_to = {int(p.rpartition(":")[2]) for p in nginx["ports"]}
    assert published_to <= listen, f"ports {nginx['ports']}, nginx listens on {listen}"
    (network,) = networks_of(nginx)
    reached = set()
    for host, port in upstream_servers(conf):
        (service,) = resolve(network, host) or {f"nothing ({host})"}
        assert str(port) in found[service]["expose"], f"{service} does not expose {port}"
        reached.add(service)
    assert reached == set(replicas), f"nginx.conf's upstream reaches {reached} on {network}"


def test_the_cluster_profile_runs_a_redis_cluster_and_points_its_service_at_it() -> None:
    found = services()
    nodes = {n: s for n, s in found.items() if n.startswith("redis-node-")}
    assert len(nodes) == 3
    for name, node in nodes.items():
        assert node["profiles"] == ["cluster"], name
        command = node["command"]
        assert command[command.index("--cluster-enabled") + 1] == "yes", name
    create = found["redis-cluster-create"]
    script = " ".join(create["command"])
    assert "redis-cli --cluster create" in script
    assert "--cluster-replicas 0" in script
    assert {f"{n}:6379" for n in nodes} <= set(script.split()), script
    for name in CLUSTERED:
        service = found[name]
        assert service["environment"]["REDIS_MODE"] == "cluster"
        urls = service["environment"]["REDIS_URL"].split(",")
        assert sorted(urls) == sorted(f"redis://{n}:6379" for n in nodes)
        assert service["depends_on"]["redis-cluster-create"] == {
            "condition": "service_completed_successfully"
        }
    for name in ("redis-cluster-create", *CLUSTERED, "migrate-cluster", "nginx-cluster"):
        assert found[name]["profiles"] == ["cluster"], name


def test_the_cluster_deployment_shares_no_database_with_the_standalone_one() -> None:
    # One database, one Redis: a second cache of the database would miss invalidations.
    found = services()
    url = found["service-1"]["environment"]["DATABASE_URL"]
    assert found["service-cluster-1"]["environment"]["DATABASE_URL"] == url
    host = re.search(r"@([\w.-]+):", url)
    assert host is not None, url
    reached = {
        name: {
            database
            for network in networks_of(found[name])
            for database in resolve(network, host.group(1))
        }
        for name in (*STANDALONE, *CLUSTERED)
    }
    expected = {
        **{name: {"postgres"} for name in STANDALONE},
        **{name: {"postgres-cluster"} for name in CLUSTERED},
    }
    assert reached == expected, reached
