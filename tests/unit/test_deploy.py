"""Deployment files are valid for the tools that read them."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
# the oldest Kubernetes the manifests support (persistentVolumeClaimRetentionPolicy
# is GA from 1.32) and the newest whose schemas kubernetes-validate bundles
K8S_VERSIONS = ("1.32", kubernetes_validate.latest_version())


def _compose() -> list[str]:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 check=False).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed "
                "(./dev deps installs Debian's docker-compose)")


def test_docker_compose_config_is_valid() -> None:
    out = subprocess.run([*_compose(), "config", "-q"], cwd=ROOT, capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_compose_runs_the_whole_stack() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for service in ("kafka:", "worker-1:", "worker-2:", "prometheus:", "alertmanager:",
                    "grafana:"):
        assert f"\n  {service}" in text
    assert "\n  worker:" not in text, "the single worker service is now worker-1/worker-2"
    compose = yaml.safe_load(text)
    services = compose["services"]
    mounts = {}
    for name in ("worker-1", "worker-2"):
        env = services[name]["environment"]
        state_dir = env["KPI_STATE_DIR"]
        volumes = [v for v in services[name]["volumes"] if v.split(":")[1] == state_dir]
        assert len(volumes) == 1, f"{name}: no volume mounted at KPI_STATE_DIR {state_dir}"
        volume = volumes[0].split(":")[0]
        assert volume in compose["volumes"], f"{name}: {volume} is not a named volume"
        mounts[name] = volume
        assert env["KPI_WORKER_ID"] == name
    assert mounts["worker-1"] != mounts["worker-2"], "each worker needs its own volume"
    assert services["worker-1"]["ports"] == ["127.0.0.1:6066:6066"]
    assert services["worker-2"]["ports"] == ["127.0.0.1:6067:6066"]
    prometheus = (ROOT / "deploy" / "prometheus" / "prometheus.docker.yml").read_text()
    # scraped on the metrics port, which each worker serves (from a process of its own)
    assert "worker-1:6068" in prometheus
    assert "worker-2:6068" in prometheus
    for name in ("worker-1", "worker-2"):
        assert services[name]["environment"]["KPI_METRICS_PORT"] == "6068"
    # the collector: its own service, bound to loopback on the host, scraped too
    collector = services["collector"]
    assert collector["command"] == ["collect"]
    assert collector["environment"]["KPI_COLLECT_HOST"] == "0.0.0.0"
    assert collector["ports"] == ["127.0.0.1:6070:6070"]
    assert "collector:6070" in prometheus


def _manifests() -> list[Path]:
    return sorted(p for p in [*K8S.glob("*.yaml"), *K8S.glob("*.yml")]
                  if p.name != "kustomization.yaml")


def _validate(doc: dict[str, Any], version: str) -> None:
    """Strict schema validation (unknown fields are errors); a kind without a schema
    is an error too, not the command line's warning."""
    kubernetes_validate.validate(doc, version, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    for name in listed:
        assert (K8S / name).is_file(), f"kustomization.yaml lists missing {name}"
    assert sorted(listed) == sorted(p.name for p in _manifests())


def test_kubernetes_manifests_match_the_official_schemas() -> None:
    kinds = set()
    for path in _manifests():
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert docs, f"{path.name} is empty"
        for doc in docs:
            kinds.add(doc["kind"])
            for version in K8S_VERSIONS:
                try:
                    _validate(doc, version)
                except kubernetes_validate.ValidationError as exc:
                    where = ".".join(str(p) for p in exc.path)
                    pytest.fail(f"{path.name}: {doc['kind']} does not validate against "
                                f"Kubernetes {version}: {where}: {exc.message}")
    assert {"StatefulSet", "Service", "ConfigMap"} <= kinds


def test_worker_statefulset_has_a_volume_per_worker() -> None:
    sts = yaml.safe_load((K8S / "statefulset.yaml").read_text())
    spec = sts["spec"]
    assert spec["replicas"] == 2
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    state_dir = env["KPI_STATE_DIR"]["value"]
    claims = [t["metadata"]["name"] for t in spec["volumeClaimTemplates"]]
    assert [m["name"] for m in container["volumeMounts"]
            if m["mountPath"] == state_dir] == claims[:1]
    assert env["KPI_WORKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/health?ready=1"
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] > 30
    headless = yaml.safe_load((K8S / "service-headless.yaml").read_text())
    assert headless["spec"]["clusterIP"] == "None"
    assert spec["serviceName"] == headless["metadata"]["name"]


def test_schema_check_rejects_a_broken_manifest(tmp_path: Path) -> None:
    sts = yaml.safe_load((K8S / "statefulset.yaml").read_text())
    broken_replicas = copy.deepcopy(sts)
    broken_replicas["spec"]["replicas"] = "two"
    no_selector = copy.deepcopy(sts)
    del no_selector["spec"]["selector"]  # required
    unknown_field = copy.deepcopy(sts)
    unknown_field["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    for name, doc in (("replicas", broken_replicas), ("selector", no_selector),
                      ("typo", unknown_field)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc))
        with pytest.raises(kubernetes_validate.ValidationError):
            _validate(yaml.safe_load(path.read_text()), K8S_VERSIONS[-1])


def test_prometheus_scrapes_the_port_the_worker_serves_metrics_on() -> None:
    service = yaml.safe_load((K8S / "service.yaml").read_text())
    config = yaml.safe_load((K8S / "configmap.yaml").read_text())
    sts = yaml.safe_load((K8S / "statefulset.yaml").read_text())
    port = service["metadata"]["annotations"]["prometheus.io/port"]
    assert config["data"]["KPI_METRICS_PORT"] == port
    container = sts["spec"]["template"]["spec"]["containers"][0]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named["metrics"] == int(port)
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]}["metrics"] == int(port)
