"""The purchase saga: charge at the payment provider -> deposit into the buyer's account.

* ``charge`` (remote): the provider charges the buyer (idempotent by purchase id); compensation
  ``refund_charge`` at the provider;
* ``deposit`` (local, the pivot): ``system:provider`` -> ``user:<buyer>``; no compensation:
  retried until it commits.

A declined charge ends the saga at once (nothing to undo); a charge that times out is retried
(``ONAIR_WALLET_PROVIDER_ATTEMPTS``) with the same id and, when the provider never answers, refunded
(the charge may have gone through without an answer).
"""

from __future__ import annotations

from onair_services.wallet.ledger import PROVIDER, Movement, user_account
from onair_services.wallet.provider import SimulatedProvider
from onair_services.wallet.sagas import Effect, Saga, SagaType, Step


def purchase_saga(provider: SimulatedProvider, provider_attempts: int) -> SagaType:
    async def charge(saga: Saga) -> None:
        await provider.charge(saga.id, saga.amount, saga.payload.get("fault"))

    async def refund_charge(saga: Saga) -> None:
        await provider.refund(saga.id)

    def deposit(saga: Saga) -> Effect:
        return Effect(
            [
                Movement(
                    transfer_id=f"{saga.id}:deposit",
                    saga_id=saga.id,
                    kind="purchase",
                    step="deposit",
                    debit_account=PROVIDER,
                    credit_account=user_account(saga.owner_id),
                    amount=saga.amount,
                )
            ]
        )

    return SagaType(
        "purchase",
        (
            Step(
                "charge",
                remote=charge,
                attempts=provider_attempts,
                undo=Step("refund_charge", remote=refund_charge, attempts=0),
            ),
            Step("deposit", local=deposit, attempts=0),
        ),
    )
