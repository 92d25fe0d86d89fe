"""The signed identity the gateway hands to services (header ``X-Onair-Identity``).

The gateway verifies the user's access token, then signs a short-lived (<= 60 s) JWT with its
*own* key — never forwarding the user's raw token — carrying ``sub`` (user id), ``name``
(username), ``roles``, ``rid`` (request id), ``sid`` (the user's session, when the access token
has one), ``iat``, ``exp`` and a fresh ``jti`` (docs/contracts.md, "Identities and tokens").
Services verify it locally from the gateway's JWKS.

* :class:`Identity` — who is calling: what route handlers see.
* :class:`IdentitySigner` — gateway side, once per request (encoded header cached, orjson claims).
* :class:`IdentityVerifier` — service side: a :class:`~onair.auth.verify.TokenVerifier` pinned to
  ``iss=onair-gateway``, ``aud=onair-services``, lifetime <= 60 s, returning an :class:`Identity`.
* :func:`identity_from_claims` — gateway side: the verified user access token -> :class:`Identity`.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from onair.auth.jwks import KeySource
from onair.auth.keys import SigningKey
from onair.auth.verify import Claims, TokenError, TokenVerifier

IDENTITY_HEADER: Final = "X-Onair-Identity"
IDENTITY_ISSUER: Final = "onair-gateway"
IDENTITY_AUDIENCE: Final = "onair-services"
IDENTITY_MAX_TTL_S: Final = 60

__all__ = [
    "IDENTITY_AUDIENCE",
    "IDENTITY_HEADER",
    "IDENTITY_ISSUER",
    "IDENTITY_MAX_TTL_S",
    "Identity",
    "IdentitySigner",
    "IdentityVerifier",
    "identity_from_claims",
]


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller. ``token_id`` is the ``jti`` of the token it was read from;
    ``session_id`` is the user's login session (claim ``sid``: the auth service's refresh-token
    family), carried from the access token through the gateway's identity so a service (the auth
    service's logout) knows which session the call belongs to."""

    user_id: str
    username: str
    roles: frozenset[str]
    request_id: str | None = None
    token_id: str = ""
    session_id: str | None = None

    def has_role(self, *roles: str) -> bool:
        """True when the caller holds at least one of ``roles``."""
        return not self.roles.isdisjoint(roles)


def identity_from_claims(claims: Claims, request_id: str | None = None) -> Identity:
    """The :class:`Identity` in verified claims (``sub``, ``name``, ``roles``, optional ``sid``; ``rid``
    unless ``request_id`` is given). Raises :class:`TokenError` ``invalid_claim`` for a missing
    ``name``, ``roles`` that is not a list of strings, or a ``sid`` that is not a string."""
    name = claims.get("name")
    if not isinstance(name, str) or not name:
        raise TokenError("invalid_claim", "'name' must be a non-empty string")
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise TokenError("invalid_claim", "'roles' must be a list of strings")
    rid = request_id if request_id is not None else claims.get("rid")
    if rid is not None and not isinstance(rid, str):
        raise TokenError("invalid_claim", "'rid' must be a string")
    sid = claims.get("sid")
    if sid is not None and (not isinstance(sid, str) or not 0 < len(sid) <= 128):
        raise TokenError("invalid_claim", "'sid' must be a string of 1-128 characters")
    return Identity(claims.subject, name, frozenset(roles), rid, claims.token_id, sid)


def _new_jti() -> str:
    return base64.urlsafe_b64encode(os.urandom(12)).decode("ascii")


class IdentitySigner:
    """Signs identities with the gateway's key: ``signer.sign(identity) -> compact JWT``.

    Every gateway replica must sign with a key the services' JWKS knows (share one key, or publish
    every replica's key): see docs/auth.md.
    """

    def __init__(
        self,
        key: SigningKey,
        *,
        issuer: str = IDENTITY_ISSUER,
        audience: str = IDENTITY_AUDIENCE,
        ttl_s: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < ttl_s <= IDENTITY_MAX_TTL_S:
            raise ValueError(f"identity ttl_s must be 1..{IDENTITY_MAX_TTL_S} seconds")
        self.key = key
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = int(ttl_s)
        self._clock = clock

    def sign(self, identity: Identity) -> str:
        """A fresh identity token (new ``jti``, ``iat`` = now, ``exp`` = now + ttl)."""
        now = int(self._clock())
        claims: dict[str, object] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": identity.user_id,
            "name": identity.username,
            "roles": sorted(identity.roles),
            "iat": now,
            "exp": now + self.ttl_s,
            "jti": _new_jti(),
        }
        if identity.request_id is not None:
            claims["rid"] = identity.request_id
        if identity.session_id is not None:
            claims["sid"] = identity.session_id
        return self.key.sign(claims)

    def sign_for(
        self, user_id: str, username: str, roles: Iterable[str], request_id: str | None = None
    ) -> str:
        return self.sign(Identity(user_id, username, frozenset(roles), request_id))


class IdentityVerifier:
    """Service side: ``await verifier.verify(header_value) -> Identity`` (or :class:`TokenError`).

    ``keys`` is the gateway's JWKS (:class:`~onair.auth.jwks.JWKSCache`) or, in tests and
    single-process setups, :class:`~onair.auth.jwks.StaticKeys`. The token lifetime is capped at
    60 s whatever the signer claims; ``name`` and ``roles`` are required.
    """

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str = IDENTITY_ISSUER,
        audience: str = IDENTITY_AUDIENCE,
        leeway_s: float = 5.0,
        algorithms: Iterable[str] = ("EdDSA", "ES256"),
        cache_size: int = 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tokens = TokenVerifier(
            keys,
            issuer=issuer,
            audience=audience,
            algorithms=algorithms,
            leeway_s=leeway_s,
            max_lifetime_s=IDENTITY_MAX_TTL_S,
            cache_size=cache_size,
            required_claims=("name", "roles"),
            clock=clock,
        )

    @property
    def keys(self) -> KeySource:
        return self.tokens.keys

    async def verify(self, token: str) -> Identity:
        return identity_from_claims(await self.tokens.verify(token))
