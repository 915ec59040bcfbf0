"""The Kubernetes manifests (deploy/k8s): valid for the pinned versions, and safe to run.

Validation uses the schemas that kubernetes-validate bundles (strict: unknown fields fail), so
it needs no cluster and no network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kubernetes
from pydantic import ValidationError

from service.settings import Settings

K8S = Path(__file__).parents[2] / "deploy" / "k8s"
#: The oldest Kubernetes the manifests claim (README, "Deploying") and the newest checked.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
SECRET_KEYS = {"DATABASE_URL", "REDIS_URL", "API_TOKENS", "STATS_TOKEN"}
PLACEHOLDER = "REPLACE-ME"

Manifest = dict[str, Any]


def kustomization() -> Manifest:
    document: Manifest = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return document


def manifests() -> list[Manifest]:
    """Every resource the kustomization lists, in its order."""
    found: list[Manifest] = []
    for name in kustomization()["resources"]:
        found.extend(d for d in yaml.safe_load_all((K8S / name).read_text()) if d)
    return found


def one(kind: str, component: str | None = None) -> Manifest:
    matches = [
        m
        for m in manifests()
        if m["kind"] == kind
        and (
            component is None or m["metadata"]["labels"]["app.kubernetes.io/component"] == component
        )
    ]
    assert len(matches) == 1, f"expected one {kind} ({component}), found {len(matches)}"
    return matches[0]


def pod_spec(workload: Manifest) -> Manifest:
    spec: Manifest = workload["spec"]["template"]["spec"]
    return spec


def container(workload: Manifest) -> Manifest:
    (only,) = pod_spec(workload)["containers"]
    result: Manifest = only
    return result


def configured() -> dict[str, str]:
    data: dict[str, str] = one("ConfigMap")["data"]
    return data


def setting(name: str) -> float:
    """A number from the ConfigMap, else the setting's default."""
    value = configured().get(name.upper())
    if value is not None:
        return float(value)
    default = Settings.model_fields[name].default
    assert isinstance(default, int | float), name
    return float(default)


