"""docker-compose.yml and k8s/ are validated offline and kept true to the code (env names, ports)."""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from onair.devstack import Devstack

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.32.0"


def _kustomize(path: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to build the kustomize manifests (Debian package kubectl)"
    out = subprocess.run([kubectl, "kustomize", str(ROOT / path)], capture_output=True, text=True, check=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_matches_the_compose_spec() -> None:
    checker = shutil.which("check-jsonschema", path=str(Path(__import__("sys").executable).parent))
    assert checker
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overlay", ["k8s/base", "k8s/overlays/staging"])
def test_kustomize_builds_valid_kubernetes_objects(overlay: str) -> None:
    import kubernetes_validate

    docs = _kustomize(overlay)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_staging_overlay_puts_everything_in_its_namespace() -> None:
    docs = _kustomize("k8s/overlays/staging")
    namespaced = [d for d in docs if d["kind"] != "Namespace"]
    assert {d["metadata"].get("namespace") for d in namespaced} == {"onair-staging"}


def test_same_environment_names_everywhere(devstack: Devstack) -> None:
    """The devstack's exports, compose's shared env and the k8s config name the same settings."""
    exported = set(devstack.env()) - {"DATABASE_URL"}
    compose_env = set(_compose()["x-onair-env"])
    k8s = _kustomize("k8s/base")
    config = next(
        d for d in k8s if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("onair-config")
    )
    secret = next(d for d in k8s if d["kind"] == "Secret" and d["metadata"]["name"].startswith("onair-s3"))
    k8s_env = set(config["data"]) | set(secret["data"])
    assert exported <= compose_env
    assert exported <= k8s_env


def test_infrastructure_ports_match_between_compose_and_k8s() -> None:
    compose = _compose()["services"]
    k8s_ports = {
        d["metadata"]["name"]: {p["port"] for p in d["spec"]["ports"]}
        for d in _kustomize("k8s/base")
        if d["kind"] == "Service"
    }
    for name, port in {"valkey": 6379, "nats": 4222, "kafka": 9092, "postgres": 5432, "minio": 9000}.items():
        assert f"{port}:{port}" in compose[name]["ports"]
        assert port in k8s_ports[name]
