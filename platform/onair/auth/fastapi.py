"""FastAPI dependencies that read the gateway's signed identity (``X-Onair-Identity``).

```python
from onair.auth.fastapi import CurrentIdentity, identity, require_role

@router.get("/me")
async def me(caller: CurrentIdentity) -> dict: ...                     # 401 without a valid identity

@router.delete("/channels/{cid}", dependencies=[Depends(require_role("admin"))])  # 403 otherwise
```

* :func:`identity` — required: 401 (JSON body ``{"error": "unauthorized", "detail", "reason"}``
  and ``WWW-Authenticate: Bearer ...``) when the header is missing, invalid or expired.
* :func:`optional_identity` — ``None`` when the header is absent, 401 when present but invalid
  (a bad identity is never silently treated as anonymous).
* :func:`require_role` ``(*roles)`` — the identity, or 403 when it holds none of ``roles``.

The verifier is ``request.app.state.identity_verifier`` (an :class:`~onair.auth.IdentityVerifier`;
the service skeleton sets it). A verifier whose JWKS never loaded answers 503. The accepted
identity is also left on ``request.state.identity``.

For OpenAPI, the header is declared as the API-key security scheme ``OnairIdentity`` and every
dependency callable carries ``__onair_auth__`` (``"required"``, ``"optional"`` or ``"role"``; the
role one also ``__onair_roles__``), which the skeleton reads to document 401/403 responses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from onair.auth.identity import IDENTITY_HEADER, Identity, IdentityVerifier
from onair.auth.verify import KeysUnavailable, TokenError
from onair.logging import get_logger
from onair.service.errors import ApiError, Unavailable

log = get_logger("onair.auth.fastapi")

__all__ = [
    "AUTH_MARK",
    "CurrentIdentity",
    "MaybeIdentity",
    "identity",
    "identity_header",
    "optional_identity",
    "require_role",
]

AUTH_MARK = "__onair_auth__"
AuthKind = Literal["required", "optional", "role"]
F = TypeVar("F", bound=Callable[..., Any])

identity_header = APIKeyHeader(
    name=IDENTITY_HEADER,
    scheme_name="OnairIdentity",
    description="Short-lived identity JWT signed by the gateway; clients never send it themselves.",
    auto_error=False,
)


def _mark(kind: AuthKind, fn: F) -> F:
    setattr(fn, AUTH_MARK, kind)
    return fn


def _challenge(error: str | None = None) -> dict[str, str]:
    value = 'Bearer realm="onair"' if error is None else f'Bearer realm="onair", error="{error}"'
    return {"WWW-Authenticate": value}


def _verifier(request: Request) -> IdentityVerifier:
    verifier = getattr(request.app.state, "identity_verifier", None)
    if verifier is None:
        raise RuntimeError("app.state.identity_verifier is not set (an onair.auth.IdentityVerifier)")
    return verifier


async def _verify(request: Request, token: str) -> Identity:
    try:
        caller = await _verifier(request).verify(token)
    except TokenError as exc:
        log.info("auth.identity.rejected", reason=exc.reason, path=request.url.path)
        raise ApiError(
            401,
            "unauthorized",
            f"invalid {IDENTITY_HEADER}: {exc.detail}",
            headers=_challenge("invalid_token"),
            reason=exc.reason,
        ) from None
    except KeysUnavailable:
        raise Unavailable("the gateway's identity keys") from None
    request.state.identity = caller
    return caller


async def _identity(request: Request, token: Annotated[str | None, Security(identity_header)]) -> Identity:
    if not token:
        raise ApiError(
            401,
            "unauthorized",
            f"this route needs a user: no {IDENTITY_HEADER} header (call it through the gateway)",
            headers=_challenge(),
            reason="missing",
        )
    return await _verify(request, token)


async def _optional_identity(
    request: Request, token: Annotated[str | None, Security(identity_header)]
) -> Identity | None:
    if token is None:
        return None
    return await _verify(request, token)


identity = _mark("required", _identity)
"""Dependency: the caller's :class:`Identity`, or 401."""
optional_identity = _mark("optional", _optional_identity)
"""Dependency: the caller's :class:`Identity`, None without the header, 401 when it is invalid."""

CurrentIdentity = Annotated[Identity, Depends(identity)]
MaybeIdentity = Annotated[Identity | None, Depends(optional_identity)]


def require_role(*roles: str) -> Callable[..., Awaitable[Identity]]:
    """Dependency factory: the caller's :class:`Identity` if it holds one of ``roles``; 401 without
    an identity, 403 (``{"error": "forbidden", ..., "required_roles": [...]}``) otherwise."""
    if not roles:
        raise ValueError("require_role needs at least one role")
    wanted = frozenset(roles)
    names = ", ".join(sorted(wanted))

    async def role_dependency(caller: Annotated[Identity, Depends(identity)]) -> Identity:
        if not caller.has_role(*wanted):
            raise ApiError(
                403,
                "forbidden",
                f"this needs one of the roles: {names}",
                headers=_challenge("insufficient_scope"),
                required_roles=sorted(wanted),
            )
        return caller

    role_dependency.__name__ = f"require_role({names})"
    role_dependency.__onair_roles__ = wanted  # type: ignore[attr-defined]
    return _mark("role", role_dependency)
