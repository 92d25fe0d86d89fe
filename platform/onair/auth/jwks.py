"""Where verifiers get public keys: :class:`JWKSCache` (an issuer's JWKS URL) and :class:`StaticKeys`.

Both are :class:`KeySource`\\ s: ``get_cached(kid)`` answers from memory (no I/O, the hot path),
``await get(kid)`` may fetch first, ``ready`` says whether keys were ever loaded.

:class:`JWKSCache` rules (docs/auth.md, "JWKS caching"):

* fetched asynchronously with httpx (a shared ``AsyncClient`` or one of its own), never on the
  request path except for an unknown ``kid``;
* refreshed in the background every ``refresh_interval_s`` (± 10 % jitter so replicas spread out);
  while no keys are loaded, retried with back-off from ``min_refetch_interval_s``;
* an unknown but well-formed ``kid`` triggers a refetch **at most once per**
  ``min_refetch_interval_s`` (default 5 s), and concurrent misses share that one fetch: a flood of
  random ``kid``\\ s costs the issuer one request per interval. A ``kid`` that is not
  ``[A-Za-z0-9_-]{1,128}`` never triggers a fetch;
* a failed fetch (down, non-200, not JSON, too large, no usable key) keeps the previous keys;
* a successful fetch replaces the set, so a key that leaves the JWKS stops verifying; a key whose
  JWK is unchanged keeps its :class:`~onair.auth.keys.VerificationKey` object (built once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import httpx

from onair.auth.keys import SigningKey, UnsupportedKey, VerificationKey, is_valid_kid, jwks_document
from onair.cache.singleflight import SingleFlight
from onair.clients.base import Lifecycle
from onair.config import timeouts
from onair.logging import get_logger

log = get_logger("onair.auth.jwks")

__all__ = ["JWKSCache", "JWKSError", "KeySource", "StaticKeys", "parse_jwks"]


class JWKSError(ValueError):
    """A JWKS document that cannot be used (not JSON, no ``keys`` list, no usable key, too large)."""


@runtime_checkable
class KeySource(Protocol):
    """What a verifier needs from a key store."""

    @property
    def ready(self) -> bool:
        """Keys have been loaded at least once."""
        ...

    def get_cached(self, kid: str) -> VerificationKey | None:
        """The key for ``kid`` if known now (no I/O)."""
        ...

    async def get(self, kid: str) -> VerificationKey | None:
        """The key for ``kid``, fetching first if the source allows it; None if unknown."""
        ...


def parse_jwks(document: Any, *, max_keys: int = 64) -> tuple[dict[str, VerificationKey], list[str]]:
    """``({kid: key}, [why each skipped entry was skipped])`` for a JWKS document.

    Keys onair does not use (RSA, Ed448, ``use: enc``, ...) are skipped, not fatal; a document with
    no usable key at all raises :class:`JWKSError`. A repeated ``kid`` keeps its first key.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise JWKSError('a JWKS is a JSON object with a "keys" list')
    entries = document["keys"]
    if len(entries) > max_keys:
        raise JWKSError(f"JWKS has {len(entries)} keys; at most {max_keys} are accepted")
    keys: dict[str, VerificationKey] = {}
    skipped: list[str] = []
    for entry in entries:
        try:
            key = VerificationKey.from_jwk(entry)
        except UnsupportedKey as exc:
            skipped.append(str(exc))
            continue
        if key.kid in keys:
            skipped.append(f"JWK {key.kid}: repeated kid, first one kept")
            continue
        keys[key.kid] = key
    if not keys:
        raise JWKSError("JWKS holds no usable key" + (f" ({'; '.join(skipped)})" if skipped else ""))
    return keys, skipped


class StaticKeys(Lifecycle):
    """Keys held in memory: for tests, and for a service that verifies with its own keys.

    Accepts :class:`SigningKey` (its public half is used), :class:`VerificationKey` or public JWK
    dicts. :meth:`replace`, :meth:`add` and :meth:`remove` change the set (e.g. after a rotation).
    """

    def __init__(self, keys: Iterable[SigningKey | VerificationKey | Mapping[str, Any]] = ()) -> None:
        self._keys: dict[str, VerificationKey] = {}
        self.replace(keys)

    @staticmethod
    def _as_key(key: SigningKey | VerificationKey | Mapping[str, Any]) -> VerificationKey:
        if isinstance(key, SigningKey):
            return key.verification_key()
        if isinstance(key, VerificationKey):
            return key
        return VerificationKey.from_jwk(key)

    def replace(self, keys: Iterable[SigningKey | VerificationKey | Mapping[str, Any]]) -> None:
        new: dict[str, VerificationKey] = {}
        for item in keys:
            key = self._as_key(item)
            old = self._keys.get(key.kid)
            new.setdefault(key.kid, old if old is not None and old.same_key(key) else key)
        self._keys = new

    def add(self, key: SigningKey | VerificationKey | Mapping[str, Any]) -> None:
        self.replace([*self._keys.values(), key])

    def remove(self, kid: str) -> None:
        self._keys = {k: v for k, v in self._keys.items() if k != kid}

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    @property
    def ready(self) -> bool:
        return bool(self._keys)

    def get_cached(self, kid: str) -> VerificationKey | None:
        return self._keys.get(kid)

    async def get(self, kid: str) -> VerificationKey | None:
        return self._keys.get(kid)

    def document(self) -> dict[str, Any]:
        return jwks_document(self._keys.values())

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