def test_every_manifest_file_is_in_the_kustomization() -> None:
    listed = set(kustomization()["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, f"listed {sorted(listed)}, on disk {sorted(on_disk)}"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_for_the_pinned_kubernetes_version(version: str) -> None:
    kinds = []
    for manifest in manifests():
        validated = kubernetes.validate(manifest, version, strict=True)
        assert validated == version.rpartition(".")[0], (manifest["kind"], validated)
        kinds.append(manifest["kind"])
    assert sorted(kinds) == sorted(
        [
            "ConfigMap",
            "Secret",
            "Job",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
        ]
    )


def test_the_validator_rejects_an_unknown_field() -> None:
    deployment = one("Deployment")
    container(deployment)["readinesProbe"] = container(deployment).pop("readinessProbe")
    with pytest.raises(kubernetes.ValidationError, match="readinesProbe"):
        kubernetes.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_the_deployment_serves_without_migrating_and_the_job_migrates() -> None:
    serve = container(one("Deployment"))["command"]
    assert serve[:2] == ["content-service", "serve"], serve
    assert "--no-migrate" in serve, serve
    assert configured()["MIGRATE_ON_START"] == "false"
    assert container(one("Job", "migrate"))["command"] == ["content-service", "migrate"]
    assert pod_spec(one("Job", "migrate"))["restartPolicy"] == "Never"


def test_the_deployment_has_startup_liveness_and_readiness_probes() -> None:
    serving = container(one("Deployment"))
    port_names = {p["name"] for p in serving["ports"]}
    expected = {
        "startupProbe": "/health/live",
        "livenessProbe": "/health/live",
        "readinessProbe": "/health/ready",
    }
    for probe, path in expected.items():
        get = serving[probe]["httpGet"]
        assert (get["path"], get["port"] in port_names) == (path, True), (probe, get)
    # The readiness probe outlasts the endpoint's own bound of 2 s per server.
    assert serving["readinessProbe"]["timeoutSeconds"] >= 3


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_pods_run_unprivileged_on_a_read_only_root(kind: str) -> None:
    workload = one(kind)
    pod = pod_spec(workload)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["automountServiceAccountToken"] is False
    running = container(workload)
    security = running["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    for resources in ("requests", "limits"):
        assert set(running["resources"][resources]) == {"cpu", "memory"}, (kind, resources)
    # Everything written goes to an emptyDir: /tmp, and the metrics folder of the workers.
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"]: m["name"] for m in running["volumeMounts"]}
    assert mounts.get("/tmp") in empty_dirs, mounts
    environment = {e["name"]: e.get("value") for e in running["env"]}
    if kind == "Deployment":
        assert mounts.get(environment["PROMETHEUS_MULTIPROC_DIR"]) in empty_dirs, mounts


def test_the_grace_period_covers_prestop_drain_and_the_longest_request() -> None:
    deployment = one("Deployment")
    pod = pod_spec(deployment)
    pre_stop = container(deployment)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep", pre_stop
    longest_request = setting("db_pool_timeout_seconds") + setting("db_statement_timeout_ms") / 1000
    closing = 2  # measured: closing the pools after the last request, seconds
    needed = float(pre_stop[1]) + setting("shutdown_drain_seconds") + longest_request + closing
    assert setting("shutdown_drain_seconds") > 0
    assert pod["terminationGracePeriodSeconds"] >= needed + 5, (
        f"grace {pod['terminationGracePeriodSeconds']} s < {needed} s needed + 5 s margin"
    )


def test_the_configmap_holds_only_known_settings_that_parse() -> None:
    names = {name.upper() for name in Settings.model_fields}
    unknown = set(configured()) - names
    assert not unknown, f"not settings: {sorted(unknown)}"
    assert not set(configured()) & SECRET_KEYS, "secrets belong in the Secret"
    Settings(_env_file=None, **{k.lower(): v for k, v in configured().items()})  # type: ignore[arg-type]


def test_the_secret_is_a_template_the_service_refuses_to_start_with() -> None:
    secret = one("Secret")
    assert "data" not in secret, "the template holds plain stringData, no encoded values"
    values: dict[str, str] = secret["stringData"]
    assert set(values) == SECRET_KEYS
    for key, value in values.items():
        assert PLACEHOLDER in value, f"{key} holds {value!r}, not a {PLACEHOLDER} placeholder"
    with pytest.raises(ValidationError, match="API_TOKENS"):
        Settings(_env_file=None, api_tokens=values["API_TOKENS"])


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_secrets_come_from_the_secret_by_reference(kind: str) -> None:
    secret_name = one("Secret")["metadata"]["name"]
    running = container(one(kind))
    needed = SECRET_KEYS if kind == "Deployment" else {"DATABASE_URL", "REDIS_URL"}
    referenced = {}
    for variable in running["env"]:
        if "valueFrom" in variable:
            ref = variable["valueFrom"]["secretKeyRef"]
            assert ref.get("optional", False) is False, variable
            referenced[variable["name"]] = (ref["name"], ref["key"])
        else:
            assert variable["name"] not in SECRET_KEYS, f"{variable['name']} is written inline"
    assert referenced == {k: (secret_name, k) for k in needed}


def test_service_budget_and_autoscaler_select_the_deployment() -> None:
    deployment = one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    service = one("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {p["name"] for p in container(deployment)["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    budget = one("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    autoscaler = one("HorizontalPodAutoscaler")
    target = autoscaler["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert autoscaler["spec"]["minReplicas"] >= 2
    assert budget["spec"]["maxUnavailable"] < autoscaler["spec"]["minReplicas"]
    (metric,) = autoscaler["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    # The job's pods are not the service's: no selector picks them.
    job_labels = one("Job", "migrate")["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= job_labels.items()
