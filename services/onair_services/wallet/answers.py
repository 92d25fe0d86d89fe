"""What a request is answered, derived from its saga (so a repeat with the same key gets the same).

A saga's answer depends only on its row: once the saga is finished the answer never changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from onair_services.wallet.sagas import Saga


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    replayed: bool = False
    headers: dict[str, str] = field(default_factory=dict)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def donation_settled(saga: Saga) -> bool:
    """The donor can be told the outcome: finished, or the streamer is credited (announcing)."""
    return saga.finished or (saga.state == "running" and saga.step == "announce")


def donation_state(saga: Saga) -> str:
    if saga.finished:
        return saga.state
    if saga.state == "compensating":
        return "compensating"
    return "announcing" if saga.step == "announce" else "pending"


def donation_answer(saga: Saga) -> Answer:
    p = saga.payload
    base = {
        "donation_id": saga.id,
        "channel": p["channel"],
        "amount": saga.amount,
        "message": p.get("message"),
        "state": donation_state(saga),
        "created_at": iso(saga.created_ms),
    }
    if saga.state == "compensated":
        return Answer(
            502,
            {
                "error": "donation_failed",
                "detail": "the streamer could not be credited; the donation was refunded to your balance",
                "reason": saga.error_code,
                **base,
            },
        )
    if donation_settled(saga):
        return Answer(201, base)
    return Answer(202, base, headers={"Location": f"/wallet/donations/{saga.id}"})


def purchase_state(saga: Saga) -> str:
    return saga.state if saga.state != "running" else "pending"


_PURCHASE_ERRORS = {
    "payment_declined": (402, "the payment provider declined the charge; nothing was charged"),
    "payment_timeout": (
        504,
        "the payment provider did not answer in time; any charge was refunded, nothing was credited",
    ),
}


def purchase_answer(saga: Saga) -> Answer:
    base = {
        "purchase_id": saga.id,
        "amount": saga.amount,
        "state": purchase_state(saga),
        "created_at": iso(saga.created_ms),
    }
    if saga.state == "completed":
        return Answer(201, base)
    if saga.state == "compensated":
        status, detail = _PURCHASE_ERRORS.get(
            saga.error_code or "", (502, "the purchase failed; any charge was refunded")
        )
        error = saga.error_code if status != 502 else "purchase_failed"
        return Answer(status, {"error": error, "detail": detail, "reason": saga.error_code, **base})
    return Answer(202, base, headers={"Location": f"/wallet/purchases/{saga.id}"})
