"""Signing keys and public keys: Ed25519 (EdDSA) and P-256 (ES256) only.

* :class:`SigningKey` — a private key that signs compact JWTs. ``kid`` is the RFC 7638 JWK
  thumbprint of its public key, so the same key always has the same id and two different keys
  never share one. Load/dump as PKCS#8 PEM; :attr:`SigningKey.public_jwk` is what gets published.
* :class:`VerificationKey` — a public key read from a JWK (a JWKS entry), checked once
  (supported ``kty``/``crv``, ``alg`` consistent with them, ``use: sig``, no private members) and
  turned into a PyJWT key object once, so verification never rebuilds it.
* :func:`jwks_document` — the ``{"keys": [...]}`` document an issuer publishes.

Signing is on the gateway's per-request path: the protected header of a key is encoded once, the
claims with orjson, and the signature comes from PyJWT's algorithm object (which also turns the
DER signature of ECDSA into the JWS ``r || s`` form).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt import PyJWK
from jwt.algorithms import get_default_algorithms
from jwt.exceptions import PyJWTError

Algorithm = Literal["EdDSA", "ES256"]

#: The only algorithms onair signs or verifies with, and the JWK ``(kty, crv)`` each needs.
ALGORITHMS: Final[dict[str, tuple[str, str]]] = {"EdDSA": ("OKP", "Ed25519"), "ES256": ("EC", "P-256")}
_ALG_OF_KEY_TYPE: Final = {v: k for k, v in ALGORITHMS.items()}

KID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
"""A syntactically valid ``kid`` (thumbprints and most issuers' ids fit; ``../x`` or ``a b`` do not)."""

#: JWK members that only a private key has: a JWKS holding any of them is refused.
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
#: Members each key type's RFC 7638 thumbprint is computed over.
_THUMBPRINT_MEMBERS: Final = {
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
    "RSA": ("e", "kty", "n"),
    "oct": ("k", "kty"),
}
_TIME_CLAIMS: Final = ("exp", "iat", "nbf")


class UnsupportedKey(ValueError):
    """A key or JWK onair does not use (wrong type or curve, inconsistent ``alg``, private members)."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def is_valid_kid(kid: object) -> bool:
    """True for a ``kid`` worth looking up: 1-128 characters of ``[A-Za-z0-9_-]``."""
    return isinstance(kid, str) and KID_PATTERN.fullmatch(kid) is not None


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint (base64url) of a public JWK: the required members only, sorted,
    no whitespace."""
    kty = jwk.get("kty")
    members = _THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None:
        raise UnsupportedKey(f"no thumbprint for kty {kty!r}")
    try:
        required = {name: jwk[name] for name in members}
    except KeyError as exc:
        raise UnsupportedKey(f"JWK of kty {kty} lacks {exc.args[0]!r}") from None
    canonical = json.dumps(required, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def _public_members(public_key: Ed25519PublicKey | ec.EllipticCurvePublicKey) -> dict[str, str]:
    if isinstance(public_key, Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
    numbers = public_key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot put {type(value).__name__} in a JWT")


class SigningKey:
    """A private signing key (Ed25519 or P-256) with its ``kid``, ``alg`` and public JWK.

    ``repr`` and ``str`` never show private material; :meth:`private_pem` is the only way out.
    """

    __slots__ = ("_algorithm", "_header_segment", "_private", "alg", "kid", "public_jwk")

    def __init__(self, private_key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> None:
        if isinstance(private_key, Ed25519PrivateKey):
            self.alg: Algorithm = "EdDSA"
        elif isinstance(private_key, ec.EllipticCurvePrivateKey) and isinstance(
            private_key.curve, ec.SECP256R1
        ):
            self.alg = "ES256"
        else:
            raise UnsupportedKey("signing keys are Ed25519 (EdDSA) or P-256 (ES256)")
        self._private = private_key
        members = _public_members(private_key.public_key())
        self.kid = jwk_thumbprint(members)
        self.public_jwk: dict[str, str] = {**members, "kid": self.kid, "alg": self.alg, "use": "sig"}
        self._algorithm = get_default_algorithms()[self.alg]
        self._header_segment = self._encode_header({})

    # -- making and storing keys -------------------------------------------------------------------
    @classmethod
    def generate(cls, alg: Algorithm = "EdDSA") -> SigningKey:
        """A new random key: ``"EdDSA"`` (Ed25519, the default) or ``"ES256"`` (P-256)."""
        if alg == "EdDSA":
            return cls(Ed25519PrivateKey.generate())
        if alg == "ES256":
            return cls(ec.generate_private_key(ec.SECP256R1()))
        raise UnsupportedKey(f"unsupported algorithm {alg!r}; use EdDSA or ES256")

    @classmethod
    def from_pem(cls, pem: bytes | str, password: bytes | None = None) -> SigningKey:
        """Load a PKCS#8 (or traditional EC) private key PEM; the algorithm follows the key type."""
        data = pem.encode("ascii") if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except (ValueError, TypeError) as exc:
            raise UnsupportedKey(f"not a usable private key PEM: {exc}") from None
        if not isinstance(key, (Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
            raise UnsupportedKey("signing keys are Ed25519 (EdDSA) or P-256 (ES256)")
        return cls(key)

    def private_pem(self, password: bytes | None = None) -> bytes:
        """PKCS#8 PEM of the private key, encrypted when ``password`` is given."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        )
        return self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def public_pem(self) -> bytes:
        return self._private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verification_key(self) -> VerificationKey:
        """The public half, ready for a verifier (e.g. in :class:`onair.auth.StaticKeys`)."""
        return VerificationKey.from_jwk(self.public_jwk)

    # -- signing -----------------------------------------------------------------------------------
    def _encode_header(self, extra: Mapping[str, Any]) -> bytes:
        if "alg" in extra or "kid" in extra:
            raise ValueError("'alg' and 'kid' come from the key and cannot be overridden")
        header = {"alg": self.alg, "kid": self.kid, "typ": "JWT", **extra}
        return b64url(orjson.dumps(header)).encode("ascii")

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any] | None = None) -> str:
        """A compact JWS of ``claims`` (JSON values; ``exp``/``iat``/``nbf`` may be datetimes) with
        the protected header ``{"alg", "kid", "typ": "JWT", **headers}``."""
        payload = claims
        if any(isinstance(claims.get(name), datetime) for name in _TIME_CLAIMS):
            payload = dict(claims)
            for name in _TIME_CLAIMS:
                value = payload.get(name)
                if isinstance(value, datetime):
                    payload[name] = int(value.timestamp())
        header = self._encode_header(headers) if headers else self._header_segment
        signing_input = header + b"." + b64url(orjson.dumps(payload, default=_json_default)).encode("ascii")
        signature = self._algorithm.sign(signing_input, self._private)
        return f"{signing_input.decode('ascii')}.{b64url(signature)}"

    def __repr__(self) -> str:
        return f"SigningKey(alg={self.alg!r}, kid={self.kid!r})"


@dataclass(frozen=True, slots=True, eq=False)
class VerificationKey:
    """A checked public key from a JWK: ``kid``, ``alg`` (EdDSA or ES256) and the PyJWT key object."""

    kid: str
    alg: Algorithm
    key: PyJWK = field(repr=False)
    members: Mapping[str, str] = field(repr=False)
    """The public key members (``kty``, ``crv``, ``x``[, ``y``]): equal members mean the same key."""

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> VerificationKey:
        """Check one JWK and build its key object; raises :class:`UnsupportedKey` when onair must not
        use it."""
        if not isinstance(jwk, Mapping):
            raise UnsupportedKey("a JWK is a JSON object")
        kid = jwk.get("kid")
        if not is_valid_kid(kid):
            raise UnsupportedKey(f"JWK kid {kid!r} is missing or not [A-Za-z0-9_-]{{1,128}}")
        assert isinstance(kid, str)
        if _PRIVATE_MEMBERS & jwk.keys():
            raise UnsupportedKey(f"JWK {kid} holds private key members; a JWKS publishes public keys only")
        alg = _ALG_OF_KEY_TYPE.get((jwk.get("kty"), jwk.get("crv")))  # type: ignore[arg-type]
        if alg is None:
            kind = f"kty {jwk.get('kty')!r} / crv {jwk.get('crv')!r}"
            raise UnsupportedKey(f"JWK {kid}: {kind} is neither OKP/Ed25519 nor EC/P-256")
        if jwk.get("alg", alg) != alg:
            raise UnsupportedKey(f"JWK {kid}: alg {jwk.get('alg')!r} does not match its key type ({alg})")
        if jwk.get("use", "sig") != "sig":
            raise UnsupportedKey(f"JWK {kid}: use {jwk.get('use')!r} is not 'sig'")
        ops = jwk.get("key_ops")
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
            raise UnsupportedKey(f"JWK {kid}: key_ops {ops!r} does not allow 'verify'")
        names = _THUMBPRINT_MEMBERS[jwk["kty"]]
        members = {name: jwk.get(name) for name in names}
        if not all(isinstance(v, str) for v in members.values()):
            raise UnsupportedKey(f"JWK {kid}: members {', '.join(names)} must be strings")
        try:
            key = PyJWK(dict(members), algorithm=alg)
        except (PyJWTError, ValueError, TypeError) as exc:
            raise UnsupportedKey(f"JWK {kid}: not a valid {alg} public key ({exc})") from None
        return cls(kid=kid, alg=alg, key=key, members=members)  # type: ignore[arg-type]

    def same_key(self, other: VerificationKey) -> bool:
        return self.kid == other.kid and self.alg == other.alg and dict(self.members) == dict(other.members)


def jwks_document(keys: Iterable[SigningKey | VerificationKey | Mapping[str, Any]]) -> dict[str, Any]:
    """``{"keys": [public JWK, ...]}`` for the given keys (first one wins per ``kid``); private
    keys contribute only their public half."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for key in keys:
        if isinstance(key, SigningKey):
            jwk: dict[str, Any] = dict(key.public_jwk)
        elif isinstance(key, VerificationKey):
            jwk = {**key.members, "kid": key.kid, "alg": key.alg, "use": "sig"}
        else:
            jwk = dict(VerificationKey.from_jwk(key).members) | {
                k: v for k, v in key.items() if k in ("kid", "alg", "use", "key_ops")
            }
        if jwk["kid"] not in seen:
            seen.add(jwk["kid"])
            out.append(jwk)
    return {"keys": out}
