"""The auth HTTP API: ``/auth/*`` (sign-up, login, refresh, logout, me) and ``/.well-known/*``.

Refresh-token transport (docs/auth-service.md, "Browsers and other clients"):

* browsers get it in a cookie — ``HttpOnly; Secure; SameSite=Strict; Path=/auth`` — set by login
  and refresh and cleared by logout; the access token travels in the JSON body only (the web app
  keeps it in memory);
* other clients (Locust, ``onair seed``, CLI tools) ask for it in the body with
  ``{"refresh_in_body": true}`` at login and send it back as ``{"refresh_token": "..."}``: a
  refresh answers the way the token came (body -> body, cookie -> cookie).

Every token answer carries ``Cache-Control: no-store``. Failed logins answer the same 401 whether
the user exists or not, after the same argon2 work. No log line holds a password or a token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import Counter

from onair.auth import RevocationList
from onair.auth.fastapi import CurrentIdentity, MaybeIdentity
from onair.logging import get_logger
from onair.service import ApiError, Service, responses, service_of
from onair_services.auth.clientip import bucket, client_ip
from onair_services.auth.keyring import KeyRing
from onair_services.auth.models import now_utc
from onair_services.auth.passwords import PasswordHasher, password_problem
from onair_services.auth.ratelimit import LoginLimiter, RateLimited
from onair_services.auth.schemas import (
    JWKS,
    LoginRequest,
    MeOut,
    OpenIDConfiguration,
    RefreshRequest,
    SignupRequest,
    TokenResponse,
    UserOut,
)
from onair_services.auth.sessions import Issued, RefreshRefused, SessionStore, User
from onair_services.auth.settings import AuthSettings
from onair_services.auth.users import UsernameTaken, UserStore, log_created, roles_for

log = get_logger("onair.auth")

router = APIRouter(prefix="/auth", tags=["auth"])
wellknown = APIRouter(prefix="/.well-known", tags=["discovery"])

LOGINS = Counter("onair_auth_logins_total", "Login attempts by outcome", ["result"])

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="onair"'}


@dataclass
class AuthState:
    """The auth service's running parts (``service.state["auth"]``)."""

    settings: AuthSettings
    keyring: KeyRing
    users: UserStore
    sessions: SessionStore
    hasher: PasswordHasher
    limiter: LoginLimiter
    revocations: RevocationList


def auth_state(svc: Service = Depends(service_of)) -> AuthState:
    state: AuthState = svc.state["auth"]
    return state


def _user_out(user: User) -> UserOut:
    return UserOut(id=user.id, username=user.username, roles=list(user.roles), created_at=user.created_at)


def _seconds_until(when: datetime) -> int:
    return max(0, int((when - now_utc()).total_seconds()))


def _set_cookie(response: Response, settings: AuthSettings, token: str, expires: datetime) -> None:
    response.set_cookie(
        settings.refresh_cookie_name,
        token,
        max_age=_seconds_until(expires),
        path="/auth",
        secure=settings.refresh_cookie_secure,
        httponly=True,
        samesite="strict",
    )


def _clear_cookie(response: Response, settings: AuthSettings) -> None:
    response.delete_cookie(
        settings.refresh_cookie_name,
        path="/auth",
        secure=settings.refresh_cookie_secure,
        httponly=True,
        samesite="strict",
    )


def _tokens(issued: Issued, settings: AuthSettings, response: Response, *, in_body: bool) -> TokenResponse:
    response.headers.update(NO_STORE)
    if not in_body:
        _set_cookie(response, settings, issued.refresh_token, issued.refresh_expires_at)
    return TokenResponse(
        access_token=issued.access_token,
        expires_in=issued.access_expires_in,
        session_id=issued.session_id,
        user=_user_out(issued.user),
        refresh_token=issued.refresh_token if in_body else None,
        refresh_expires_in=_seconds_until(issued.refresh_expires_at),
    )


