"""Request and response bodies of the auth API (constraints live here, so OpenAPI shows them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from onair_services.auth.passwords import MAX_LENGTH, MIN_LENGTH
from onair_services.auth.users import USERNAME_PATTERN

Username = Field(
    pattern=USERNAME_PATTERN,
    min_length=3,
    max_length=32,
    description="3-32 characters: lower-case letters, digits and _",
    examples=["alice"],
)


class SignupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Username
    password: str = Field(
        min_length=MIN_LENGTH,
        max_length=MAX_LENGTH,
        description=(
            f"{MIN_LENGTH}-{MAX_LENGTH} characters (else 422); a password the schema allows can still be "
            "refused with 400 weak_password: one kind of characters only (lower case, upper case, digits, "
            "symbols), containing the username, a common password or a dressed-up common word"
        ),
    )
    role: Literal["viewer", "streamer"] = Field(
        default="viewer", description="viewer, or streamer (also a viewer); admin is never self-assigned"
    )


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64, description="Case does not matter", examples=["alice"])
    password: str = Field(min_length=1, max_length=MAX_LENGTH)
    refresh_in_body: bool = Field(
        default=False,
        description="Non-browser clients: return the refresh token in the body (no cookie is set)",
    )

    @field_validator("username")
    @classmethod
    def _normalise(cls, value: str) -> str:
        return value.strip().lower()


class RefreshRequest(BaseModel):
    """Browsers send no body (the cookie carries the token); other clients send the token here."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: str | None = Field(default=None, min_length=1, max_length=512)


class UserOut(BaseModel):
    id: str = Field(description="Opaque user id (the tokens' sub)")
    username: str
    roles: list[str]
    created_at: datetime


class MeOut(UserOut):
    session_id: str | None = Field(default=None, description="The login session of the calling token (sid)")


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="Seconds until the access token expires")
    session_id: str = Field(description="The login session (the tokens' sid)")
    user: UserOut
    refresh_token: str | None = Field(
        default=None, description="Only with refresh_in_body (or a refresh sent in the body); else a cookie"
    )
    refresh_expires_in: int = Field(description="Seconds until the refresh token expires unused")


class JWKS(BaseModel):
    keys: list[dict[str, Any]]


class OpenIDConfiguration(BaseModel):
    """The discovery document (OpenID Connect Discovery 1.0 names where one fits)."""

    model_config = ConfigDict(extra="allow")

    issuer: str
    jwks_uri: str
    token_endpoint: str
    userinfo_endpoint: str
    end_session_endpoint: str
    refresh_endpoint: str
    registration_endpoint: str
    grant_types_supported: list[str]
    response_types_supported: list[str]
    subject_types_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    id_token_signing_alg_values_supported: list[str]
    access_token_signing_alg_values_supported: list[str]
    claims_supported: list[str]
