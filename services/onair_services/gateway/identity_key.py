"""The key the gateway signs identities with, the same in every replica.

Services verify ``X-Onair-Identity`` with the keys they fetch from *a* gateway replica's
``/.well-known/identity-jwks.json``, so every replica must sign with a key every replica publishes:

* **deployed** (compose, k8s): ``ONAIR_GATEWAY_IDENTITY_KEY_FILE`` names a PEM file mounted from a
  Secret. It may hold several private keys (PKCS#8 PEM blocks, one after the other): the **first
  signs**, all are published. Rotation: add the new key *second* and roll out (it is published,
  not used), wait one JWKS refresh of the services (5 min by default), move it first and roll out,
  drop the old one after the identity lifetime (60 s at most).
* **local runs** without a file: the key is created once under ``ONAIR_GATEWAY_STATE_DIR``
  (``.onair/gateway/identity-key.pem``, mode 0600) while holding an exclusive ``flock`` on a lock
  file beside it, so two gateway processes started together on one machine (the demo, tests) end
  up with the same key instead of each writing its own.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

from onair.auth import SigningKey, UnsupportedKey

KEY_FILE_NAME = "identity-key.pem"
LOCK_FILE_NAME = "identity-key.lock"
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]*PRIVATE KEY)-----.+?-----END \1-----", re.DOTALL)


class IdentityKeyError(RuntimeError):
    """The identity key file is missing, unreadable or holds no usable key (one line, no secret)."""


def parse_key_bundle(pem: bytes, source: str) -> list[SigningKey]:
    """Every private key of a PEM bundle, in file order (the first one signs)."""
    blocks = [m.group(0) for m in _PEM_BLOCK.finditer(pem)]
    if not blocks:
        raise IdentityKeyError(f"{source}: no PEM private key in it")
    keys: list[SigningKey] = []
    for number, block in enumerate(blocks, 1):
        try:
            keys.append(SigningKey.from_pem(block))
        except UnsupportedKey as exc:
            raise IdentityKeyError(f"{source}: key {number}: {exc}") from None
    return keys


def load_identity_keys(key_file: Path | None, state_dir: Path) -> list[SigningKey]:
    """The gateway's identity keys: from ``key_file``, else the shared local key under ``state_dir``."""
    if key_file is not None:
        try:
            pem = key_file.read_bytes()
        except OSError as exc:
            raise IdentityKeyError(
                f"ONAIR_GATEWAY_IDENTITY_KEY_FILE {key_file}: {exc.strerror or exc}"
            ) from None
        return parse_key_bundle(pem, str(key_file))
    return [local_key(state_dir)]


def local_key(state_dir: Path) -> SigningKey:
    """The key under ``state_dir``, created on first use (under an exclusive file lock)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / KEY_FILE_NAME
    with open(state_dir / LOCK_FILE_NAME, "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            if path.exists():
                return parse_key_bundle(path.read_bytes(), str(path))[0]
            key = SigningKey.generate("EdDSA")
            tmp = path.with_name(f".{KEY_FILE_NAME}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(key.private_pem())
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(path)
            return key
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
