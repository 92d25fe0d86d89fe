"""docker-compose.yml is true to the code: every service of the registry, each with its own
database, migrated first, reading only settings that exist, healthy before its dependents start."""

import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from onair_services.registry import SERVICES

from .manifests import (
    ROOT,
    CodeFacts,
    compose,
    compose_env,
    compose_onair,
    env_names_for,
    image_env,
    written_services,
)

ONE_SHOT = {"minio-buckets"}  # besides migrate-*: run once, nothing to probe


def _service(name: str) -> dict[str, Any]:
    svc = compose()["services"].get(name)
    assert svc is not None, f"compose has no service {name!r}"
    return svc


def _database_of(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.username or "", parts.path.lstrip("/")


@pytest.mark.parametrize("name", list(SERVICES))
def test_every_service_runs_from_the_one_image(name: str) -> None:
    svc = _service(name)
    assert svc["image"] == "onair:dev"
    assert svc["command"] == ["serve", name]
    assert svc["read_only"] is True
    assert svc["environment"]["ONAIR_MIGRATE_ON_START"] == "false"
    writable = {v["target"] for v in svc["volumes"] if isinstance(v, dict)}
    assert {"/tmp", svc["environment"]["ONAIR_SPOOL_DIR"]} <= writable
    assert svc["environment"]["ONAIR_SPOOL_DIR"] == image_env()["ONAIR_SPOOL_DIR"]
    if name == "profstore":  # the only service that runs the numba kernels
        assert image_env()["NUMBA_CACHE_DIR"] in writable


def test_only_the_gateway_is_published_beyond_loopback() -> None:
    public = {}
    for name, svc in compose()["services"].items():
        for port in svc.get("ports", []):
            if not str(port).startswith("127.0.0.1:"):
                public[name] = port
    assert public == {"gateway": "8080:8000"}
    # ... and 8000 is the port the image's services listen on.
    assert image_env()["ONAIR_PORT"] == "8000"


def test_each_database_is_its_own_and_migrated_before_its_service() -> None:
    init_sql = (ROOT / "deploy/postgres-init.sql").read_text()
    created = set(re.findall(r"CREATE DATABASE (\w+) OWNER (\w+);", init_sql))
    seen: dict[str, str] = {}
    for name, info in SERVICES.items():
        env = compose_env(_service(name))
        if not info.database:
            assert "DATABASE_URL" not in env, f"{name} owns no database"
            continue
        user, database = _database_of(env["DATABASE_URL"])
        assert (database, user) == (f"onair_{name}", f"onair_{name}")
        assert (database, user) in created, f"deploy/postgres-init.sql does not create {database}"
        assert database not in seen, f"{name} and {seen.get(database)} share {database}"
        seen[database] = name
        migrate = _service(f"migrate-{name}")
        assert migrate["command"] == ["migrate", name]
        assert compose_env(migrate)["DATABASE_URL"] == env["DATABASE_URL"]
        assert migrate["restart"] == "no"
        after = _service(name)["depends_on"][f"migrate-{name}"]
        assert after == {"condition": "service_completed_successfully"}
    assert {db for db, _ in created} == set(seen), "init script and services disagree"


def test_migrations_are_there_for_the_databases(code_facts: CodeFacts) -> None:
    """A service that owns a database has migrations (what migrate-<name> runs), and vice versa."""
    for name in written_services():
        assert bool(code_facts.migrations[name]) == SERVICES[name].database, name


def test_services_wait_for_the_stores_they_open(code_facts: CodeFacts) -> None:
    """depends_on names exactly the stores the service's ServiceSpec opens (Valkey, NATS, Kafka)."""
    assert code_facts.stores
    for name, stores in code_facts.stores.items():
        waits_for = set(_service(name).get("depends_on", {})) & {"valkey", "nats", "kafka"}
        assert waits_for == stores, f"{name}: waits for {sorted(waits_for)}, opens {sorted(stores)}"


@pytest.mark.parametrize("name", sorted(compose_onair()))
def test_compose_sets_only_variables_the_code_reads(name: str) -> None:
    svc = compose_onair()[name]
    service = svc["command"][1]
    unknown = set(compose_env(svc)) - env_names_for(service)
    assert not unknown, f"{name}: no settings class reads {sorted(unknown)}"


def test_service_urls_and_key_urls_point_at_routes_that_exist(code_facts: CodeFacts) -> None:
    env = compose()["x-onair-env"]
    for name in SERVICES:
        assert env[f"ONAIR_{name.upper()}_URL"] == f"http://{name}:8000"
    for variable, service in (("ONAIR_IDENTITY_JWKS_URL", "gateway"), ("ONAIR_AUTH_JWKS_URL", "auth")):
        url = urlsplit(env[variable])
        assert url.netloc == f"{service}:8000"
        if service in code_facts.routes:
            assert url.path in code_facts.routes[service], f"{variable}: {url.path} is not a {service} route"


def test_healthchecks_everywhere_and_dependencies_wait_for_them() -> None:
    services = compose()["services"]
    for name, svc in services.items():
        check = svc.get("healthcheck")
        one_shot = name.startswith("migrate-") or name in ONE_SHOT
        if one_shot or name == "locust-worker":
            assert check == {"disable": True} or check is None, name
        else:
            assert check and check.get("test"), f"{name} has no healthcheck"
        for dep, cond in (svc.get("depends_on") or {}).items():
            target = services[dep]
            if dep.startswith("migrate-") or dep in ONE_SHOT:
                assert cond == {"condition": "service_completed_successfully"}, (name, dep)
            else:
                assert cond == {"condition": "service_healthy"}, (name, dep)
                assert (target.get("healthcheck") or {}).get("test"), f"{dep} cannot become healthy"


def test_the_services_healthcheck_probes_readiness(code_facts: CodeFacts) -> None:
    for name in SERVICES:
        test = " ".join(_service(name)["healthcheck"]["test"])
        assert "/readyz" in test and "ONAIR_PORT" in test
        if name in code_facts.routes:
            assert "/readyz" in code_facts.routes[name]


def test_load_profile_runs_locust_against_the_gateway() -> None:
    master, worker = _service("locust-master"), _service("locust-worker")
    assert master["profiles"] == worker["profiles"] == ["load"]
    assert master["depends_on"] == {"gateway": {"condition": "service_healthy"}}
    assert "http://gateway:8000" in master["command"]
    assert worker["command"][worker["command"].index("--master-host") + 1] == "locust-master"
    for svc in (master, worker):
        locustfile = svc["command"][svc["command"].index("-f") + 1]
        mount = next(v for v in svc["volumes"] if isinstance(v, str) and v.startswith("./load:"))
        assert locustfile.startswith(mount.split(":")[1] + "/")
        assert (ROOT / "load" / locustfile.rsplit("/", 1)[1]).is_file()
        source = "\n".join(p.read_text() for p in (ROOT / "load").rglob("*.py"))
        for variable in compose_env(svc):
            assert variable in source, f"load/ does not read {variable}"


def test_every_named_volume_is_declared() -> None:
    declared = set(compose()["volumes"])
    used = {
        v.split(":", 1)[0]
        for svc in compose()["services"].values()
        for v in svc.get("volumes", [])
        if isinstance(v, str) and not v.startswith((".", "/"))
    }
    assert used <= declared, used - declared
