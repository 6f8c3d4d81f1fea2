"""Pure rules of the Click2Mail API: its balance number format and its credit purchase validation.

No HTTP and no state here, so that each rule can be read (and tested) on its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Literal, get_args

from ..errors import RuleError
from ..jsonio import plain_number

__all__ = [
    "C2M_ENVIRONMENTS",
    "C2M_MINIMUM_PURCHASE",
    "C2M_PURCHASE_FIELDS",
    "C2M_TEST_CARD",
    "C2MEnvironment",
    "PurchaseRequest",
    "c2m_balance_text",
    "luhn_ok",
    "validate_c2m_purchase",
]

C2MEnvironment = Literal["staging", "production"]
C2M_ENVIRONMENTS: tuple[C2MEnvironment, ...] = get_args(C2MEnvironment)

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

_AMOUNT_RE = re.compile(r"^[0-9]+(\.[0-9]{1,2})?$")
_MONTH_RE = re.compile(r"^(0[1-9]|1[0-2])$")
_YEAR_RE = re.compile(r"^([0-9]{2}|[0-9]{4})$")
_CARD_TYPE_RE = re.compile(r"^[A-Za-z]{2}$")


def c2m_balance_text(value: Decimal) -> str:
    """Click2Mail's balance format: trailing zeros stripped, at least one decimal place.

    5 -> "5.0", 12.50 -> "12.5", 10.25 -> "10.25", -3 -> "-3.0", 0 -> "0.0".
    """
    text = plain_number(value)
    return text if "." in text else text + ".0"


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
