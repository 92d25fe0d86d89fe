"""docker-compose.yml and k8s/ are valid documents (offline schemas) and name the same settings.

The checks against the code are in test_compose.py, test_kubernetes.py, test_image.py and
test_observability.py; shared readers in manifests.py.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from onair.devstack import Devstack

from .manifests import (
    K8S_VERSION,
    OVERLAYS,
    READ_ELSEWHERE,
    ROOT,
    compose,
    compose_env,
    compose_onair,
    container_env_names,
    kustomize,
    objects,
)


def test_compose_file_matches_the_compose_spec() -> None:
    checker = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert checker
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomize_builds_valid_kubernetes_objects(overlay: str) -> None:
    import kubernetes_validate

    docs = kustomize(overlay)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "an object is defined twice"


@pytest.mark.parametrize("overlay", ["k8s/overlays/staging", "k8s/overlays/staging-external"])
def test_staging_overlays_put_everything_in_their_namespace(overlay: str) -> None:
    docs = kustomize(overlay)
    namespaced = [d for d in docs if d["kind"] != "Namespace"]
    assert {d["metadata"].get("namespace") for d in namespaced} == {"onair-staging"}
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"] == ["onair-staging"]


def test_same_environment_names_everywhere(devstack: Devstack) -> None:
    """What the devstack exports, compose and k8s give the services too (same names)."""
    exported = set(devstack.env())
    compose_names = {name for svc in compose_onair().values() for name in compose_env(svc)}
    docs = kustomize("k8s/base")
    k8s_names = {
        name
        for dep in objects(docs, "Deployment").values()
        for container in dep["spec"]["template"]["spec"]["containers"]
        for name in container_env_names(container, docs)
    }
    assert exported <= compose_names, sorted(exported - compose_names)
    assert exported <= k8s_names, sorted(exported - k8s_names)


def test_shared_settings_are_the_same_in_compose_and_k8s() -> None:
    """x-onair-env and the onair-config ConfigMap + onair-stores Secret set the same names, and the
    compose service URLs are the k8s ones with the container port."""
    shared = compose()["x-onair-env"]
    docs = kustomize("k8s/base")
    config = next(d for n, d in objects(docs, "ConfigMap").items() if n.startswith("onair-config"))
    stores = next(d for n, d in objects(docs, "Secret").items() if n.startswith("onair-stores"))
    profstore = next(d for n, d in objects(docs, "Secret").items() if n.startswith("onair-profstore-"))
    k8s_shared = set(config["data"]) | set(stores["data"]) | set(profstore["data"])
    assert set(shared) == k8s_shared, sorted(set(shared) ^ k8s_shared)
    for name, value in config["data"].items():
        if name.endswith("_URL") and value.startswith("http://"):
            host, _, path = value.removeprefix("http://").partition("/")
            assert shared[name] == f"http://{host}:8000" + (f"/{path}" if path else ""), name


@pytest.mark.parametrize("name", sorted(READ_ELSEWHERE))
def test_variables_read_outside_settings_classes_are_still_read_there(name: str) -> None:
    import importlib.util

    spec = importlib.util.find_spec(READ_ELSEWHERE[name])
    assert spec is not None and spec.origin
    assert name in Path(spec.origin).read_text(), f"{READ_ELSEWHERE[name]} no longer reads {name}"
