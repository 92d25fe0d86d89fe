"""k8s/ is true to the code: a Deployment and Service per service of the registry, probes on routes
that exist, the image's port and user, locked-down pods with the writable paths mounted, each
database its own, NetworkPolicies, the Ingress and the autoscalers pointing at what exists, and a
staging overlay sized for more than one node."""

import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from onair_services.registry import SERVICES

from .manifests import (
    OVERLAYS,
    ROOT,
    CodeFacts,
    container_env_names,
    env_names_for,
    image_env,
    kustomize,
    objects,
    pod_labels,
    secret_value,
    selects,
    workloads,
)

AUTOSCALED = {"gateway", "liveinfo", "chat"}
STORE_HOSTS = {"valkey", "nats", "kafka", "postgres", "minio"}


def _deployment(docs: tuple[dict[str, Any], ...], name: str) -> dict[str, Any]:
    dep = objects(docs, "Deployment").get(name)
    assert dep is not None, f"no Deployment {name}"
    return dep


def _main_container(dep: dict[str, Any]) -> dict[str, Any]:
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    return container


def _is_onair(container: dict[str, Any]) -> bool:
    return bool(container["image"].split(":")[0].endswith("onair"))


def _onair_pods(docs: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """Pod specs of everything that runs the onair image (services, migrations)."""
    return [
        w["spec"]["template"]["spec"]
        for w in workloads(docs)
        if any(_is_onair(c) for c in w["spec"]["template"]["spec"]["containers"])
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_has_a_deployment_a_service_and_a_budget(overlay: str) -> None:
    docs = kustomize(overlay)
    services, budgets = objects(docs, "Service"), objects(docs, "PodDisruptionBudget")
    for name in SERVICES:
        dep = _deployment(docs, name)
        container = _main_container(dep)
        assert container["args"] == ["serve", name]
        assert {p["containerPort"] for p in container["ports"]} == {int(image_env()["ONAIR_PORT"])}
        assert {"name": "ONAIR_SERVICE_NAME", "value": name} in container["env"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        svc = services[name]
        assert selects({"matchLabels": svc["spec"]["selector"]}, labels)
        assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(80, "http")]
        assert selects(budgets[name]["spec"]["selector"], labels)


def test_probes_are_routes_of_the_service(code_facts: CodeFacts) -> None:
    docs = kustomize("k8s/base")
    for name in SERVICES:
        container = _main_container(_deployment(docs, name))
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        if name in code_facts.routes:  # written already: the paths must be its routes
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                path = container[probe]["httpGet"]["path"]
                assert path in code_facts.routes[name], f"{name}: {probe} {path} is not a route"
    assert code_facts.routes, "no service could be checked"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_locked_down_with_the_writable_paths_mounted(overlay: str) -> None:
    docs = kustomize(overlay)
    env = image_env()
    uid = int(re.search(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.M).group(1))  # type: ignore[union-attr]
    pods = _onair_pods(docs)
    assert len(pods) >= len(SERVICES)
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"] + pod.get("initContainers", []):
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"] == {"drop": ["ALL"]}
            resources = container["resources"]
            assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            for path, name in mounts.items():
                assert name in volumes, path
            if container["name"] in SERVICES:  # a service process: /tmp and the spool
                assert "/tmp" in mounts and env["ONAIR_SPOOL_DIR"] in mounts
                assert "emptyDir" in volumes[mounts[env["ONAIR_SPOOL_DIR"]]]
            elif container["name"] != "seed-numba-cache":
                assert "/tmp" in mounts
        if pod["containers"][0]["name"] == "profstore":  # numba: a writable cache, seeded
            (main,) = pod["containers"]
            cache = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}[env["NUMBA_CACHE_DIR"]]
            seed = next(c for c in pod["initContainers"] if c["name"] == "seed-numba-cache")
            assert env["NUMBA_CACHE_DIR"] in " ".join(seed["command"])
            assert [m["name"] for m in seed["volumeMounts"]] == [cache]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_sets_only_variables_the_code_reads(overlay: str) -> None:
    docs = kustomize(overlay)
    for workload in workloads(docs):
        pod = workload["spec"]["template"]["spec"]
        for container in pod["containers"] + pod.get("initContainers", []):
            if not _is_onair(container):
                continue
            service = next((a for a in container.get("args", []) if a in SERVICES), None)
            unknown = container_env_names(container, docs) - env_names_for(service)
            assert not unknown, f"{workload['metadata']['name']}/{container['name']}: {sorted(unknown)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_database_is_its_own_and_migrated_by_a_job(overlay: str) -> None:
    docs = kustomize(overlay)
    jobs = objects(docs, "Job")
    seen: dict[str, str] = {}
    for name, info in SERVICES.items():
        dep = _deployment(docs, name)
        secrets = {s["secretRef"]["name"] for s in _main_container(dep)["envFrom"] if "secretRef" in s}
        db_secrets = {s for s in secrets if "DATABASE_URL" in objects(docs, "Secret")[s]["data"]}
        if not info.database:
            assert not db_secrets, f"{name} owns no database"
            continue
        (secret,) = db_secrets
        url = urlsplit(secret_value(docs, secret, "DATABASE_URL"))
        database = url.path.lstrip("/")
        assert (url.username, database) == (f"onair_{name}", f"onair_{name}")
        assert database not in seen, f"{name} and {seen.get(database)} share {database}"
        seen[database] = name
        (wait,) = dep["spec"]["template"]["spec"]["initContainers"]
        assert wait["args"][:3] == ["migrate", name, "--check"]
        job = jobs[f"migrate-{name}"]
        (migrate,) = job["spec"]["template"]["spec"]["containers"]
        assert migrate["args"] == ["migrate", name]
        for container in (wait, migrate):
            assert {"secretRef": {"name": secret}} in container["envFrom"]
    assert len(seen) == sum(1 for s in SERVICES.values() if s.database)


def test_the_in_cluster_postgres_creates_the_same_databases_as_compose() -> None:
    k8s, compose = ROOT / "k8s/base/postgres-init.sql", ROOT / "deploy/postgres-init.sql"
    assert k8s.read_text() == compose.read_text()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_select_pods_that_exist(overlay: str) -> None:
    docs = kustomize(overlay)
    pods = pod_labels(docs)
    policies = objects(docs, "NetworkPolicy")
    assert "default-deny" in policies
    assert policies["default-deny"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    for name, policy in policies.items():
        spec = policy["spec"]
        assert any(selects(spec["podSelector"], labels) for labels in pods), f"{name} selects no pod"
        for rule in spec.get("ingress", []) + spec.get("egress", []):
            for peer in rule.get("from", []) + rule.get("to", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    assert any(selects(peer["podSelector"], labels) for labels in pods), (
                        f"{name}: a peer selects no pod"
                    )


def test_only_the_gateway_takes_traffic_from_outside() -> None:
    docs = kustomize("k8s/base")
    policies = objects(docs, "NetworkPolicy")
    labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in objects(docs, "Deployment").items()}
    from_outside = {
        service
        for policy in policies.values()
        for rule in policy["spec"].get("ingress", [])
        for peer in rule.get("from", [])
        if "namespaceSelector" in peer
        and peer["namespaceSelector"]["matchLabels"].get("kubernetes.io/metadata.name") == "ingress-nginx"
        for service, pod in labels.items()
        if selects(policy["spec"]["podSelector"], pod)
    }
    assert from_outside == {"gateway"}


def test_the_ingress_leads_to_the_gateway_service() -> None:
    for overlay in OVERLAYS:
        docs = kustomize(overlay)
        (ingress,) = objects(docs, "Ingress").values()
        gateway = objects(docs, "Service")["gateway"]
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["name"] == "gateway"
                assert backend["port"]["name"] in {p["name"] for p in gateway["spec"]["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscalers_target_deployments_that_leave_replicas_to_them(overlay: str) -> None:
    docs = kustomize(overlay)
    hpas = objects(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == AUTOSCALED
    for name, hpa in hpas.items():
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        dep = _deployment(docs, name)
        assert "replicas" not in dep["spec"], f"{name}: replicas would fight the autoscaler"
        assert _main_container(dep)["resources"]["requests"]["cpu"]  # what utilisation is measured on


def test_staging_runs_clustered_stores_and_enough_partitions() -> None:
    docs = kustomize("k8s/overlays/staging")
    sets = objects(docs, "StatefulSet")
    assert sets["kafka"]["spec"]["replicas"] == 3
    assert sets["nats"]["spec"]["replicas"] == 3
    (kafka,) = sets["kafka"]["spec"]["template"]["spec"]["containers"]
    kafka_env = {e["name"]: e.get("value") for e in kafka["env"]}
    voters = kafka_env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert [v.split("@")[0] for v in voters] == ["0", "1", "2"]
    assert kafka_env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
    assert int(kafka_env["KAFKA_MIN_INSYNC_REPLICAS"]) == 2
    nats_args = " ".join(sets["nats"]["spec"]["template"]["spec"]["containers"][0]["args"])
    for n in range(3):
        assert f"nats-{n}.nats-headless:6222" in nats_args
    assert "-js" in nats_args and "--cluster_name=" in nats_args
    config = next(d for n, d in objects(docs, "ConfigMap").items() if n.startswith("onair-config"))["data"]
    assert config["ONAIR_KAFKA_REPLICATION_FACTOR"] == "3"
    partitions = int(config["ONAIR_KAFKA_TOPIC_PARTITIONS"])
    # Every replica of a projecting service can own at least one partition.
    for hpa in objects(docs, "HorizontalPodAutoscaler").values():
        assert hpa["spec"]["maxReplicas"] <= partitions
    for name, dep in objects(docs, "Deployment").items():
        assert dep["spec"].get("replicas", 0) <= partitions, name


def test_external_stores_leave_no_store_in_the_cluster() -> None:
    docs = kustomize("k8s/overlays/staging-external")
    assert not objects(docs, "StatefulSet")
    assert not STORE_HOSTS & set(objects(docs, "Service"))
    for secret in objects(docs, "Secret"):
        for key in objects(docs, "Secret")[secret]["data"]:
            value = secret_value(docs, secret, key)
            for host in re.findall(r"(?:[a-z+]+://)?(?:[^@/\s]*@)?([a-z0-9.-]+):\d+", value):
                assert host not in STORE_HOSTS, f"{secret}.{key} still points at the in-cluster {host}"
    egress = objects(docs, "NetworkPolicy")["external-stores-egress"]
    assert {p["port"] for rule in egress["spec"]["egress"] for p in rule["ports"]} >= {5432, 6379, 4222, 9092}