# -- sign-up ------------------------------------------------------------------------------------------
@router.post(
    "/signup",
    status_code=201,
    response_model=UserOut,
    responses=responses(
        400,
        409,
        s400="weak_password: the password breaks a rule the schema cannot express (see body.password)",
        s409="The username is taken",
    ),
    summary="Create a viewer or streamer account",
)
async def signup(
    body: SignupRequest,
    response: Response,
    svc: Service = Depends(service_of),
    auth: AuthState = Depends(auth_state),
) -> UserOut:
    problem = password_problem(body.password, body.username)
    if problem is not None:
        message = f"the password {problem}"
        raise ApiError(
            400,
            "weak_password",
            f"body.password: {message}",
            fields=[{"field": "body.password", "message": message}],
        )
    taken = ApiError(409, "username_taken", f"the username {body.username!r} is taken", field="body.username")
    if await auth.users.by_username(body.username) is not None:
        raise taken
    password_hash = await auth.hasher.hash(body.password)
    try:
        user = await auth.users.create(body.username, password_hash, roles_for(body.role))
    except UsernameTaken:
        raise taken from None
    position = await log_created(svc, auth.users, user, auth.settings.event_ack_timeout_s)
    if position is not None:
        response.headers["X-Onair-Position"] = str(position)
    return _user_out(user)


# -- login --------------------------------------------------------------------------------------------
@router.post(
    "/login",
    response_model=TokenResponse,
    response_model_exclude_none=True,
    responses=responses(
        401,
        429,
        s401="Wrong username or password (the same answer either way)",
        s429="Too many attempts for this account or address (see Retry-After)",
    ),
    summary="Log in: an access token, and a refresh token (cookie, or body on request)",
)
async def login(
    body: LoginRequest, request: Request, response: Response, auth: AuthState = Depends(auth_state)
) -> TokenResponse:
    settings = auth.settings
    peer = request.client.host if request.client else None
    ip = bucket(client_ip(peer, request.headers.getlist("x-forwarded-for"), settings.trusted_proxies))
    try:
        await auth.limiter.admit(body.username, ip)
    except RateLimited as exc:
        LOGINS.labels("rate_limited").inc()
        log.info("auth.login.rate_limited", scope=exc.scope, retry_after_s=exc.retry_after_s, client=ip)
        raise ApiError(
            429,
            "rate_limited",
            str(exc),
            headers={"Retry-After": str(exc.retry_after_s)},
            scope=exc.scope,
            retry_after_s=exc.retry_after_s,
        ) from None
    found = await auth.users.by_username(body.username)
    ok = await auth.hasher.verify(found[1] if found else None, body.password)
    if not ok or found is None:
        await auth.limiter.failed(body.username, ip)
        LOGINS.labels("bad_credentials").inc()
        log.info("auth.login.failed", client=ip)
        raise ApiError(401, "invalid_credentials", "wrong username or password", headers=CHALLENGE)
    user, password_hash = found
    if auth.hasher.needs_rehash(password_hash):
        await auth.users.set_password_hash(user.id, await auth.hasher.hash(body.password))
    issued = await auth.sessions.start(user)
    LOGINS.labels("ok").inc()
    log.info("auth.login.ok", user_id=user.id, session_id=issued.session_id)
    return _tokens(issued, settings, response, in_body=body.refresh_in_body)


# -- refresh ------------------------------------------------------------------------------------------
_REFUSALS = {
    "invalid": "the refresh token is not valid",
    "expired": "the refresh token or its session has expired; log in again",
    "revoked": "the session was ended; log in again",
    "reused": "the refresh token was already used: the session is revoked; log in again",
}


def _unauthorized(
    error: str, detail: str, settings: AuthSettings, *, clear_cookie: bool, **extra: Any
) -> Response:
    answer = JSONResponse({"error": error, "detail": detail, **extra}, 401, headers={**CHALLENGE, **NO_STORE})
    if clear_cookie:
        _clear_cookie(answer, settings)
    return answer


@router.post(
    "/refresh",
    response_model=TokenResponse,
    response_model_exclude_none=True,
    responses=responses(401, s401="No refresh token, or one that is invalid, expired, revoked or reused"),
    summary="Trade a refresh token for new tokens (single use; reuse revokes the session)",
)
async def refresh(
    request: Request,
    response: Response,
    body: RefreshRequest | None = None,
    auth: AuthState = Depends(auth_state),
) -> Any:
    settings = auth.settings
    in_body = body is not None and body.refresh_token is not None
    token = body.refresh_token if body is not None and body.refresh_token else None
    token = token or request.cookies.get(settings.refresh_cookie_name)
    if not token:
        return _unauthorized(
            "missing_refresh_token",
            f'no refresh token: send the {settings.refresh_cookie_name} cookie or {{"refresh_token": "..."}}',
            settings,
            clear_cookie=False,
        )
    try:
        issued = await auth.sessions.refresh(token)
    except RefreshRefused as exc:
        log.info("auth.refresh.refused", reason=exc.reason)
        return _unauthorized(
            "invalid_refresh_token",
            _REFUSALS[exc.reason],
            settings,
            clear_cookie=not in_body,
            reason=exc.reason,
        )
    return _tokens(issued, settings, response, in_body=in_body)


