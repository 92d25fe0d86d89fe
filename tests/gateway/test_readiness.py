"""The skeleton's optional readiness checks (added for the gateway): reported, not gating."""

from __future__ import annotations

import httpx

from onair.fanout.app import running_server
from onair.service import RuntimeSettings, Service, ServiceSpec, create_service_app


async def test_optional_checks_are_reported_but_do_not_gate_readiness() -> None:
    state = {"required": True}

    def setup(svc: Service) -> None:
        async def required() -> bool | str:
            return True if state["required"] else "down"

        async def optional() -> bool | str:
            return "unreachable"

        svc.ready_check("needed", required)
        svc.ready_check("nice_to_have", optional, required=False)

    app = create_service_app(
        ServiceSpec(name="readiness", identity=False),
        settings=RuntimeSettings(),
        setup=setup,
        configure_logs=False,
    )
    async with running_server(app, lifespan="on") as url, httpx.AsyncClient(base_url=url) as client:
        r = await client.get("/readyz")
        assert r.status_code == 200
        assert r.json()["checks"] == {"needed": "ok", "nice_to_have": "unreachable"}
        state["required"] = False
        r = await client.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["needed"] == "down"
