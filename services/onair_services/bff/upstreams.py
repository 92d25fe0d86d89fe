"""Calls from the BFF to the services behind it: straight to each service (never through the
gateway), with the caller's ``X-Onair-Identity`` and ``X-Request-ID`` forwarded, one deadline per
call, and a circuit breaker per upstream so a dead or hanging service costs a page nothing.

A call either returns the decoded JSON body of a 2xx answer or raises :class:`UpstreamError`
naming the upstream and what went wrong (``kind``): ``not_found`` (404), ``error_status`` (any other
non-2xx), ``timeout`` (the deadline passed), ``unavailable`` (no connection), ``breaker_open``
(skipped: the upstream failed repeatedly just now), ``bad_body`` (not JSON). Only timeouts and
connection failures count against the breaker: a 4xx/5xx answer means the service is there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import orjson

from onair.auth import IDENTITY_HEADER
from onair.resilience import STATE_VALUES, CircuitBreaker, CircuitOpen, State
from onair_services.bff import metrics
from onair_services.registry import ServiceUrls

REQUEST_ID_HEADER = "X-Request-ID"


class UpstreamError(Exception):
    """A call that gave no usable answer (see the module docstring for ``kind``)."""

    def __init__(self, upstream: str, kind: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"{upstream}: {detail}")
        self.upstream = upstream
        self.kind = kind
        self.detail = detail
        self.status = status


@dataclass(frozen=True)
class Caller:
    """What is forwarded on every call of one page: the signed identity (None: anonymous) and the
    request id."""

    identity: str | None = None
    request_id: str | None = None

    def headers(self) -> dict[str, str]:
        out = {"Accept": "application/json"}
        if self.identity:
            out[IDENTITY_HEADER] = self.identity
        if self.request_id:
            out[REQUEST_ID_HEADER] = self.request_id
        return out


Fetch = Callable[[str, Mapping[str, str | int] | None, dict[str, str], float], Awaitable[tuple[int, bytes]]]


def httpx_fetch(http: httpx.AsyncClient) -> Fetch:
    """GET with the skeleton's ``httpx.AsyncClient`` (``service.http``)."""

    async def fetch(
        url: str, params: Mapping[str, str | int] | None, headers: dict[str, str], deadline_s: float
    ) -> tuple[int, bytes]:
        resp = await http.get(url, params=params, headers=headers, timeout=httpx.Timeout(deadline_s))
        return resp.status_code, resp.content

    return fetch


def aiohttp_fetch(session: aiohttp.ClientSession) -> Fetch:
    """GET with a pooled ``aiohttp.ClientSession`` (the BFF's default: see docs/bff.md)."""

    async def fetch(
        url: str, params: Mapping[str, str | int] | None, headers: dict[str, str], deadline_s: float
    ) -> tuple[int, bytes]:
        query = {k: str(v) for k, v in params.items()} if params else None
        async with session.get(url, params=query, headers=headers) as resp:
            return resp.status, await resp.read()

    return fetch


def aiohttp_session(max_connections: int) -> aiohttp.ClientSession:
    """Keep-alive pool to the upstreams; idle connections closed before uvicorn's 5 s keep-alive
    ends them (so a pooled connection is not reused just as the upstream closes it)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=4.0, ttl_dns_cache=60),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=2.0),
        cookie_jar=aiohttp.DummyCookieJar(),
        raise_for_status=False,
    )


TRANSPORT_ERRORS = (httpx.TransportError, aiohttp.ClientError, ConnectionError, OSError)


class Upstreams:
    """The upstream services of the BFF (base URLs from ``ONAIR_<NAME>_URL``)."""

    def __init__(
        self,
        fetch: Fetch,
        urls: ServiceUrls,
        names: tuple[str, ...],
        *,
        breaker_failures: int = 5,
        breaker_open_s: float = 2.0,
    ) -> None:
        self.fetch = fetch
        self.base = {name: urls.of(name) for name in names}
        self.breakers = {
            name: CircuitBreaker(
                name,
                consecutive_failures=breaker_failures,
                min_calls=max(20, breaker_failures),
                open_s=breaker_open_s,
                max_open_s=max(breaker_open_s, 30.0),
                failure_types=(TimeoutError, *TRANSPORT_ERRORS),
                on_change=_breaker_changed,
            )
            for name in names
        }
        for name in names:
            metrics.BREAKER_STATE.labels(name).set(0)

    async def get(
        self,
        upstream: str,
        path: str,
        *,
        caller: Caller,
        deadline_s: float,
        params: Mapping[str, str | int] | None = None,
    ) -> Any:
        """GET ``path`` of ``upstream`` within ``deadline_s``; the JSON body of a 2xx answer."""
        breaker = self.breakers[upstream]
        try:
            breaker.acquire()
        except CircuitOpen as exc:
            metrics.UPSTREAM_CALLS.labels(upstream, "breaker_open").inc()
            raise UpstreamError(
                upstream, "breaker_open", f"skipped: failing just now (retry in {exc.retry_after_s:.1f} s)"
            ) from None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(deadline_s):
                status, content = await self.fetch(
                    self.base[upstream] + path, params, caller.headers(), deadline_s
                )
        except (TimeoutError, httpx.TimeoutException):
            breaker.failure()
            metrics.UPSTREAM_CALLS.labels(upstream, "timeout").inc()
            raise UpstreamError(upstream, "timeout", f"no answer within {deadline_s:.2f} s") from None
        except TRANSPORT_ERRORS as exc:
            breaker.failure()
            metrics.UPSTREAM_CALLS.labels(upstream, "unavailable").inc()
            raise UpstreamError(upstream, "unavailable", f"cannot reach it ({type(exc).__name__})") from None
        except BaseException:
            breaker.release()
            raise
        finally:
            metrics.UPSTREAM_SECONDS.labels(upstream).observe(time.perf_counter() - started)
        breaker.success()
        if status == 404:
            metrics.UPSTREAM_CALLS.labels(upstream, "not_found").inc()
            raise UpstreamError(upstream, "not_found", _detail(content), 404)
        if not 200 <= status < 300:
            metrics.UPSTREAM_CALLS.labels(upstream, "error_status").inc()
            raise UpstreamError(upstream, "error_status", f"answered {status}: {_detail(content)}", status)
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            metrics.UPSTREAM_CALLS.labels(upstream, "bad_body").inc()
            raise UpstreamError(upstream, "bad_body", "answered something that is not JSON") from None
        metrics.UPSTREAM_CALLS.labels(upstream, "ok").inc()
        return body


def _detail(content: bytes) -> str:
    """The ``detail`` of the skeleton's error body, else the start of the body."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return content[:200].decode("utf-8", "replace")
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])[:300]
    return content[:200].decode("utf-8", "replace")


def _breaker_changed(breaker: CircuitBreaker, _old: State, new: State) -> None:
    metrics.BREAKER_STATE.labels(breaker.name).set(STATE_VALUES[new])
