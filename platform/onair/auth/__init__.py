"""Tokens shared by the gateway, the auth service and every service (docs/auth.md).

* keys: :class:`SigningKey` (Ed25519 / P-256, ``kid`` = RFC 7638 thumbprint, PEM, public JWK,
  ``sign``), :class:`VerificationKey`, :func:`jwks_document`;
* key sources: :class:`JWKSCache` (async JWKS fetch, background refresh, rate-limited refetch on
  an unknown ``kid``), :class:`StaticKeys`;
* :class:`TokenVerifier` -> :class:`Claims` or :class:`TokenError` (stable ``reason`` codes);
* the gateway identity: :class:`Identity`, :class:`IdentitySigner`, :class:`IdentityVerifier`,
  :func:`identity_from_claims`; FastAPI dependencies in :mod:`onair.auth.fastapi`;
* :class:`RevocationList` (revoked ``jti``\\ s through the TokenCache near cache);
* settings: :class:`IdentitySettings` (``ONAIR_IDENTITY_*``), :class:`UserTokenSettings`
  (``ONAIR_AUTH_*``).

:mod:`onair.auth.fastapi` is not imported here, so the gateway and the auth service can use the
rest without the service skeleton.
"""

from onair.auth.identity import (
    IDENTITY_AUDIENCE,
    IDENTITY_HEADER,
    IDENTITY_ISSUER,
    IDENTITY_MAX_TTL_S,
    Identity,
    IdentitySigner,
    IdentityVerifier,
    identity_from_claims,
)
from onair.auth.jwks import JWKSCache, JWKSError, KeySource, StaticKeys, parse_jwks
from onair.auth.keys import (
    ALGORITHMS,
    SigningKey,
    UnsupportedKey,
    VerificationKey,
    is_valid_kid,
    jwk_thumbprint,
    jwks_document,
)
from onair.auth.revocation import RevocationList, RevocationUnavailable
from onair.auth.settings import IdentitySettings, UserTokenSettings
from onair.auth.verify import (
    REASONS,
    REQUIRED_CLAIMS,
    Claims,
    KeysUnavailable,
    TokenError,
    TokenVerifier,
)

__all__ = [
    "ALGORITHMS",
    "IDENTITY_AUDIENCE",
    "IDENTITY_HEADER",
    "IDENTITY_ISSUER",
    "IDENTITY_MAX_TTL_S",
    "REASONS",
    "REQUIRED_CLAIMS",
    "Claims",
    "Identity",
    "IdentitySettings",
    "IdentitySigner",
    "IdentityVerifier",
    "JWKSCache",
    "JWKSError",
    "KeySource",
    "KeysUnavailable",
    "RevocationList",
    "RevocationUnavailable",
    "SigningKey",
    "StaticKeys",
    "TokenError",
    "TokenVerifier",
    "UnsupportedKey",
    "UserTokenSettings",
    "VerificationKey",
    "identity_from_claims",
    "is_valid_kid",
    "jwk_thumbprint",
    "jwks_document",
    "parse_jwks",
]
