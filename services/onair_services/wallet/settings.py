"""The wallet's own settings (``ONAIR_WALLET_*``): limits, saga timing and fault injection.

Fault injection (the simulated payment provider failing or timing out, the credit step failing,
a step pausing so a test can kill the process inside it) is honoured only when
``ONAIR_WALLET_FAULTS=true``; otherwise the fault settings and the ``X-Onair-Wallet-Fault`` test
header are ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: No configuration may allow more than this in one operation (the API schema's bound).
MAX_AMOUNT_CAP = 10_000_000_000

PauseStep = Literal["debit", "credit", "announce", "charge", "deposit"]


class WalletSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONAIR_WALLET_", extra="ignore", frozen=True)

    # Largest amount (minor units) one purchase or donation may move.
    max_amount: int = Field(default=10_000_000, ge=1, le=MAX_AMOUNT_CAP)
    # How long a request waits for its saga before answering 202 (the saga carries on).
    request_wait_s: float = Field(default=10.0, gt=0)
    # A saga being driven is leased to one process for this long (renewed at every step); a
    # process that dies leaves its sagas to be picked up by the sweep once the lease runs out.
    saga_lease_s: float = Field(default=10.0, gt=0)
    # How often unfinished sagas (expired lease, retry due) are looked for.
    sweep_interval_s: float = Field(default=2.0, gt=0)
    # Attempts of the credit step before the donation is compensated (refunded).
    credit_attempts: int = Field(default=3, ge=1)
    # Attempts of the payment provider's charge before the purchase is given up (and refunded).
    provider_attempts: int = Field(default=2, ge=1)
    provider_timeout_s: float = Field(default=2.0, gt=0)
    # Waiting for JetStream's ack of a donation announcement.
    announce_timeout_s: float = Field(default=2.0, gt=0)
    # Longest wait between two retries of a step (exponential backoff from 50 ms).
    max_backoff_s: float = Field(default=30.0, gt=0)
    # Writes are applied in batches (group commit, writer.py) by this many writer tasks per process
    # (PostgreSQL; SQLite has one), each batch at most this many operations. Two let one batch
    # work while the other waits on the database (batches that share an account still take turns).
    writers: int = Field(default=2, ge=1, le=16)
    write_batch_max: int = Field(default=256, ge=1, le=2000)
    # Idempotency keys are remembered this long (a repeat after that is a new request).
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    # The service runs the audit (onair wallet audit) this often and exports its findings as
    # metrics; 0 turns it off.
    audit_interval_s: float = Field(default=300.0, ge=0)
    # JetStream stream of donation announcements (subjects <prefix>.wallet.donation.>).
    stream: str = "WALLET"
    stream_max_age_s: int = Field(default=7 * 24 * 3600, ge=60)
    # Copies of the stream in a NATS cluster (3 in staging: it survives losing a node).
    stream_replicas: int = Field(default=1, ge=1, le=5)

    # -- fault injection (tests, benchmarks, chaos runs) -------------------------------------------
    faults: bool = False
    fault_credit_failure_rate: float = Field(default=0.0, ge=0, le=1)
    fault_provider_decline_rate: float = Field(default=0.0, ge=0, le=1)
    fault_provider_timeout_rate: float = Field(default=0.0, ge=0, le=1)
    # Sleep inside this step (inside its transaction for local steps, after the publish for the
    # announce) so a test can kill the process mid-saga.
    fault_pause_step: PauseStep | None = None
    fault_pause_s: float = Field(default=30.0, ge=0)
