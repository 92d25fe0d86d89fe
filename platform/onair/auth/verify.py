"""Verify a compact JWT against a :class:`~onair.auth.jwks.KeySource`: :class:`TokenVerifier`.

Order of checks (the first failure wins and names a stable :data:`REASONS` code):

1. shape: a string of at most ``max_token_bytes``, three canonical base64url segments, a JSON
   object header (``malformed``);
2. header, before any key is looked up: ``alg`` present (``malformed``), not ``none``
   (``alg_none``), in the allow-list — EdDSA / ES256 only, so HS*/RS* and the "HS256 signed with the
   public key" confusion never reach a key (``alg_not_allowed``); no ``jku``/``x5u``/``jwk``/``x5c``
   (``forbidden_header``); no ``crit`` (``crit_header``); a ``kid`` (``kid_missing``) of
   ``[A-Za-z0-9_-]{1,128}`` (``kid_invalid``);
3. key: known, after at most one rate-limited refetch (``kid_unknown``; :class:`KeysUnavailable`
   instead when the source never loaded any key, so an issuer outage is a 503, not a 401), and
   of the token's algorithm (``key_mismatch``: an ES256 token naming an Ed25519 key);
4. signature, by PyJWT's algorithm object bound to the key (``bad_signature``);
5. claims, all time checks with ``leeway_s``: the payload is a JSON object (``malformed``); every
   required claim present (``missing_claim``; ``iss aud exp iat jti sub`` always); ``exp``/``iat``/
   ``nbf`` numbers, ``sub`` and ``jti`` non-empty strings (``invalid_claim``); ``iat`` or ``nbf``
   in the future (``not_yet_valid``); ``exp`` passed (``expired``); ``iss`` (``wrong_issuer``);
   ``aud`` (``wrong_audience``); ``exp - iat <= max_lifetime_s`` (``lifetime_too_long``); then the
   revocation list if one is given (``revoked``).

The claim rules are PyJWT's ``decode`` rules with every claim required; they are applied here
rather than by ``jwt.decode`` because its segment parsing costs more than the Ed25519 check itself
(a per-character Python loop) and a full verification is on every service request.

Verified tokens are kept in a bounded LRU keyed by the token string. A hit still checks ``exp``,
that the ``kid`` still maps to the *same* key object (a key removed from the JWKS, or replaced
under the same ``kid``, stops validating its cached tokens) and the revocation list.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Protocol

import orjson

from onair.auth.jwks import KeySource
from onair.auth.keys import ALGORITHMS, VerificationKey, is_valid_kid

REASONS: Final = frozenset(
    {
        "malformed",
        "alg_none",
        "alg_not_allowed",
        "forbidden_header",
        "crit_header",
        "kid_missing",
        "kid_invalid",
        "kid_unknown",
        "key_mismatch",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "wrong_issuer",
        "wrong_audience",
        "missing_claim",
        "invalid_claim",
        "lifetime_too_long",
        "revoked",
    }
)
"""Every reason a token is refused. Stable: clients, logs and metrics may rely on them."""

REQUIRED_CLAIMS: Final = ("iss", "aud", "exp", "iat", "jti", "sub")
FORBIDDEN_HEADERS: Final = frozenset({"jku", "x5u", "jwk", "x5c"})
"""Header parameters that point at or embed a key: the verifier never lets a token choose its key."""

MAX_JTI_LENGTH: Final = 256


class TokenError(Exception):
    """A token was refused: ``reason`` is one of :data:`REASONS`, ``detail`` says why for a human
    (it never contains the token)."""

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class KeysUnavailable(ConnectionError):
    """The key source has never loaded a key (issuer unreachable since start): retry later (503)."""


class RevocationCheck(Protocol):
    async def is_revoked(self, jti: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified claims of a token. ``raw`` holds every claim; treat it as read-only."""

    subject: str
    token_id: str
    issuer: str
    audience: tuple[str, ...]
    issued_at: float
    expires_at: float
    kid: str
    alg: str
    raw: Mapping[str, Any] = field(repr=False)

    def __getitem__(self, name: str) -> Any:
        return self.raw[name]

    def __contains__(self, name: object) -> bool:
        return name in self.raw

    def get(self, name: str, default: Any = None) -> Any:
        return self.raw.get(name, default)


_SEGMENT: Final = re.compile(r"[A-Za-z0-9_-]*")


