"""Fault injection for tests, benchmarks and chaos runs; inert unless ``ONAIR_WALLET_FAULTS=true``.

* ``fault_credit_failure_rate``: the credit step of a donation fails with this probability
  (after writing its transfer, so the rollback is real); forced per request by the header
  ``X-Onair-Wallet-Fault: credit_fail``.
* ``fault_provider_decline_rate`` / ``fault_provider_timeout_rate``: the simulated payment
  provider declines or does not answer in time; forced by ``X-Onair-Wallet-Fault: decline`` or
  ``timeout``.
* ``fault_pause_step`` + ``fault_pause_s``: sleep inside that step (a test kills the process there).

A forced fault is stored in the saga's payload, so a retry after a crash sees it again.
"""

from __future__ import annotations

import asyncio
import random
from typing import Literal

from onair.logging import get_logger
from onair.service import ApiError
from onair_services.wallet.settings import WalletSettings

log = get_logger("onair.wallet.faults")

FAULT_HEADER = "X-Onair-Wallet-Fault"
Forced = Literal["credit_fail", "decline", "timeout"]
FORCED: dict[str, tuple[str, ...]] = {
    "donation": ("credit_fail",),
    "purchase": ("decline", "timeout"),
}


class Faults:
    def __init__(self, settings: WalletSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.enabled = settings.faults
        self._rng = rng or random.Random()

    def forced(self, kind: str, header: str | None) -> str | None:
        """The fault a request asks for (validated), or None; ignored unless faults are enabled."""
        if not header or not self.enabled:
            return None
        value = header.strip().lower()
        if value not in FORCED[kind]:
            raise ApiError(
                400,
                "bad_request",
                f"{FAULT_HEADER} for this route must be one of: {', '.join(FORCED[kind])}",
            )
        return value

    def credit_fails(self, forced: str | None) -> bool:
        if not self.enabled:
            return False
        return forced == "credit_fail" or self._rng.random() < self.settings.fault_credit_failure_rate

    def provider_outcome(self, forced: str | None) -> str:
        """ok | decline | timeout"""
        if not self.enabled:
            return "ok"
        if forced in ("decline", "timeout"):
            return forced
        roll = self._rng.random()
        if roll < self.settings.fault_provider_decline_rate:
            return "decline"
        if roll < self.settings.fault_provider_decline_rate + self.settings.fault_provider_timeout_rate:
            return "timeout"
        return "ok"

    def coin(self) -> bool:
        return self._rng.random() < 0.5

    async def pause(self, saga_id: str, step: str) -> None:
        s = self.settings
        if self.enabled and s.fault_pause_step == step and s.fault_pause_s > 0:
            log.warning(
                "fault: pausing inside a saga step", saga_id=saga_id, step=step, seconds=s.fault_pause_s
            )
            await asyncio.sleep(s.fault_pause_s)
