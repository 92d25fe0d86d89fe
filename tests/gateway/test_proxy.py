"""The proxy path: routing, bodies both ways, timeouts, breakers, retries, SSE, WebSocket, request
ids end to end, browser headers, the combined OpenAPI, readiness."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator

import aiohttp
import httpx
import pytest
import structlog

from onair.auth import IdentityVerifier, JWKSCache
from onair.clients import KafkaClient, NatsClient
from onair.fanout.app import running_server

from .conftest import Stack
from .helpers import bearer

pytestmark = pytest.mark.asyncio(loop_scope="module")


# -- routing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/.well-known/unknown", 404, "not_found"),
        ("POST", "/nowhere", 404, "not_found"),  # the web fallback takes GET/HEAD only
        ("DELETE", "/some/page", 404, "not_found"),
        ("PUT", "/.well-known/jwks.json", 405, "method_not_allowed"),
        ("GET", "/live/../wallet/echo", 400, "bad_request"),
    ],
)
async def test_unknown_routes_answer_json(
    stack: Stack, method: str, path: str, status: int, error: str
) -> None:
    url = aiohttp.client.URL(stack.gateway + path, encoded=True)  # sent as is ('..' included)
    async with aiohttp.ClientSession() as session, session.request(method, url) as r:
        assert r.status == status, await r.text()
        assert (await r.json())["error"] == error
        if status == 405:
            assert r.headers["Allow"] == "GET, HEAD"


async def test_prefixes_match_whole_segments(stack: Stack) -> None:
    # /livestream is not under /live: it falls back to the web app (GET), which here is the echo
    r = await stack.http.get("/live/echo?x=1&y=2")
    assert r.json()["path"] == "/live/echo" and r.json()["query"] == "x=1&y=2"
    r = await stack.http.post("/livestream")
    assert r.status_code == 404


# -- bodies ----------------------------------------------------------------------------------------
async def test_request_body_streams_to_the_upstream(stack: Stack) -> None:
    data = os.urandom(700_000)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 50_000):
            yield data[i : i + 50_000]
            await asyncio.sleep(0)

    r = await stack.http.post("/live/upload", content=chunks())  # chunked, no Content-Length
    assert r.status_code == 200, r.text
    assert r.json() == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    r = await stack.http.post("/live/upload", content=data)  # with Content-Length
    assert r.json()["bytes"] == len(data)


@pytest.mark.parametrize("chunked", [False, True])
async def test_body_over_the_route_limit_is_413(stack: Stack, chunked: bool) -> None:
    data = b"x" * (1_100_000)
    before = stack.echo.requests

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 100_000):
            yield data[i : i + 100_000]

    r = await stack.http.post("/live/echo", content=chunks() if chunked else data)
    assert r.status_code == 413
    assert r.json()["error"] == "too_large"
    assert stack.echo.requests == before


async def test_large_response_streams_back(stack: Stack) -> None:
    size = 3 * 1024 * 1024 + 17
    total = 0
    async with stack.http.stream("GET", f"/live/big?n={size}") as r:
        assert r.status_code == 200
        async for chunk in r.aiter_raw():
            total += len(chunk)
    assert total == size


# -- failures --------------------------------------------------------------------------------------
async def test_slow_upstream_is_504_naming_it(stack: Stack) -> None:
    r = await stack.http.get("/search/slow?seconds=3")
    assert r.status_code == 504
    assert r.json() == {
        "error": "upstream_timeout",
        "detail": "search did not answer within 1 s",
        "upstream": "search",
    }


async def test_breaker_opens_on_a_dead_upstream_and_recovers(stack: Stack) -> None:
    gateway = stack.app.state.service.state["gateway"]
    breaker = gateway.upstreams["bff"].breaker
    for _ in range(3):  # connection refused, each retried once
        r = await stack.http.get("/bff/echo")
        assert r.status_code == 503 and r.json()["error"] == "upstream_unavailable"
        assert r.json()["upstream"] == "bff"
        if breaker.state == "open":
            break
    assert breaker.state == "open"
    r = await stack.http.get("/bff/echo")
    assert r.status_code == 503 and "circuit open" in r.json()["detail"]
    assert int(r.headers["retry-after"]) >= 1
    assert breaker.refused >= 1  # answered without trying the upstream

    # the upstream comes back: after open_s a trial goes through and closes the breaker
    from onair.service import RuntimeSettings

    from .helpers import EchoState, echo_app

    app = echo_app(
        RuntimeSettings(identity_jwks_url=f"{stack.gateway}/.well-known/identity-jwks.json"), EchoState()
    )
    async with running_server(app, port=stack.dead_port, lifespan="on"):
        async with asyncio.timeout(10):
            while True:
                r = await stack.http.get("/bff/echo")
                if r.status_code == 200:
                    break
                assert r.status_code == 503
                await asyncio.sleep(0.1)
        assert breaker.state == "closed"


async def test_idempotent_requests_are_retried_on_a_refused_connection_others_not() -> None:
    """A server that drops the first connection of each pair without answering."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        if connections % 2 == 1:
            writer.close()
            return
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-type: application/json\r\n"
            b"content-length: 2\r\n\r\n{}"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    from onair_services.gateway.proxy import Upstream
    from onair_services.gateway.settings import GatewaySettings
    from onair_services.gateway.table import Route

    upstream = Upstream("flaky", f"http://127.0.0.1:{port}", GatewaySettings())
    async with server, aiohttp.ClientSession() as session:
        from multidict import CIMultiDict
        from yarl import URL

        from onair_services.gateway.authn import Refusal
        from onair_services.gateway.proxy import Gateway

        gateway = Gateway.__new__(Gateway)
        gateway.session = session
        route = Route("/x", "flaky", retries=1, timeout_s=2.0)
        url = URL(f"http://127.0.0.1:{port}/x")
        response = await gateway._request(upstream, route, "GET", url, CIMultiDict(), None, attempts=2)
        assert response is not None and response.status == 200
        response.release()
        assert connections == 2
        with pytest.raises(Refusal) as refused:
            await gateway._request(upstream, route, "POST", url, CIMultiDict(), b"{}", attempts=1)
        assert refused.value.status == 502 and refused.value.extra == {"upstream": "flaky"}
        assert connections == 3  # tried once: a POST may have had an effect


