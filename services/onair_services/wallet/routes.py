"""HTTP API of the wallet (``/wallet``): purchase, donate, balance, history, top donors.

Every user route needs the gateway's identity (401 without). Mutating routes need an
``Idempotency-Key`` header (400 without; see :mod:`.idempotency`). Amounts are positive integers
in minor units, at most ``ONAIR_WALLET_MAX_AMOUNT`` (422 otherwise).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from onair.auth.fastapi import CurrentIdentity
from onair.service import ApiError, Service, responses
from onair_services.wallet import idempotency as idem
from onair_services.wallet.answers import Answer, donation_answer, iso, purchase_answer
from onair_services.wallet.core import MESSAGE_MAX, Wallet
from onair_services.wallet.faults import FAULT_HEADER
from onair_services.wallet.settings import MAX_AMOUNT_CAP

router = APIRouter(prefix="/wallet", tags=["wallet"])

CHANNEL_PATTERN = r"^[a-z0-9_]{3,32}$"
# The schema's bound; the configured maximum (ONAIR_WALLET_MAX_AMOUNT, lower) is checked per request.
AMOUNT_LIMIT = MAX_AMOUNT_CAP

Amount = Annotated[
    int,
    Field(
        strict=True,
        gt=0,
        le=AMOUNT_LIMIT,
        description="Minor units (e.g. cents): a positive integer, at most ONAIR_WALLET_MAX_AMOUNT",
    ),
]


class PurchaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Amount


class DonationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: str = Field(pattern=CHANNEL_PATTERN, description="The channel (its streamer's username)")
    amount: Amount
    message: str | None = Field(default=None, max_length=MESSAGE_MAX)


class PurchaseBody(BaseModel):
    purchase_id: str
    amount: int
    state: str = Field(description="completed | pending | compensating | compensated")
    created_at: str


class DonationBody(BaseModel):
    donation_id: str
    channel: str
    amount: int
    message: str | None
    state: str = Field(description="completed | announcing | pending | compensating | compensated")
    created_at: str


class BalanceBody(BaseModel):
    user_id: str
    balance: int = Field(description="Spendable, in minor units")
    held: int = Field(description="In donations still running (debited, not yet credited or refunded)")


class LedgerEntry(BaseModel):
    id: int
    transfer_id: str
    kind: str = Field(description="purchase | donation | compensation")
    step: str = Field(description="deposit | debit | credit | refund")
    amount: int = Field(description="Signed: negative leaves the account, positive enters it")
    channel: str | None
    donor: str | None
    reference: str = Field(description="The purchase or donation this entry belongs to")
    created_at: str


class LedgerPage(BaseModel):
    page: int
    limit: int
    has_more: bool
    entries: list[LedgerEntry]


class TopDonor(BaseModel):
    donor: str
    amount: int
    donations: int


class TopDonors(BaseModel):
    channel: str
    donors: list[TopDonor]


async def wallet_of(request: Request) -> Wallet:
    """The running wallet (async: a plain ``def`` dependency would run in the thread pool)."""
    svc: Service = request.app.state.service
    wallet: Wallet = svc.state["wallet"]
    return wallet


WalletDep = Annotated[Wallet, Depends(wallet_of)]
IdemKey = Annotated[
    str | None,
    Header(
        alias=idem.HEADER,
        description="A unique string per operation (1-255 visible ASCII); a repeat returns the first answer",
    ),
]
FaultHeader = Annotated[
    str | None,
    Header(alias=FAULT_HEADER, include_in_schema=False),
]


def _respond(answer: Answer) -> JSONResponse:
    headers = dict(answer.headers)
    if answer.replayed:
        headers[idem.REPLAYED_HEADER] = "true"
    return JSONResponse(answer.body, answer.status, headers=headers)


def _check_amount(wallet: Wallet, amount: int) -> None:
    if amount > wallet.settings.max_amount:
        raise ApiError(
            422,
            "invalid_request",
            f"body.amount: must be at most {wallet.settings.max_amount}",
            fields=[{"field": "body.amount", "message": f"must be at most {wallet.settings.max_amount}"}],
        )


@router.post(
    "/purchase",
    status_code=201,
    response_model=PurchaseBody,
    summary="Buy credit through the (simulated) payment provider",
    responses={
        202: {"model": PurchaseBody, "description": "Still running; see Location"},
        **responses(
            400,
            402,
            504,
            s400="Missing or malformed Idempotency-Key",
            s402="The payment provider declined the charge",
            s504="The payment provider did not answer; any charge was refunded",
        ),
        **responses(502, s502="The purchase failed after its charge; the charge was refunded"),
    },
)
async def purchase(
    body: PurchaseRequest,
    caller: CurrentIdentity,
    wallet: WalletDep,
    key: IdemKey = None,
    fault: FaultHeader = None,
) -> JSONResponse:
    key = idem.check_key(key)
    _check_amount(wallet, body.amount)
    return _respond(await wallet.purchase(caller, body.amount, key, fault))


@router.post(
    "/donations",
    status_code=201,
    response_model=DonationBody,
    summary="Donate to a channel (a saga: debit, credit the streamer, announce in chat)",
    responses={
        202: {"model": DonationBody, "description": "Still running; see Location"},
        **responses(
            400,
            404,
            409,
            502,
            s400="Missing or malformed Idempotency-Key",
            s404="No such channel",
            s409="The balance is smaller than the donation (nothing changed)",
            s502="The streamer could not be credited; the donation was refunded",
        ),
    },
)
async def donate(
    body: DonationRequest,
    caller: CurrentIdentity,
    wallet: WalletDep,
    key: IdemKey = None,
    fault: FaultHeader = None,
) -> JSONResponse:
    key = idem.check_key(key)
    _check_amount(wallet, body.amount)
    answer = await wallet.donate(caller, body.channel, body.amount, body.message, key, fault)
    return _respond(answer)


@router.get(
    "/donations/{donation_id}",
    response_model=DonationBody,
    summary="One of your donations",
    responses=responses(404),
)
async def get_donation(
    caller: CurrentIdentity, wallet: WalletDep, donation_id: Annotated[str, Path(max_length=64)]
) -> dict[str, Any]:
    saga = await wallet.saga_of(caller, donation_id, "donation")
    answer = donation_answer(saga)
    return {k: answer.body[k] for k in DonationBody.model_fields}


@router.get(
    "/purchases/{purchase_id}",
    response_model=PurchaseBody,
    summary="One of your purchases",
    responses=responses(404),
)
async def get_purchase(
    caller: CurrentIdentity, wallet: WalletDep, purchase_id: Annotated[str, Path(max_length=64)]
) -> dict[str, Any]:
    saga = await wallet.saga_of(caller, purchase_id, "purchase")
    answer = purchase_answer(saga)
    return {k: answer.body[k] for k in PurchaseBody.model_fields}


@router.get("/balance", response_model=BalanceBody, summary="Your balance")
async def balance(caller: CurrentIdentity, wallet: WalletDep) -> dict[str, Any]:
    return await wallet.balance(caller)


@router.get("/ledger", response_model=LedgerPage, summary="Your account's history, newest first")
async def history(
    caller: CurrentIdentity,
    wallet: WalletDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    rows, more = await wallet.history(caller, page, limit)
    entries = [
        {
            "id": r["id"],
            "transfer_id": r["transfer_id"],
            "kind": r["kind"],
            "step": r["step"],
            "amount": r["amount"],
            "channel": r["channel"],
            "donor": r["donor"],
            "reference": r["saga_id"],
            "created_at": iso(r["created_ms"]),
        }
        for r in rows
    ]
    return {"page": page, "limit": limit, "has_more": more, "entries": entries}


@router.get(
    "/top-donors/{channel}",
    response_model=TopDonors,
    summary="A channel's biggest donors (credited donations; read from the wallet's own tables)",
    responses=responses(404),
)
async def top_donors(
    wallet: WalletDep,
    channel: Annotated[str, Path(pattern=CHANNEL_PATTERN)],
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    return {"channel": channel, "donors": await wallet.top_donors(channel, limit)}
