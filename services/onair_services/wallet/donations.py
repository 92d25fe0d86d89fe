"""The donation saga: debit the viewer -> credit the streamer -> announce it in chat.

* ``debit`` (local): ``user:<donor>`` -> ``hold:<donor>``; compensation ``refund``:
  ``hold:<donor>`` -> ``user:<donor>``;
* ``credit`` (local, the pivot): ``hold:<donor>`` -> ``user:<streamer>`` and the donor's total;
  no compensation (see below);
* ``announce`` (remote): ``wallet.donation.<channel>`` on JetStream, acknowledged; no
  compensation: retried until acknowledged.

The debit is written with the saga's creation (and the request's idempotency key), under the
donor's account lock, so a donation larger than the balance is refused (409) before anything
exists. The credit's injected failure (``ONAIR_WALLET_FAULT_CREDIT_FAILURE_RATE``) happens before
its writes: a failed credit leaves nothing behind. The credit is
retried ``ONAIR_WALLET_CREDIT_ATTEMPTS`` times; when it keeps failing the saga refunds the debit.
Once the streamer is credited the money is theirs and may be spent at once, so the credit is the
pivot: it is never reversed (a reversal could find the money gone, and it must not fail), and the
announcement after it — a side effect in chat — is retried until JetStream acknowledges it.
"""

from __future__ import annotations

from onair_services.wallet.announcer import Announcer
from onair_services.wallet.answers import iso
from onair_services.wallet.faults import Faults
from onair_services.wallet.ledger import DonorTotal, Movement, hold_account, user_account
from onair_services.wallet.sagas import Effect, Saga, SagaType, Step, StepFailed


def donation_saga(announcer: Announcer, faults: Faults, credit_attempts: int) -> SagaType:
    def movement(saga: Saga, step: str, kind: str, debit: str, credit: str) -> Movement:
        p = saga.payload
        return Movement(
            transfer_id=f"{saga.id}:{step}",
            saga_id=saga.id,
            kind=kind,
            step=step,
            debit_account=debit,
            credit_account=credit,
            amount=saga.amount,
            channel=p["channel"],
            donor=p["donor"],
        )

    def debit(saga: Saga) -> Effect:
        donor = saga.payload["donor_id"]
        return Effect([movement(saga, "debit", "donation", user_account(donor), hold_account(donor))])

    def refund(saga: Saga) -> Effect:
        donor = saga.payload["donor_id"]
        return Effect([movement(saga, "refund", "compensation", hold_account(donor), user_account(donor))])

    def credit(saga: Saga) -> Effect:
        p = saga.payload
        if faults.credit_fails(p.get("fault")):
            raise StepFailed("credit_failed", "injected fault: the streamer could not be credited")
        return Effect(
            [
                movement(
                    saga, "credit", "donation", hold_account(p["donor_id"]), user_account(p["streamer_id"])
                )
            ],
            DonorTotal(p["channel"], p["donor_id"], p["donor"], saga.amount),
        )

    async def announce(saga: Saga) -> None:
        p = saga.payload
        body = {
            "transfer_id": f"{saga.id}:credit",
            "donation_id": saga.id,
            "donor": p["donor"],
            "channel": p["channel"],
            "amount": saga.amount,
            "message": p.get("message"),
            "ts": iso(saga.created_ms),
        }
        try:
            await announcer.announce(saga.id, p["channel"], body)
        except Exception as exc:
            raise StepFailed("announce_failed", f"{type(exc).__name__}: {exc}"[:300]) from None

    return SagaType(
        "donation",
        (
            Step("debit", local=debit, undo=Step("refund", local=refund, attempts=0)),
            Step("credit", local=credit, attempts=credit_attempts),
            Step("announce", remote=announce, attempts=0, background_retries=True),
        ),
    )