# -- streams ---------------------------------------------------------------------------------------
async def test_sse_passes_through_unbuffered(stack: Stack) -> None:
    stack.echo.release.clear()
    stack.echo.sse_closed.clear()
    token = stack.auth.mint()
    async with stack.http.stream(
        "GET", f"/live/sse?access_token={token}", headers={"Accept": "text/event-stream"}
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.aiter_lines()
        async with asyncio.timeout(5):
            first = [await anext(lines), await anext(lines)]
        assert first == ["id: 1", "data: first"]
        assert not stack.echo.sse_closed.is_set()  # the upstream is still holding the stream open
        stack.echo.release.set()
        rest = [line async for line in lines]
        assert "data: second" in rest


async def test_sse_client_leaving_closes_the_upstream_stream(stack: Stack) -> None:
    stack.echo.release.clear()
    stack.echo.sse_closed.clear()
    async with stack.http.stream("GET", "/live/sse", headers={"Accept": "text/event-stream"}) as r:
        lines = r.aiter_lines()
        assert await anext(lines) == "id: 1"
    async with asyncio.timeout(5):
        await stack.echo.sse_closed.wait()
    stack.echo.release.set()


async def test_websocket_passes_through_both_ways(stack: Stack) -> None:
    token = stack.auth.mint(name="carol")
    rid = f"ws-{uuid.uuid4().hex}"
    url = f"{stack.gateway.replace('http', 'ws')}/chat/room7/ws?access_token={token}"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers={"X-Request-ID": rid}, protocols=("onair.v1",)) as ws,
    ):
        assert ws.protocol == "onair.v1"
        hello = await ws.receive_json(timeout=5)
        assert hello["room"] == "room7" and hello["identity"]["username"] == "carol"
        assert hello["request_id"] == rid
        await ws.send_str("hi")
        assert (await ws.receive_str(timeout=5)) == "echo:hi"
        await ws.send_bytes(b"\x01\x02\x03")
        assert (await ws.receive_bytes(timeout=5)) == b"\x03\x02\x01"
        await ws.send_str("close-me")
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4001


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/live/echo", {}, 404),  # not a WebSocket route
        ("/chat/room7/ws?access_token=garbage", {}, 401),
        ("/chat/room7/ws", {"Origin": "https://evil.example"}, 403),
    ],
)
async def test_websocket_refusals_are_http_json(
    stack: Stack, path: str, headers: dict[str, str], status: int
) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(stack.gateway.replace("http", "ws") + path, headers=headers)
        assert refused.value.status == status


