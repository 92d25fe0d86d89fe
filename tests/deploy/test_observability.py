"""The observability profile is true to the code: Prometheus scrapes every service, and every
metric the Grafana dashboard plots is one the code exports."""

import json
import re

import yaml

from onair_services.registry import SERVICES

from .manifests import ROOT, CodeFacts, compose

DASHBOARD = ROOT / "deploy/grafana/dashboards/onair.json"
_SUFFIX = re.compile(r"_(bucket|sum|count|total|created)$")


def _family(name: str) -> str:
    return _SUFFIX.sub("", name)


def _exported(code_facts: CodeFacts) -> set[str]:
    """Metric families the code exports: registered once the apps are built, or named in source
    (families created on first use, e.g. in a handler)."""
    files = [p for root in ("platform/onair", "services/onair_services") for p in (ROOT / root).rglob("*.py")]
    source = "\n".join(p.read_text() for p in files)
    named = set(re.findall(r"[\"'](onair_[a-z0-9_]+|profstore_[a-z0-9_]+)[\"']", source))
    return {_family(n) for n in code_facts.metrics | named}


def test_prometheus_scrapes_every_service() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = {t: group["labels"]["app"] for group in job["static_configs"] for t in group["targets"]}
    assert targets == {f"{name}:8000": name for name in SERVICES}
    mount = next(v for v in compose()["services"]["prometheus"]["volumes"] if "prometheus.yml" in v)
    assert mount.startswith("./deploy/prometheus/prometheus.yml:")


def test_every_dashboard_metric_is_exported_by_the_code(code_facts: CodeFacts) -> None:
    exported = _exported(code_facts)
    dashboard = json.loads(DASHBOARD.read_text())
    used: dict[str, str] = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for name in re.findall(r"\b((?:onair|profstore)_[a-z0-9_]+)\b", target["expr"]):
                used[_family(name)] = panel["title"]
    assert len(used) > 20
    missing = {name: title for name, title in used.items() if name not in exported}
    assert not missing, f"panels plot metrics the code does not export: {missing}"
    # The patterns the platform shows each have their row.
    rows = {p["title"].split(":")[0].split(" (")[0] for p in dashboard["panels"] if p["type"] == "row"}
    assert {"Requests", "Gateway", "Cached reads", "Log stream and projections", "Fan-out", "Wallet"} <= rows


def test_dashboard_uses_the_provisioned_datasource() -> None:
    provisioning = ROOT / "deploy/grafana/provisioning"
    datasources = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["url"] == "http://prometheus:9090"
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert uids == {source["uid"]}
    provider = yaml.safe_load((provisioning / "dashboards/onair.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    mounts = compose()["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in mounts
