"""Authentication at the gateway: the bearer token in, the signed identity out.

``Authorization: Bearer <access token>`` (or, for WebSocket handshakes and SSE requests, the
``access_token`` query parameter of RFC 6750 §2.3) is verified locally with
:class:`onair.auth.TokenVerifier` on the auth service's JWKS, revocation included (the near
cache: no Valkey command in steady state). What the route table asks for then decides:

* no token: ``public`` and ``optional`` routes go on anonymously, ``required`` ones get 401;
* a bad token (any :data:`onair.auth.REASONS`): 401 on every route that looks at tokens, with
  ``WWW-Authenticate: Bearer realm="onair", error="invalid_token", error_description="..."``
  and ``{"error": "unauthorized", "detail", "reason"}``; never silently anonymous;
* a valid token without a role the route needs for this method: 403 (``insufficient_scope``).

The upstream then gets ``X-Onair-Identity``: a fresh identity JWT signed with the gateway's key
(:class:`onair.auth.IdentitySigner`), never the user's token.
"""

from __future__ import annotations

from typing import Any

from onair.auth import (
    Identity,
    IdentitySigner,
    KeysUnavailable,
    RevocationUnavailable,
    TokenError,
    TokenVerifier,
    identity_from_claims,
)
from onair_services.gateway.metrics import AUTH_FAILURES
from onair_services.gateway.table import Route

REALM = 'Bearer realm="onair"'


class Refusal(Exception):
    """The request stops here: ``status`` with ``{"error": code, "detail": detail, **extra}``."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        headers: tuple[tuple[bytes, bytes], ...] = (),
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers
        self.extra = extra


def _challenge(error: str | None = None, description: str | None = None) -> tuple[tuple[bytes, bytes], ...]:
    value = REALM
    if error:
        value += f', error="{error}"'
    if description:
        clean = description.replace("\\", "").replace('"', "'")
        value += f', error_description="{clean}"'
    return ((b"www-authenticate", value.encode("latin-1", "replace")),)


def unauthorized(reason: str, detail: str, *, error: str | None = "invalid_token") -> Refusal:
    AUTH_FAILURES.labels(reason).inc()
    return Refusal(401, "unauthorized", detail, _challenge(error, detail), {"reason": reason})


def bearer_token(authorization: bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value (None without the header);
    :class:`Refusal` 401 for another scheme or a malformed value."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() != b"bearer":
        raise unauthorized(
            "bad_scheme", "the Authorization header must be 'Bearer <access token>'", error="invalid_request"
        )
    token = token.strip()
    if not token or b" " in token:
        raise unauthorized("malformed", "the bearer token is empty or malformed", error="invalid_request")
    try:
        return token.decode("ascii")
    except UnicodeDecodeError:
        raise unauthorized("malformed", "the bearer token is not ASCII", error="invalid_request") from None


class Authenticator:
    """Verifies access tokens and signs identities (one per gateway process)."""

    def __init__(self, verifier: TokenVerifier, signer: IdentitySigner) -> None:
        self.verifier = verifier
        self.signer = signer

    async def authenticate(
        self, route: Route, method: str, token: str | None, request_id: str
    ) -> Identity | None:
        """The caller of this request (None: anonymous and allowed), or :class:`Refusal`."""
        if token is None:
            if route.auth == "required":
                AUTH_FAILURES.labels("missing").inc()
                raise Refusal(
                    401,
                    "unauthorized",
                    "this route needs a user: send 'Authorization: Bearer <access token>'",
                    _challenge(),
                    {"reason": "missing"},
                )
            return None
        try:
            claims = await self.verifier.verify(token)
            caller = identity_from_claims(claims, request_id=request_id)
        except TokenError as exc:
            raise unauthorized(exc.reason, exc.detail) from None
        except KeysUnavailable:
            raise Refusal(
                503,
                "unavailable",
                "the auth service's keys could not be loaded yet; retry shortly",
                ((b"retry-after", b"1"),),
            ) from None
        except RevocationUnavailable:
            raise Refusal(
                503,
                "unavailable",
                "token revocation cannot be checked right now; retry shortly",
                ((b"retry-after", b"1"),),
            ) from None
        needed = route.roles_for(method)
        if needed and not caller.has_role(*needed):
            AUTH_FAILURES.labels("forbidden").inc()
            names = ", ".join(needed)
            raise Refusal(
                403,
                "forbidden",
                f"{method} {route.prefix} needs one of the roles: {names}",
                _challenge("insufficient_scope"),
                {"required_roles": list(needed)},
            )
        return caller

    def identity_header(self, caller: Identity) -> str:
        """A fresh ``X-Onair-Identity`` value for ``caller``."""
        return self.signer.sign(caller)