_FETCH = "jwks"


class JWKSCache(Lifecycle):
    """An issuer's public keys, fetched from ``url`` and cached by ``kid`` (see the module docstring).

    Counters for tests and metrics: :attr:`fetches` (HTTP requests started), :attr:`failures`,
    :attr:`last_success` (``time.time()`` of the last good fetch, or None).
    """

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        refresh_interval_s: float = 300.0,
        min_refetch_interval_s: float = 5.0,
        timeout_s: float | None = None,
        max_bytes: int = 256 * 1024,
        max_keys: int = 64,
    ) -> None:
        if refresh_interval_s <= 0 or min_refetch_interval_s < 0:
            raise ValueError("refresh_interval_s must be > 0 and min_refetch_interval_s >= 0")
        self.url = url
        self.refresh_interval_s = refresh_interval_s
        self.min_refetch_interval_s = min_refetch_interval_s
        self.timeout_s = timeout_s if timeout_s is not None else timeouts().default_timeout_s
        self.max_bytes = max_bytes
        self.max_keys = max_keys
        self._client = client
        self._owns_client = client is None
        self._keys: dict[str, VerificationKey] = {}
        self._flight: SingleFlight[str, bool] = SingleFlight()
        self._last_attempt = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()
        self._skipped: tuple[str, ...] = ()
        self.fetches = 0
        self.failures = 0
        self.last_success: float | None = None

    # -- KeySource ---------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return bool(self._keys)

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def get_cached(self, kid: str) -> VerificationKey | None:
        return self._keys.get(kid)

    async def get(self, kid: str) -> VerificationKey | None:
        key = self._keys.get(kid)
        if key is not None or not is_valid_kid(kid):
            return key
        if not self._flight.in_flight(_FETCH) and (
            time.monotonic() - self._last_attempt < self.min_refetch_interval_s
        ):
            return None  # fetched moments ago: an unknown kid now is not a reason to ask again
        await self._fetch_shared()
        return self._keys.get(kid)

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Fetch once (a failure is logged, not raised: ``ready`` stays False and the background
        task keeps trying), then refresh in the background."""
        if self._task is not None:
            return
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
        await self._fetch_shared()
        self._task = asyncio.create_task(self._refresh_loop(), name=f"jwks-refresh {self.url}")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait until keys are loaded (True) or ``timeout_s`` passes (False)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._loaded.wait()
        return self.ready

    async def refresh(self) -> bool:
        """Fetch now (joining a fetch in flight), ignoring the refetch interval; True on success."""
        return await self._fetch_shared()

    # -- fetching ----------------------------------------------------------------------------------
    async def _fetch_shared(self) -> bool:
        if not self._flight.in_flight(_FETCH):
            self._last_attempt = time.monotonic()
        ok, _ = await self._flight.do(_FETCH, self._fetch)
        return ok

    async def _refresh_loop(self) -> None:
        backoff = max(self.min_refetch_interval_s, 0.5)
        while True:
            if self.ready:
                delay = self.refresh_interval_s * random.uniform(0.9, 1.1)
            else:
                delay = min(backoff, self.refresh_interval_s)
                backoff = min(backoff * 2, self.refresh_interval_s)
            await asyncio.sleep(delay)
            try:
                ok = await self._fetch_shared()
            except Exception as exc:  # never let the refresher die: keep serving, try again later
                log.error("auth.jwks.refresh_error", url=self.url, error=repr(exc))
                ok = False
            if ok:
                backoff = max(self.min_refetch_interval_s, 0.5)

    async def _fetch(self) -> bool:
        if self._client is None:
            raise RuntimeError("JWKSCache not started: call await cache.start() or use 'async with'")
        self.fetches += 1
        try:
            document = await self._download(self._client)
            keys, skipped = parse_jwks(document, max_keys=self.max_keys)
        except (httpx.HTTPError, httpx.InvalidURL, JWKSError, OSError) as exc:
            self.failures += 1
            log.warning(
                "auth.jwks.fetch_failed", url=self.url, error=str(exc) or repr(exc), keys_kept=len(self._keys)
            )
            return False
        self._install(keys, skipped)
        return True

    async def _download(self, client: httpx.AsyncClient) -> Any:
        async with client.stream(
            "GET",
            self.url,
            headers={"Accept": "application/json"},
            timeout=self.timeout_s,
            follow_redirects=False,
        ) as response:
            if response.status_code != 200:
                raise JWKSError(f"HTTP {response.status_code} from the JWKS URL")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self.max_bytes:
                    raise JWKSError(f"JWKS larger than {self.max_bytes} bytes")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise JWKSError(f"JWKS is not JSON: {exc}") from None

    def _install(self, keys: dict[str, VerificationKey], skipped: list[str]) -> None:
        old = self._keys
        for kid, key in keys.items():
            previous = old.get(kid)
            if previous is not None and previous.same_key(key):
                keys[kid] = previous  # built once: verifiers compare key objects by identity
        self._keys = keys
        self.last_success = time.time()
        self._loaded.set()
        added, removed = keys.keys() - old.keys(), old.keys() - keys.keys()
        if added or removed or tuple(skipped) != self._skipped:
            log.info(
                "auth.jwks.keys_changed",
                url=self.url,
                kids=sorted(keys),
                added=sorted(added),
                removed=sorted(removed),
                skipped=skipped,
            )
        self._skipped = tuple(skipped)