# -- logout -------------------------------------------------------------------------------------------
@router.post(
    "/logout",
    status_code=204,
    response_class=Response,
    summary="End the session: its refresh tokens and every access token it issued are revoked",
)
async def logout(
    request: Request,
    caller: MaybeIdentity,
    body: RefreshRequest | None = None,
    auth: AuthState = Depends(auth_state),
) -> Response:
    """Ends the session named by the refresh token (cookie or body) and the session of the calling
    access token (its ``sid``, through the gateway's identity); answers 204 either way, and
    clears the cookie."""
    sessions: set[str] = set()
    token = (body.refresh_token if body is not None else None) or request.cookies.get(
        auth.settings.refresh_cookie_name
    )
    if token:
        family = await auth.sessions.family_of(token)
        if family is not None:
            sessions.add(family)
    if (
        caller is not None
        and caller.session_id
        and await auth.sessions.owner_of(caller.session_id) == caller.user_id
    ):
        sessions.add(caller.session_id)
    for session_id in sorted(sessions):
        await auth.sessions.revoke_family(session_id, "logout")
    log.info("auth.logout", sessions=len(sessions), user_id=caller.user_id if caller else None)
    answer = Response(status_code=204, headers=NO_STORE)
    _clear_cookie(answer, auth.settings)
    return answer


# -- me -----------------------------------------------------------------------------------------------
@router.get("/me", response_model=MeOut, responses=responses(404), summary="The calling user")
async def me(caller: CurrentIdentity, auth: AuthState = Depends(auth_state)) -> MeOut:
    user = await auth.users.by_id(caller.user_id)
    if user is None:
        raise ApiError(404, "not_found", "the calling user does not exist (any more)")
    return MeOut(**_user_out(user).model_dump(), session_id=caller.session_id)


# -- discovery ----------------------------------------------------------------------------------------
@wellknown.get("/jwks.json", response_model=JWKS, summary="The public keys that verify access tokens")
async def jwks(auth: AuthState = Depends(auth_state)) -> JSONResponse:
    # No caching beyond a revalidation: rotation relies on verifiers seeing a new key within
    # their refetch interval (docs/auth-service.md).
    return JSONResponse(auth.keyring.jwks(), headers={"Cache-Control": "no-cache"})


@wellknown.get(
    "/openid-configuration", response_model=OpenIDConfiguration, summary="Where the keys and endpoints are"
)
async def openid_configuration(
    request: Request, auth: AuthState = Depends(auth_state)
) -> OpenIDConfiguration:
    settings = auth.settings
    base = (settings.public_url or str(request.base_url)).rstrip("/")
    algs = sorted({r.alg for r in auth.keyring.published()} | {settings.key_alg})
    return OpenIDConfiguration(
        issuer=settings.issuer,
        jwks_uri=f"{base}/.well-known/jwks.json",
        token_endpoint=f"{base}/auth/login",
        userinfo_endpoint=f"{base}/auth/me",
        end_session_endpoint=f"{base}/auth/logout",
        refresh_endpoint=f"{base}/auth/refresh",
        registration_endpoint=f"{base}/auth/signup",
        grant_types_supported=["password", "refresh_token"],
        response_types_supported=["token"],
        subject_types_supported=["public"],
        token_endpoint_auth_methods_supported=["none"],
        id_token_signing_alg_values_supported=algs,
        access_token_signing_alg_values_supported=algs,
        claims_supported=["iss", "aud", "sub", "name", "roles", "iat", "exp", "jti", "sid"],
        audience=settings.audience,
        access_token_lifetime_s=settings.access_token_ttl_s,
        refresh_cookie=settings.refresh_cookie_name,
    )
