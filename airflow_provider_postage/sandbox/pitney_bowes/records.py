"""Immutable records of the Pitney Bowes half of the sandbox, and their JSON forms.

``to_mapping()`` is the control-API form (snake_case, amounts as two-place strings);
``to_api()`` / ``to_report()`` are Pitney Bowes' own JSON (camelCase, amounts as Decimal numbers).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Literal

from ..values import money_str

__all__ = [
    "POSTAGE_FUND",
    "AutoRefillRule",
    "FundResult",
    "IssuedToken",
    "LineOfCreditView",
    "MerchantView",
    "PBTransaction",
    "Refill",
    "RefillSource",
]

#: The transaction type of every refill (manual or automatic) in the transaction reports.
POSTAGE_FUND = "POSTAGE FUND"

#: Where a refill came from: a manual ``account/fund`` call drawing on the line of credit or on the
#: payment method on file, or the merchant's auto-refill rule.
RefillSource = Literal["line_of_credit", "payment_method", "auto_refill"]


@dataclass(frozen=True)
class Refill:
    """An applied Pitney Bowes postage account refill."""

    prn: str
    amount: Decimal
    currency_code: str
    transaction_id: str
    source: RefillSource
    at: str  # ISO-8601 UTC

    def to_mapping(self) -> dict[str, Any]:
        return {
            "prn": self.prn,
            "amount": money_str(self.amount),
            "currency_code": self.currency_code,
            "transaction_id": self.transaction_id,
            "source": self.source,
            "at": self.at,
        }


@dataclass(frozen=True)
class IssuedToken:
    token: str
    api_key: str
    developer_id: str
    issued_at_ms: int
    expires_in: int


@dataclass(frozen=True)
class LineOfCreditView:
    account_number: str
    currency_code: str
    balance_owed: Decimal
    available_credit: Decimal
    credit_limit: Decimal
    minimum_amount_due: Decimal
    minimum_due_date: str


@dataclass(frozen=True)
class MerchantView:
    """Balances of a merchant at the moment of the call."""

    prn: str
    developer_id: str | None
    account_number: str
    currency_code: str
    available_balance: Decimal
    line_of_credit: LineOfCreditView | None
    fund_enabled: bool


@dataclass(frozen=True)
class FundResult:
    outcome: Literal["applied", "replayed", "duplicate_rejected", "insufficient_credit"]
    refill: Refill | None  # the applied refill, or for "replayed" the original one
    available_credit: Decimal | None = None


@dataclass(frozen=True)
class AutoRefillRule:
    """A merchant's auto-refill rule: when the postage balance is below ``threshold``, add ``add_amount``.

    A rule whose ``threshold`` or ``add_amount`` is None is never enabled, whatever was asked:
    ``enabled`` is the effective state. Values are validated by
    :meth:`~.state.PitneyBowesState.set_pb_autorefill_rule`.
    """

    merchant_id: str
    threshold: Decimal | None = None
    add_amount: int | None = None
    enabled: bool = False

    def __post_init__(self) -> None:
        effective = bool(self.enabled) and self.threshold is not None and self.add_amount is not None
        object.__setattr__(self, "enabled", effective)

    def to_api(self) -> dict[str, Any]:
        """Pitney Bowes' JSON: ``{"merchantID", "threshold", "addAmount", "enabled"}``."""
        return {
            "merchantID": self.merchant_id,
            "threshold": self.threshold,
            "addAmount": self.add_amount,
            "enabled": self.enabled,
        }

    def to_mapping(self) -> dict[str, Any]:
        return {
            "threshold": money_str(self.threshold) if self.threshold is not None else None,
            "add_amount": self.add_amount,
            "enabled": self.enabled,
        }


def _zulu(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class PBTransaction:
    """One entry of a merchant's transaction history (every refill is a ``POSTAGE FUND`` entry)."""

    transaction_id: str
    prn: str
    transaction_type: str
    amount: Decimal
    at: datetime  # aware, UTC
    description: str | None = None

    def to_mapping(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "prn": self.prn,
            "type": self.transaction_type,
            "amount": money_str(self.amount),
            "at": self.at.isoformat(timespec="milliseconds"),
            "description": self.description,
        }

    def to_report(self, developer_id: str) -> dict[str, Any]:
        """An item of the transaction report (``GET …/transactions/reports``)."""
        return {
            "transactionId": self.transaction_id,
            "transactionDateTime": _zulu(self.at),
            "transactionType": self.transaction_type,
            "developerId": developer_id,
            "merchantId": self.prn,
            "postageDepositAmount": self.amount,
            "creditCardFee": 0,
            "description": self.description,
        }
