"""Pure rules of the emulated APIs: number formats, JSON without floats, request validation.

No HTTP and no state here, so that each rule can be read (and tested) on its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "C2M_PURCHASE_FIELDS",
    "C2M_TEST_CARD",
    "TRANSACTION_ID_RE",
    "FundRequest",
    "PurchaseRequest",
    "RuleError",
    "c2m_balance_text",
    "dumps",
    "json_number",
    "loads",
    "luhn_ok",
    "validate_c2m_purchase",
    "validate_fund_body",
]

C2M_PURCHASE_FIELDS: tuple[str, ...] = (
    "billingName",
    "billingAddress1",
    "billingCity",
    "billingState",
    "billingZip",
    "billingAmount",
    "billingNumber",
    "billingMonth",
    "billingYear",
    "billingCvv",
    "billingCcType",
)
C2M_TEST_CARD = "4111111111111111"
C2M_MINIMUM_PURCHASE = Decimal("10")

TRANSACTION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,25}$")

_AMOUNT_RE = re.compile(r"^[0-9]+(\.[0-9]{1,2})?$")
_MONTH_RE = re.compile(r"^(0[1-9]|1[0-2])$")
_YEAR_RE = re.compile(r"^([0-9]{2}|[0-9]{4})$")
_CARD_TYPE_RE = re.compile(r"^[A-Za-z]{2}$")


# --------------------------------------------------------------------------------------------
# Numbers and JSON
# --------------------------------------------------------------------------------------------
def _plain(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def json_number(value: Decimal | int) -> str:
    """JSON number text of an amount, shortest exact form: 457.22, 500, 12.5, 0."""
    if isinstance(value, bool):
        raise TypeError("a bool is not an amount")
    if isinstance(value, int):
        return str(value)
    return _plain(value)


def c2m_balance_text(value: Decimal) -> str:
    """Click2Mail's balance format: trailing zeros stripped, at least one decimal place.

    5 -> "5.0", 12.50 -> "12.5", 10.25 -> "10.25", -3 -> "-3.0", 0 -> "0.0".
    """
    text = _plain(value)
    return text if "." in text else text + ".0"


def dumps(obj: Any) -> str:
    """Compact JSON text; Decimal becomes a JSON number written from its digits; floats are refused."""
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, Decimal):
        return _plain(obj)
    if isinstance(obj, float):
        raise TypeError("floats are not allowed in sandbox JSON; use Decimal")
    if isinstance(obj, str):
        return json.dumps(obj)
    if isinstance(obj, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, Sequence):
        return "[" + ",".join(dumps(v) for v in obj) + "]"
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def loads(text: str | bytes) -> Any:
    """Parse JSON with every non-integer number as Decimal (never float)."""
    return json.loads(text, parse_float=Decimal)


# --------------------------------------------------------------------------------------------
# Click2Mail purchase
# --------------------------------------------------------------------------------------------
class RuleError(Exception):
    """A request rejected by an API rule; ``description`` is what the API says."""

    def __init__(self, description: str, code: str = "") -> None:
        super().__init__(description)
        self.description = description
        self.code = code


@dataclass(frozen=True)
class PurchaseRequest:
    amount: Decimal
    card_number: str


def luhn_ok(number: str) -> bool:
    """Luhn checksum of a string of digits (12 to 19 of them)."""
    if not number.isdigit() or not 12 <= len(number) <= 19 or not number.isascii():
        return False
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def validate_c2m_purchase(form: Mapping[str, str], environment: str, today: date) -> PurchaseRequest:
    """Apply Click2Mail's purchase rules in order; raise :class:`RuleError` on the first failure.

    Order: required parameters, amount (format then $10 minimum), card type and CVV format,
    expiry, test card in production, Luhn.
    """
    values = {name: (form.get(name) or "").strip() for name in C2M_PURCHASE_FIELDS}
    if any(not value for value in values.values()):
        raise RuleError("One of the required parameters is missing.")

    amount_text = values["billingAmount"]
    if not _AMOUNT_RE.match(amount_text):
        raise RuleError("Invalid input data")
    try:
        amount = Decimal(amount_text)
    except InvalidOperation:  # pragma: no cover - the regex already guarantees a decimal
        raise RuleError("Invalid input data") from None
    if amount < C2M_MINIMUM_PURCHASE:
        raise RuleError("Minimum purchase amount is $10.00")

    card_type = values["billingCcType"].upper()
    if not _CARD_TYPE_RE.match(card_type):
        raise RuleError("Invalid input data")
    cvv = values["billingCvv"]
    cvv_length = 4 if card_type == "AE" else 3
    if not (cvv.isascii() and cvv.isdigit() and len(cvv) == cvv_length):
        raise RuleError("Invalid input data")

    month, year = values["billingMonth"], values["billingYear"]
    if not _YEAR_RE.match(year):
        raise RuleError("Invalid input data")
    if not _MONTH_RE.match(month):
        raise RuleError("Authorization failed: card expired")
    full_year = int(year) + 2000 if len(year) == 2 else int(year)
    if (full_year, int(month)) < (today.year, today.month):
        raise RuleError("Authorization failed: card expired")

    number = re.sub(r"[ -]", "", values["billingNumber"])
    if environment == "production" and number == C2M_TEST_CARD:
        raise RuleError("Authorization failed: test card not accepted in production")
    if not luhn_ok(number):
        raise RuleError("Authorization failed")
    return PurchaseRequest(amount=amount, card_number=number)


# --------------------------------------------------------------------------------------------
# Pitney Bowes refill
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FundRequest:
    amount: int
    currency_code: str


def validate_fund_body(raw: bytes) -> FundRequest:
    """Validate a refill body ``{"amount": <positive integer>, "currencyCode": "USD"}``."""
    try:
        data = loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RuleError("Invalid JSON structure", "1000050") from None
    if not isinstance(data, dict):
        raise RuleError("Invalid JSON structure", "1000050")
    if "amount" not in data or "currencyCode" not in data:
        raise RuleError("Invalid JSON structure: amount and currencyCode are required", "1000050")
    amount = data["amount"]
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise RuleError("Invalid JSON structure: amount must be an integer number of dollars", "1000050")
    if amount <= 0:
        raise RuleError("Invalid amount: amount must be greater than 0", "1000050")
    currency = data["currencyCode"]
    if not isinstance(currency, str):
        raise RuleError("Invalid JSON structure: currencyCode must be a string", "1000050")
    if currency != "USD":
        raise RuleError(f"Unsupported currency code {currency!r}; only USD is supported", "PB-INVALID-CURRENCY")
    return FundRequest(amount=amount, currency_code=currency)
