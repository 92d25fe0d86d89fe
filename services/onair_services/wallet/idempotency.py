"""``Idempotency-Key``: every mutating request carries one; a repeat gets the first answer.

Keys are scoped to the caller (two users may use the same key). The first request with a key
*claims* it in the same transaction that does its work (:mod:`.writer`; the claim is a primary
key, so two concurrent requests with one key cannot both do the work: the second waits for the
first's transaction and then finds the claim). What a repeat gets:

* the first request started a saga: the saga's answer (waiting for it, as the first request did);
  a finished saga's answer never changes, so the repeat gets the same status and body;
* the first request was refused by a money rule (409 insufficient balance): that same answer;
* a repeat whose body (or route) differs from the first: 422 ``idempotency_key_reused``.

Requests refused before any work (400 no key, 401, 404 unknown channel, 422 invalid body) claim
nothing: fixing the request and sending it again with the same key works. Keys are forgotten
after ``ONAIR_WALLET_IDEMPOTENCY_TTL_S`` (default 24 h).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from onair.service import ApiError
from onair_services.wallet.db import WalletDb, now_ms
from onair_services.wallet.models import idempotency_keys, sagas

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def check_key(value: str | None) -> str:
    """The key, or 400 when it is missing or malformed."""
    if value is None or value == "":
        raise ApiError(
            400,
            "idempotency_key_required",
            f"this request needs an {HEADER} header (a unique string per operation)",
        )
    if not _KEY.match(value):
        raise ApiError(400, "bad_idempotency_key", f"{HEADER} must be 1-255 visible ASCII characters")
    return value


def request_hash(route: str, body: Mapping[str, Any]) -> str:
    canonical = orjson.dumps({"route": route, "body": body}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True)
class Earlier:
    """What the first request with this key did."""

    route: str
    request_hash: str
    saga_id: str | None
    status: int | None
    body: Mapping[str, Any] | None

    def check_same(self, route: str, digest: str) -> None:
        if self.route != route or self.request_hash != digest:
            raise ApiError(
                422,
                "idempotency_key_reused",
                f"this {HEADER} was used for a different request; use a new key for a new operation",
            )


@dataclass(frozen=True)
class Claim:
    """A request claiming its key (in the transaction that starts its work, :mod:`.writer`)."""

    owner_id: str
    key: str
    route: str
    request_hash: str
    saga_id: str


async def lookup(db: WalletDb, owner_id: str, key: str) -> Earlier | None:
    async with db.read() as conn:
        found = (
            await conn.execute(
                select(
                    idempotency_keys.c.route,
                    idempotency_keys.c.request_hash,
                    idempotency_keys.c.saga_id,
                    idempotency_keys.c.status,
                    idempotency_keys.c.body,
                ).where(idempotency_keys.c.owner_id == owner_id, idempotency_keys.c.key == key)
            )
        ).first()
    return None if found is None else Earlier(found[0], found[1], found[2], found[3], found[4])


async def forget_expired(db: WalletDb, ttl_s: int) -> int:
    """Delete keys older than the TTL whose request is over (no saga, or a finished one)."""
    cutoff = now_ms() - ttl_s * 1000
    running = select(sagas.c.id).where(sagas.c.state.in_(("running", "compensating")))

    async def purge(conn: AsyncConnection) -> int:
        result = await conn.execute(
            delete(idempotency_keys).where(
                idempotency_keys.c.created_ms < cutoff,
                idempotency_keys.c.saga_id.is_(None) | idempotency_keys.c.saga_id.not_in(running),
            )
        )
        return int(result.rowcount)

    return await db.write(purge)
