"""Run as a script by the deploy checks: what the code of every service says, as one JSON object.

For each service of ``onair_services.registry.SERVICES`` that has an app module, builds its app with
``create_app()`` and lists its route paths (``onair.service.routes.route_paths``, which sees the
routes of included routers on every FastAPI version), and lists every Prometheus metric family
registered once the apps are built (plus the cache and fan-out families, which are created on
first use). The backends in the environment point at closed ports, so a build that needed a
running server fails here. A separate process, so each app's process-wide logging set-up stays
out of the test run.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback


def main() -> int:
    from prometheus_client import REGISTRY

    from onair.cache.metrics import CacheMetrics
    from onair.cli.serve import service_exists
    from onair.fanout.metrics import ensure_registered
    from onair.service.routes import route_paths
    from onair_services.registry import SERVICES

    services: dict[str, dict[str, object]] = {}
    errors: dict[str, str] = {}
    for name in SERVICES:
        if not service_exists(name):  # not written yet (or no app module yet)
            continue
        try:
            module = importlib.import_module(f"onair_services.{name}.app")
            app = module.create_app()
            spec = getattr(module, "SPEC", None)
            stores = set()
            if spec is not None:
                if spec.valkey or spec.tracking:
                    stores.add("valkey")
                if spec.nats:
                    stores.add("nats")
                if spec.kafka or spec.projections is not None:
                    stores.add("kafka")
            services[name] = {
                "routes": sorted(route_paths(app)),
                "migrations": getattr(spec, "migrations", None),
                "stores": sorted(stores),
            }
        except Exception:
            errors[name] = traceback.format_exc(limit=8)
    CacheMetrics.create("deploy-check")
    ensure_registered()
    metrics = sorted({m.name for m in REGISTRY.collect()} | set(REGISTRY._names_to_collectors))
    json.dump({"services": services, "errors": errors, "metrics": metrics}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