def _b64_segment(segment: str) -> bytes | None:
    """Strict base64url (no padding, canonical: unused trailing bits zero), or None."""
    if len(segment) % 4 == 1 or _SEGMENT.fullmatch(segment) is None:
        return None
    try:
        data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return None
    if base64.urlsafe_b64encode(data).rstrip(b"=") != segment.encode("ascii"):
        return None
    return data


def _json_object(segment: str) -> dict[str, Any] | None:
    data = _b64_segment(segment)
    if data is None:
        return None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class TokenVerifier:
    """Verifies tokens of one issuer for one audience; ``await verify(token) -> Claims``.

    ``audience`` is the one this verifier serves (or several; a token naming any is accepted).
    ``max_lifetime_s`` bounds ``exp - iat`` (None: no bound). ``revocations`` (optional) is asked
    ``is_revoked(jti)`` for every accepted token, cached or not; if it raises (e.g.
    :class:`onair.auth.RevocationUnavailable`) the error propagates. ``cache_size=0`` disables the
    verified-token cache.
    """

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str | Iterable[str],
        algorithms: Iterable[str] = ("EdDSA", "ES256"),
        leeway_s: float = 5.0,
        max_lifetime_s: float | None = None,
        revocations: RevocationCheck | None = None,
        cache_size: int = 10_000,
        max_token_bytes: int = 8192,
        required_claims: Iterable[str] = REQUIRED_CLAIMS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.algorithms = tuple(algorithms)
        unsupported = set(self.algorithms) - ALGORITHMS.keys()
        if unsupported or not self.algorithms:
            raise ValueError(f"algorithms must be a non-empty subset of {sorted(ALGORITHMS)}")
        if not issuer:
            raise ValueError("issuer is required")
        if leeway_s < 0 or cache_size < 0:
            raise ValueError("leeway_s and cache_size must be >= 0")
        self.keys = keys
        self.issuer = issuer
        self._audiences = frozenset([audience] if isinstance(audience, str) else audience)
        if not self._audiences or not all(self._audiences):
            raise ValueError("audience is required")
        self.leeway_s = float(leeway_s)
        self.max_lifetime_s = max_lifetime_s
        self.revocations = revocations
        self.cache_size = cache_size
        self.max_token_bytes = max_token_bytes
        self.required_claims = tuple(dict.fromkeys([*REQUIRED_CLAIMS, *required_claims]))
        self._clock = clock
        self._cache: OrderedDict[str, tuple[Claims, VerificationKey]] = OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0

    @property
    def audiences(self) -> frozenset[str]:
        return self._audiences

    def clear_cache(self) -> None:
        self._cache.clear()

    async def verify(self, token: str) -> Claims:
        """The claims of ``token``, or :class:`TokenError` (or :class:`KeysUnavailable`)."""
        claims = self._cached(token)
        if claims is None:
            claims = await self._verify_fully(token)
        if self.revocations is not None and await self.revocations.is_revoked(claims.token_id):
            raise TokenError("revoked", "the token was revoked")
        return claims

    # -- the cache ---------------------------------------------------------------------------------
    def _cached(self, token: str) -> Claims | None:
        if self.cache_size == 0:
            return None
        hit = self._cache.get(token)
        if hit is None:
            self.cache_misses += 1
            return None
        claims, key = hit
        if self.keys.get_cached(claims.kid) is not key:
            del self._cache[token]  # key gone or replaced: verify again (and most likely refuse)
            self.cache_misses += 1
            return None
        if claims.expires_at <= self._clock() - self.leeway_s:
            del self._cache[token]
            raise TokenError("expired", "the token has expired")
        self._cache.move_to_end(token)
        self.cache_hits += 1
        return claims

    def _remember(self, token: str, claims: Claims, key: VerificationKey) -> None:
        if self.cache_size == 0:
            return
        self._cache[token] = (claims, key)
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    # -- full verification -------------------------------------------------------------------------
    async def _verify_fully(self, token: str) -> Claims:
        if not isinstance(token, str) or not token:
            raise TokenError("malformed", "no token")
        if len(token) > self.max_token_bytes:
            raise TokenError("malformed", f"token longer than {self.max_token_bytes} bytes")
        parts = token.split(".")
        if len(parts) != 3 or not token.isascii():
            raise TokenError("malformed", "a compact JWS is three dot-separated base64url segments")
        header = _json_object(parts[0])
        if header is None:
            raise TokenError("malformed", "the header is not a base64url JSON object")
        alg, kid = self._check_header(header)
        key = self.keys.get_cached(kid) or await self.keys.get(kid)
        if key is None:
            if not self.keys.ready:
                raise KeysUnavailable("no signing keys loaded yet; the issuer's JWKS is unreachable")
            raise TokenError("kid_unknown", "the token names a key the issuer does not publish")
        if key.alg != alg:
            raise TokenError("key_mismatch", f"key {kid} is a {key.alg} key; the token says {alg}")
        signature = _b64_segment(parts[2])
        if signature is None:
            raise TokenError("malformed", "the signature is not base64url")
        signing_input = token[: len(parts[0]) + 1 + len(parts[1])].encode("ascii")
        if not key.key.Algorithm.verify(signing_input, key.key.key, signature):
            raise TokenError("bad_signature", "the signature does not match the key")
        payload = _json_object(parts[1])
        if payload is None:
            raise TokenError("malformed", "the payload is not a base64url JSON object")
        claims = self._check_claims(payload, kid, alg)
        self._remember(token, claims, key)
        return claims

    def _check_header(self, header: Mapping[str, Any]) -> tuple[str, str]:
        alg = header.get("alg")
        if not isinstance(alg, str) or not alg:
            raise TokenError("malformed", "the header has no 'alg'")
        if alg.lower() == "none":
            raise TokenError("alg_none", "unsigned tokens (alg none) are refused")
        if alg not in self.algorithms:
            allowed = ", ".join(self.algorithms)
            raise TokenError("alg_not_allowed", f"alg {alg[:20]!r} is not one of {allowed}")
        forbidden = FORBIDDEN_HEADERS & header.keys()
        if forbidden:
            names = ", ".join(sorted(forbidden))
            raise TokenError("forbidden_header", f"header {names} refused: keys come from the JWKS")
        if "crit" in header:
            raise TokenError("crit_header", "no critical header extension is supported")
        kid = header.get("kid")
        if kid is None:
            raise TokenError("kid_missing", "the header has no 'kid'")
        if not is_valid_kid(kid):
            raise TokenError("kid_invalid", "'kid' must be 1-128 characters of [A-Za-z0-9_-]")
        return alg, kid

    def _check_claims(self, payload: dict[str, Any], kid: str, alg: str) -> Claims:
        for name in self.required_claims:
            if payload.get(name) is None:
                raise TokenError("missing_claim", f"the token lacks the '{name}' claim")
        for name in ("exp", "iat", "nbf"):
            if name in payload and not _is_number(payload[name]):
                raise TokenError("invalid_claim", f"'{name}' must be a number of seconds")
        sub, jti, iss, aud = payload["sub"], payload["jti"], payload["iss"], payload["aud"]
        if not isinstance(sub, str) or not sub:
            raise TokenError("invalid_claim", "'sub' must be a non-empty string")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
            raise TokenError("invalid_claim", f"'jti' must be a string of 1-{MAX_JTI_LENGTH} characters")
        exp, iat = float(payload["exp"]), float(payload["iat"])
        now = self._clock()
        if iat > now + self.leeway_s:
            raise TokenError("not_yet_valid", "the token was issued in the future (iat)")
        nbf = payload.get("nbf")
        if nbf is not None and nbf > now + self.leeway_s:
            raise TokenError("not_yet_valid", "the token is not valid yet (nbf)")
        if exp <= now - self.leeway_s:
            raise TokenError("expired", "the token has expired")
        if iss != self.issuer:
            raise TokenError("wrong_issuer", "the token is from another issuer")
        audiences = (aud,) if isinstance(aud, str) else aud
        if not isinstance(audiences, list | tuple) or not all(isinstance(a, str) for a in audiences):
            raise TokenError("invalid_claim", "'aud' must be a string or a list of strings")
        if self._audiences.isdisjoint(audiences):
            raise TokenError("wrong_audience", "the token is meant for another audience")
        if self.max_lifetime_s is not None and exp - iat > self.max_lifetime_s:
            raise TokenError(
                "lifetime_too_long", f"exp - iat is {exp - iat:.0f} s; at most {self.max_lifetime_s:.0f} s"
            )
        return Claims(
            subject=sub,
            token_id=jti,
            issuer=iss,
            audience=tuple(audiences),
            issued_at=iat,
            expires_at=exp,
            kid=kid,
            alg=alg,
            raw=MappingProxyType(payload),
        )
