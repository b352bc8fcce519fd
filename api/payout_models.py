"""What the payouts endpoints take and give (accounts, balances, payouts, fees), beside
`api/models.py` and built the same way: amounts are decimal strings in coin units ("0.12500000")."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.models import IN_PATH, MAX_LIMIT, Answer, Params, Symbol, Text, Timestamp
from payouts.accounts import NAME_PATTERN

ACCOUNT_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
"""A registered user name or a payout address (both only letters, digits, '_' and '-')."""
CURSOR_PATTERN = r"^[1-9][0-9]{0,18}$"
EMAIL_PATTERN = r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]{1,189}$"
ADDRESS_PATTERN = r"^[A-Za-z0-9]{1,128}$"
_FRACTION_NOT_ZERO = "|".join(f"0{{{k}}}[1-9][0-9]{{0,{7 - k}}}" for k in range(8))
POSITIVE_AMOUNT_PATTERN = rf"^(0{{0,9}}[1-9][0-9]{{0,9}}(\.[0-9]{{1,8}})?|0{{1,10}}\.({_FRACTION_NOT_ZERO}))$"
"""A positive amount in coin units with at most 8 decimals: "0.5", "12", "0.00000001"."""
PayoutStatus = Literal["awaiting_approval", "pending", "sent", "confirmed", "failed"]
Amount = Annotated[str, Field(pattern=r"^-?[0-9]+\.[0-9]{8}$", description="coin units, 8 decimals")]


class AccountParams(Params):
    account: Annotated[
        str, Field(pattern=ACCOUNT_PATTERN, description="user name or payout address"), IN_PATH
    ]


class PayoutPageParams(Params):
    limit: int = Field(50, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, pattern=CURSOR_PATTERN, description="the previous page's next")


class AccountPayoutsParams(AccountParams, PayoutPageParams):
    pass


class PayoutsParams(PayoutPageParams):
    status: PayoutStatus | None = None


class PayoutParams(Params):
    id: Annotated[int, Field(ge=1, le=2**63 - 1), IN_PATH]


class FeeParams(Params):
    coin: Annotated[Symbol, IN_PATH]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class AccountCreate(_Body):
    name: str = Field(pattern=NAME_PATTERN, description="letters, digits, '_' and '-'; starts with a letter")
    payout_addresses: dict[Symbol, Annotated[str, Field(pattern=ADDRESS_PATTERN)]] = Field(
        min_length=1, max_length=16, description="coin symbol -> payout address"
    )
    email: str | None = Field(None, pattern=EMAIL_PATTERN)


class PoolPaymentCreate(_Body):
    coin: Symbol
    pool: Text = Field(description="the upstream's name: its shares form the PPLNS window")
    amount: str = Field(pattern=POSITIVE_AMOUNT_PATTERN, description="coin units, more than 0, e.g. 0.5")
    earned_at: Timestamp = Field(description="what was paid was earned up to this time")
    reference: Text = Field(description="the pool's txid or another unique reference: recorded once")


class FeeSet(_Body):
    fee_percent: float = Field(ge=0, le=100)


class AccountCreated(Answer):
    name: str
    payout_addresses: dict[str, str]
    email: str | None
    token: str = Field(description="shown once: only its hash is kept")
    created_at: datetime


class Balance(Answer):
    coin: str
    immature: Amount
    pending: Amount
    paid: Amount


class Balances(Answer):
    account: str
    balances: list[Balance]


class PayoutItem(Answer):
    id: int
    coin: str
    amount: Amount
    status: PayoutStatus
    txid: str | None
    created_at: datetime
    sent_at: datetime | None
    confirmed_at: datetime | None


class PayoutPage(Answer):
    items: list[PayoutItem]
    next: str | None


class AdminPayoutItem(PayoutItem):
    account: str


class AdminPayoutPage(Answer):
    items: list[AdminPayoutItem]
    next: str | None


class PoolPayment(Answer):
    id: int
    coin: str
    pool: str
    amount: Amount
    earned_at: datetime
    reference: str
    created_at: datetime
    split: bool = Field(description="credited to the accounts yet (the next payout run splits it)")


class Fee(Answer):
    coin: str
    fee_percent: float
    updated_at: datetime


class FeeList(Answer):
    items: list[Fee]
