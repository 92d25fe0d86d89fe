"""What the deploy checks read: the compose file, the kustomize builds, the Dockerfile and the code.

Everything here is offline: ``kubectl kustomize`` renders local files and the settings classes are
read by import (the services' apps are built by the ``code_facts`` fixture in conftest.py, in a
subprocess). Each file is read once per test session.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from onair.cli.serve import service_exists
from onair_services.registry import SERVICES

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.32.0"
OVERLAYS = ("k8s/base", "k8s/overlays/staging", "k8s/overlays/staging-external")
ONAIR_IMAGE = "onair:dev"

# Settings classes every service may read (besides its own ``onair_services.<name>.settings``).
SHARED_SETTINGS_MODULES = (
    "onair.config",
    "onair.service.settings",
    "onair.auth.settings",
    "onair_services.registry",
)
# Names read outside settings classes, and the module that reads each (a test checks it still does).
READ_ELSEWHERE = {
    "ONAIR_HOST": "onair.cli.serve",  # `onair serve --host` (typer envvar)
    "ONAIR_PORT": "onair.cli.serve",  # `onair serve` default port
    "FORWARDED_ALLOW_IPS": "uvicorn.config",  # proxy headers, under `onair serve`
    "AWS_ACCESS_KEY_ID": "botocore.credentials",  # the S3 client's credential chain
    "AWS_SECRET_ACCESS_KEY": "botocore.credentials",
    "AWS_DEFAULT_REGION": "botocore.configprovider",
}


# -- code -------------------------------------------------------------------------------------------
def settings_env_names(cls: type[BaseSettings]) -> set[str]:
    """The environment variables a pydantic-settings class reads (prefix + field, or its aliases)."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {c.upper() for c in alias.choices if isinstance(c, str)}
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


def _module_settings(module_name: str) -> set[str]:
    module = importlib.import_module(module_name)
    names: set[str] = set()
    for cls_name, cls in inspect.getmembers(module, inspect.isclass):
        if cls_name.startswith("_") or cls.__module__ != module.__name__:
            continue
        if issubclass(cls, BaseSettings):
            names |= settings_env_names(cls)
    return names


@functools.cache
def shared_env_names() -> frozenset[str]:
    names: set[str] = set(READ_ELSEWHERE)
    for module_name in SHARED_SETTINGS_MODULES:
        names |= _module_settings(module_name)
    return frozenset(names)


@functools.cache
def env_names_for(service: str | None) -> frozenset[str]:
    """Every variable a container of ``service`` may be given: shared settings + its own settings.py."""
    names = set(shared_env_names())
    own = f"onair_services.{service}.settings"
    if service and service_exists(service) and importlib.util.find_spec(own) is not None:
        names |= _module_settings(own)
    return frozenset(names)


def written_services() -> list[str]:
    """The registry's services whose package (with its app module) exists already."""
    return [name for name in SERVICES if service_exists(name)]


@dataclass(frozen=True)
class CodeFacts:
    """What the code says (the ``code_facts`` fixture): routes per written service, metric names."""

    routes: dict[str, set[str]]
    migrations: dict[str, str | None]
    stores: dict[str, set[str]]  # valkey / nats / kafka its ServiceSpec opens
    metrics: set[str]


# -- Dockerfile -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    name: str
    base: str
    lines: list[str]


def dockerfile_stages() -> list[Stage]:
    """The Dockerfile's stages with their instructions (continuation lines joined)."""
    text = (ROOT / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    stages: list[Stage] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if m:
            stages.append(Stage(name=m.group(2) or str(len(stages)), base=m.group(1), lines=[]))
        elif stages:
            stages[-1].lines.append(line)
    return stages


def image_env() -> dict[str, str]:
    """ENV of the runtime (last) stage and the stages it is built on."""
    stages = {s.name: s for s in dockerfile_stages()}
    chain: list[Stage] = []
    stage: Stage | None = dockerfile_stages()[-1]
    while stage is not None:
        chain.insert(0, stage)
        stage = stages.get(stage.base)
    env: dict[str, str] = {}
    for st in chain:
        for line in st.lines:
            if line.upper().startswith("ENV "):
                env.update(dict(re.findall(r"(\w+)=(\S+)", line[4:])))
    return env


# -- compose ----------------------------------------------------------------------------------------
@functools.cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def compose_onair() -> dict[str, dict[str, Any]]:
    """Compose services running the onair image (services and migrations)."""
    return {n: s for n, s in compose()["services"].items() if s.get("image") == ONAIR_IMAGE}


def compose_env(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


# -- kubernetes -------------------------------------------------------------------------------------
@functools.cache
def kustomize(path: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to build the kustomize manifests (Debian package kubectl)"
    out = subprocess.run([kubectl, "kustomize", str(ROOT / path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def objects(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def workloads(docs: tuple[dict[str, Any], ...]) -> Iterator[dict[str, Any]]:
    """Deployments, StatefulSets and Jobs (everything that makes pods)."""
    return (d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job"))


def pod_labels(docs: tuple[dict[str, Any], ...]) -> list[dict[str, str]]:
    return [w["spec"]["template"]["metadata"].get("labels", {}) for w in workloads(docs)]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels + matchExpressions In/NotIn/Exists/DoesNotExist)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def container_env_names(container: dict[str, Any], docs: tuple[dict[str, Any], ...]) -> set[str]:
    """Variables a container gets: ``env`` plus every key of its ``envFrom`` ConfigMaps/Secrets."""
    names = {e["name"] for e in container.get("env") or []}
    config_maps, secrets = objects(docs, "ConfigMap"), objects(docs, "Secret")
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            names |= set(config_maps[source["configMapRef"]["name"]].get("data") or {})
        if "secretRef" in source:
            names |= set(secrets[source["secretRef"]["name"]].get("data") or {})
    return names


def secret_value(docs: tuple[dict[str, Any], ...], name: str, key: str) -> str:
    import base64

    return base64.b64decode(objects(docs, "Secret")[name]["data"][key]).decode()