# -- request ids -----------------------------------------------------------------------------------
async def test_request_id_travels_to_the_upstream_nats_and_kafka(stack: Stack) -> None:
    rid = f"trace-{uuid.uuid4().hex}"
    sub = f"u-{uuid.uuid4().hex[:8]}"
    async with NatsClient(stack.nats_url) as nats:
        inbox: asyncio.Queue[object] = asyncio.Queue()

        async def on_message(msg: object) -> None:
            await inbox.put(msg)

        await nats.raw.subscribe(f"test.trace.{sub}", cb=on_message)
        await nats.raw.flush()
        r = await stack.http.post(
            "/live/trace", headers={**bearer(stack.auth.mint(sub=sub)), "X-Request-ID": rid}
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-request-id"] == rid
        body = r.json()
        assert body["identity"]["request_id"] == rid  # the signed identity's rid
        msg = await asyncio.wait_for(inbox.get(), 5)
        assert msg.headers["X-Request-ID"] == rid  # type: ignore[attr-defined]
    topic, partition, offset = body["position"]
    async with KafkaClient(stack.kafka_bootstrap, client_id="gateway-test") as kafka:
        from aiokafka import TopicPartition

        consumer = await kafka.consumer(group_id=None)
        try:
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            record = await asyncio.wait_for(consumer.getone(), 10)
        finally:
            await consumer.stop()
    assert dict(record.headers)["x-request-id"] == rid.encode()


async def test_a_bad_request_id_is_replaced(stack: Stack) -> None:
    r = await stack.http.get("/live/echo", headers={"X-Request-ID": "bad id with spaces"})
    rid = r.headers["x-request-id"]
    assert rid != "bad id with spaces" and r.json()["headers"]["x-request-id"] == rid


# -- browsers --------------------------------------------------------------------------------------
async def test_cors_preflight_and_headers(stack: Stack) -> None:
    before = stack.echo.requests
    r = await stack.http.options(
        "/wallet/echo",
        headers={
            "Origin": "https://web.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "https://web.example"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert r.headers["access-control-allow-headers"] == "authorization, content-type, idempotency-key"
    assert stack.echo.requests == before  # answered by the gateway

    r = await stack.http.get("/live/echo", headers={"Origin": "https://web.example"})
    assert r.headers["access-control-allow-origin"] == "https://web.example"
    assert "X-Request-ID" in r.headers["access-control-expose-headers"]
    assert r.headers["vary"] == "Origin"
    r = await stack.http.get("/live/echo", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


async def test_security_headers_on_every_answer(stack: Stack) -> None:
    for path in ("/live/echo", "/nope/../x", "/.well-known/identity-jwks.json", "/healthz"):
        r = await stack.http.get(path)
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    r = await stack.http.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()
    assert "cdn.jsdelivr.net" in r.headers["content-security-policy"]  # the page's own CSP is kept


# -- the gateway's own routes ----------------------------------------------------------------------
async def test_identity_jwks_verifies_the_identities(stack: Stack) -> None:
    r = await stack.http.get("/.well-known/identity-jwks.json")
    assert r.status_code == 200 and len(r.json()["keys"]) == 1
    assert "d" not in r.json()["keys"][0]
    echoed = (await stack.http.get("/live/echo", headers=bearer(stack.auth.mint(name="dave")))).json()
    async with JWKSCache(f"{stack.gateway}/.well-known/identity-jwks.json") as keys:
        identity = await IdentityVerifier(keys).verify(echoed["headers"]["x-onair-identity"])
    assert identity.username == "dave"


async def test_readyz_reports_every_upstream(stack: Stack) -> None:
    r = await stack.http.get("/readyz")
    assert r.status_code == 200, r.text  # bff is down, but only auth gates readiness
    checks = r.json()["checks"]
    assert (
        checks["auth_jwks"] == "ok" and checks["upstream:auth"] == "ok" and checks["valkey_tracking"] == "ok"
    )
    assert checks["upstream:bff"].startswith("unreachable")
    assert checks["upstream:liveinfo"] == "ok"


async def test_combined_openapi(stack: Stack) -> None:
    doc = (await stack.http.get("/openapi.json")).json()
    paths = doc["paths"]
    assert "/healthz" not in paths and "/metrics" not in paths
    assert paths["/wallet/echo"]["get"]["security"] == [{"BearerAuth": []}]  # required at the gateway
    assert {"BearerAuth": []} in paths["/live/echo"]["get"]["security"] and {} in paths["/live/echo"]["get"][
        "security"
    ]
    assert "security" not in paths["/.well-known/jwks.json"]["get"]  # public
    post = paths["/channels"]["post"]
    assert post["x-onair-roles"] == ["streamer", "admin"] and "403" in post["responses"]
    assert {"401", "429", "503", "504"} <= set(paths["/wallet/echo"]["get"]["responses"])
    assert "/.well-known/identity-jwks.json" in paths
    assert "/bff/echo" not in paths and doc["x-onair-unavailable"] == ["bff"]
    assert doc["components"]["securitySchemes"]["BearerAuth"]["scheme"] == "bearer"


async def test_metrics_name_the_table_route(stack: Stack) -> None:
    await stack.http.get("/live/echo")
    expired = stack.auth.mint(iat=1_000_000_000, exp=1_000_000_100)
    assert (await stack.http.get("/live/echo", headers=bearer(expired))).status_code == 401
    text = (await stack.http.get("/metrics")).text
    assert 'onair_http_requests_total{method="GET",route="/live",service="gateway",status="200"}' in text
    assert 'onair_gateway_upstream_duration_seconds_count{upstream="liveinfo"}' in text
    assert 'onair_gateway_auth_failures_total{reason="expired"}' in text
    assert 'onair_gateway_breaker_state{upstream="liveinfo"} 0.0' in text


async def test_access_log_line_has_the_user_and_no_token(stack: Stack) -> None:
    token = stack.auth.mint(sub="u-logged")
    with structlog.testing.capture_logs() as logs:
        await stack.http.get(
            f"/live/sse?access_token={token}&x=1", headers={**bearer(token), "Accept": "text/plain"}
        )
        await stack.http.get("/live/echo", headers=bearer(token))
    lines = [line for line in logs if line.get("event") == "http request"]
    assert lines and all(token not in repr(line) for line in logs)
    last = lines[-1]
    assert last["user_id"] == "u-logged" and last["upstream"] == "liveinfo" and last["route"] == "/live"
    assert last["path"] == "/live/echo" and last["status"] == 200


async def test_healthz_is_the_gateways_own(stack: Stack) -> None:
    r = await stack.http.get("/healthz")
    assert r.json() == {"status": "ok", "service": "gateway"}


async def test_upstream_headers_pass_back(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway) as client:
        r = await client.get("/live/echo", headers={"Accept-Encoding": "identity"})
    assert r.headers.get_list("server") == ["uvicorn"]  # one server header, the gateway's own
    assert len(r.headers.get_list("date")) == 1


async def test_hop_by_hop_headers_stay_at_the_gateway(stack: Stack) -> None:
    r = await stack.http.get(
        "/live/echo",
        headers={"Connection": "keep-alive, X-Hop", "X-Hop": "1", "X-Kept": "2", "Forwarded": "for=6.6.6.6"},
    )
    headers = r.json()["headers"]
    assert "x-hop" not in headers and "forwarded" not in headers and headers["x-kept"] == "2"
