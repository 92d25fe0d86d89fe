"""A simulated payment provider: charges and refunds, idempotent by charge id.

It stands where a real provider's API would be (Stripe-like: a charge carries an idempotency key,
a refund reverses it). It answers at once unless told to fail: a *decline* is final, a *timeout*
means "no answer in time" — the charge may or may not have happened, so the purchase saga retries
it with the same id and, when it gives up, refunds it (a refund of a charge that never happened is
a no-op). Its memory is the process's: after a restart a retried charge simply happens then.
"""

from __future__ import annotations

import asyncio

from onair_services.wallet.faults import Faults
from onair_services.wallet.sagas import StepFailed


class SimulatedProvider:
    def __init__(self, faults: Faults, timeout_s: float) -> None:
        self.faults = faults
        self.timeout_s = timeout_s
        self.charges: dict[str, int] = {}  # charge id -> amount (live charges)
        self.refunded: set[str] = set()

    async def charge(self, charge_id: str, amount: int, forced: str | None) -> None:
        outcome = self.faults.provider_outcome(forced)
        if outcome == "timeout":
            if self.faults.coin():
                self.charges[charge_id] = amount  # it went through, but the answer is lost
            await asyncio.sleep(self.timeout_s)
            raise StepFailed("payment_timeout", f"the payment provider did not answer in {self.timeout_s}s")
        if charge_id in self.charges:  # a retry of a charge that went through: the same answer
            return
        if outcome == "decline":
            raise StepFailed("payment_declined", "the payment provider declined the charge", retryable=False)
        self.charges[charge_id] = amount

    async def refund(self, charge_id: str) -> None:
        if self.charges.pop(charge_id, None) is not None:
            self.refunded.add(charge_id)

    @property
    def net_charged(self) -> int:
        return sum(self.charges.values())
