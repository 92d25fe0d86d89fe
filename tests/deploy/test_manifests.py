"""docker-compose.yml and k8s/ are validated offline and kept true to the code (env names, ports)."""

import contextlib
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


def _known_env_names(service: str) -> set[str]:
    """Every environment variable a settings class of onair.config or the service reads."""
    import importlib
    import inspect

    from pydantic_settings import BaseSettings

    names: set[str] = {"DATABASE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
    names |= {"ONAIR_HOST", "ONAIR_PORT"}  # read by `onair serve`
    modules = [importlib.import_module("onair.config")]
    with contextlib.suppress(ModuleNotFoundError):
        modules.append(importlib.import_module(f"onair_services.{service}.settings"))
    for module in modules:
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseSettings) and cls is not BaseSettings:
                prefix = cls.model_config.get("env_prefix", "")
                names |= {f"{prefix}{field}".upper() for field in cls.model_fields}
    return names


def _compose_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in _compose()["services"].items() if "build" in s}


def test_compose_services_read_only_settings_that_exist() -> None:
    services = _compose_services()
    assert services, "compose runs no onair service"
    for name, svc in services.items():
        assert svc["command"] == [name]
        unknown = set(svc["environment"]) - _known_env_names(name)
        assert not unknown, f"{name}: compose sets variables no settings class reads: {sorted(unknown)}"


def test_k8s_deployments_are_true_to_the_services() -> None:
    import importlib

    from starlette.routing import Route

    for dep in (d for d in _kustomize("k8s/base") if d["kind"] == "Deployment"):
        name = dep["metadata"]["name"]
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        assert container["args"] == [name]
        assert {p["containerPort"] for p in container["ports"]} == {8000}  # the image's ONAIR_PORT
        unknown = {e["name"] for e in container.get("env", [])} - _known_env_names(name)
        assert not unknown, f"{name}: k8s sets variables no settings class reads: {sorted(unknown)}"
        app = importlib.import_module(f"onair_services.{name}.app").create_app()
        paths = {r.path for r in app.routes if isinstance(r, Route)}
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] in paths, f"{name}: {probe} path is not a route"
