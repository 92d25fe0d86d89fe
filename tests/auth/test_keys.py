"""Signing keys: RFC thumbprints, PEM round trips, JWK export, interop with PyJWT."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from onair.auth import SigningKey, UnsupportedKey, VerificationKey, jwk_thumbprint, jwks_document
from onair.auth.keys import b64url_decode


def test_thumbprints_match_the_rfc_examples() -> None:
    # RFC 7638 §3.1 (RSA) and RFC 8037 appendix A.3 (Ed25519)
    rsa_jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJE"
            "CPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Q"
            "vzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6"
            "WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(rsa_jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    ed_jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert jwk_thumbprint(ed_jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_pem_round_trip_keeps_the_kid_and_the_public_jwk(alg: str) -> None:
    key = SigningKey.generate(alg)  # type: ignore[arg-type]
    again = SigningKey.from_pem(key.private_pem())
    assert (again.kid, again.alg, again.public_jwk) == (key.kid, alg, key.public_jwk)
    locked = SigningKey.from_pem(key.private_pem(b"s3cret"), password=b"s3cret")
    assert locked.kid == key.kid
    with pytest.raises(UnsupportedKey):
        SigningKey.from_pem(key.private_pem(b"s3cret"), password=b"wrong")
    jwk = key.public_jwk
    assert jwk["kid"] == jwk_thumbprint(jwk) and jwk["use"] == "sig" and jwk["alg"] == alg
    assert "d" not in jwk
    if alg == "ES256":
        assert (jwk["kty"], jwk["crv"]) == ("EC", "P-256")
        assert len(b64url_decode(jwk["x"])) == len(b64url_decode(jwk["y"])) == 32
    else:
        assert (jwk["kty"], jwk["crv"], set(jwk)) == (
            "OKP",
            "Ed25519",
            {"kty", "crv", "x", "kid", "alg", "use"},
        )


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_tokens_verify_with_plain_pyjwt(alg: str) -> None:
    key = SigningKey.generate(alg)  # type: ignore[arg-type]
    token = key.sign({"sub": "u1", "exp": 4_000_000_000, "roles": {"b", "a"}}, headers={"cty": "x"})
    header = jwt.get_unverified_header(token)
    assert header == {"alg": alg, "kid": key.kid, "typ": "JWT", "cty": "x"}
    public = jwt.PyJWK(key.public_jwk)
    assert jwt.decode(token, public, algorithms=[alg]) == {
        "sub": "u1",
        "exp": 4_000_000_000,
        "roles": ["a", "b"],
    }
    with pytest.raises(ValueError, match="overridden"):
        key.sign({}, headers={"alg": "none"})


def test_only_ed25519_and_p256_keys_are_accepted() -> None:
    for other in (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec.generate_private_key(ec.SECP384R1()),
    ):
        pem = other.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        with pytest.raises(UnsupportedKey):
            SigningKey.from_pem(pem)
    with pytest.raises(UnsupportedKey):
        SigningKey.from_pem(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(UnsupportedKey):
        SigningKey.generate("RS256")  # type: ignore[arg-type]


def test_repr_never_shows_private_material() -> None:
    raw = Ed25519PrivateKey.generate()
    key = SigningKey(raw)
    secret = raw.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert secret.hex() not in repr(key) and "PRIVATE" not in repr(key)
    assert repr(key) == f"SigningKey(alg='EdDSA', kid='{key.kid}')"


def test_verification_key_refuses_unusable_jwks() -> None:
    good = SigningKey.generate().public_jwk
    assert VerificationKey.from_jwk(good).alg == "EdDSA"
    assert VerificationKey.from_jwk({k: v for k, v in good.items() if k not in ("alg", "use")}).alg == "EdDSA"
    bad: list[dict[str, Any]] = [
        dict(good, kid="../../x"),
        dict(good, d="AAAA"),
        dict(good, alg="ES256"),
        dict(good, use="enc"),
        dict(good, key_ops=["encrypt"]),
        dict(good, crv="Ed448"),
        dict(good, x=5),
        dict(good, x="AAAA"),  # not 32 bytes
        {"kty": "oct", "kid": "k1", "k": "c2VjcmV0"},
    ]
    for jwk in bad:
        with pytest.raises(UnsupportedKey):
            VerificationKey.from_jwk(jwk)


def test_jwks_document_publishes_public_halves_once() -> None:
    a, b = SigningKey.generate(), SigningKey.generate("ES256")
    doc = jwks_document([a, b, a, b.verification_key(), a.public_jwk])
    assert [k["kid"] for k in doc["keys"]] == [a.kid, b.kid]
    assert doc["keys"][0] == a.public_jwk
    assert all("d" not in k for k in doc["keys"])
