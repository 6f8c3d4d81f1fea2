"""Typed results shared by both APIs, each convertible to a JSON-safe dict for XCom."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from airflow_provider_postage.protocol.money import format_money

CLICK2MAIL = "click2mail"
PITNEY_BOWES = "pitney_bowes"

#: Account types, the same words in XCom, sensor arguments and logs.
CREDIT = "credit"
POSTAGE = "postage"
LINE_OF_CREDIT = "line_of_credit"
ACCOUNT_TYPES = (CREDIT, POSTAGE, LINE_OF_CREDIT)


@dataclass(frozen=True)
class Balance:
    """One account's balance at ``as_of``. ``available`` is the spendable amount (for a line of
    credit: the unused credit)."""

    provider: str
    conn_id: str
    account_type: str
    account_number: str | None
    currency: str
    available: Decimal
    as_of: dt.datetime
    allow_negative: bool | None = None
    balance_owed: Decimal | None = None
    credit_limit: Decimal | None = None
    minimum_amount_due: Decimal | None = None
    minimum_due_date: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "provider": self.provider,
            "conn_id": self.conn_id,
            "account_type": self.account_type,
            "account_number": self.account_number,
            "currency": self.currency,
            "available": format_money(self.available),
            "as_of": self.as_of.isoformat(),
        }
        if self.allow_negative is not None:
            data["allow_negative"] = self.allow_negative
        for name in ("balance_owed", "credit_limit", "minimum_amount_due"):
            value = getattr(self, name)
            if value is not None:
                data[name] = format_money(value)
        if self.minimum_due_date is not None:
            data["minimum_due_date"] = self.minimum_due_date
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Balance:
        """The inverse of :meth:`to_dict` (a balance shared through a cache)."""
        money = {
            name: Decimal(data[name]) for name in ("balance_owed", "credit_limit", "minimum_amount_due") if name in data
        }
        return cls(
            provider=data["provider"],
            conn_id=data["conn_id"],
            account_type=data["account_type"],
            account_number=data.get("account_number"),
            currency=data["currency"],
            available=Decimal(data["available"]),
            as_of=dt.datetime.fromisoformat(data["as_of"]),
            allow_negative=data.get("allow_negative"),
            minimum_due_date=data.get("minimum_due_date"),
            **money,
        )


@dataclass(frozen=True)
class PurchaseResult:
    """What a purchase did. ``transaction_id`` is the Pitney Bowes ``X-PB-TransactionId``; Click2Mail
    has none. ``description`` is the API's own word on the purchase (e.g. ``Success``)."""

    provider: str
    conn_id: str
    amount: Decimal
    currency: str
    transaction_id: str | None = None
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "conn_id": self.conn_id,
            "amount": format_money(self.amount),
            "currency": self.currency,
            "transaction_id": self.transaction_id,
            "description": self.description,
        }
