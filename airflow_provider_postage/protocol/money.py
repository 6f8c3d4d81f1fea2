"""Exact money: every amount that enters the provider passes through :func:`parse_amount`."""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation

from airflow_provider_postage.protocol.errors import PostageValidationError

CENT = Decimal("0.01")
_DECIMAL_TEXT = re.compile(r"[+-]?\d{1,15}(\.\d{1,15})?")
#: Far above any real balance or purchase; keeps absurd inputs (``1e400``) out of arithmetic.
LARGEST = Decimal("1e12")


def to_decimal(value: object, *, field: str) -> Decimal:
    """Turn str/int/Decimal into a finite Decimal; refuse float (binary, inexact) and bool outright."""
    if isinstance(value, (bool, float)):
        raise PostageValidationError(
            field, f"must be a string, int or Decimal, not {type(value).__name__} (floats are inexact)"
        )
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise PostageValidationError(field, "is not a number") from None
    else:
        raise PostageValidationError(field, f"must be a string, int or Decimal, not {type(value).__name__}")
    if not result.is_finite():
        raise PostageValidationError(field, "must be a finite number")
    if result.copy_abs() >= LARGEST:  # copy_abs: no context, so no Overflow on 1e1000000
        raise PostageValidationError(field, "is implausibly large")
    return result


def parse_amount(value: object, *, field: str = "amount", minimum: Decimal | None = None) -> Decimal:
    """A positive amount of money with at most two decimal places (cents)."""
    amount = to_decimal(value, field=field)
    if amount <= 0:
        raise PostageValidationError(field, "must be greater than zero")
    if amount != amount.quantize(CENT):
        raise PostageValidationError(field, "must have at most two decimal places")
    if minimum is not None and amount < minimum:
        raise PostageValidationError(field, f"must be at least {format_money(minimum)}")
    return amount.quantize(CENT)


def parse_threshold(value: object, *, field: str = "threshold") -> Decimal:
    """A non-negative amount with at most two decimal places."""
    amount = to_decimal(value, field=field)
    if amount < 0:
        raise PostageValidationError(field, "must not be negative")
    if amount != amount.quantize(CENT):
        raise PostageValidationError(field, "must have at most two decimal places")
    return amount.quantize(CENT)


def round_up(amount: Decimal, step: Decimal) -> Decimal:
    """Round ``amount`` up to a whole multiple of ``step`` (cents, or whole dollars for Pitney Bowes)."""
    return (amount / step).to_integral_value(rounding=ROUND_CEILING) * step


def reply_amount(value: object, name: str) -> Decimal:
    """An amount read from an API reply: a JSON number (already a Decimal), an int or a decimal string,
    finite and below :data:`LARGEST`. Raises ValueError naming the field, never quoting the value."""
    if isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value.strip()):
        value = Decimal(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ValueError(f"field {name} is missing or not a number")
    if isinstance(value, int) and abs(value) >= LARGEST:  # before Decimal(): a huge int is slow to convert
        raise ValueError(f"field {name} is implausibly large")
    result = Decimal(value)
    if not result.is_finite() or result.copy_abs() >= LARGEST:
        raise ValueError(f"field {name} is not a plausible amount")
    return result


def format_money(amount: Decimal) -> str:
    """``Decimal('12.5')`` -> ``'12.50'``: the form used in XCom, logs and messages; never rounds."""
    try:
        if amount == amount.quantize(CENT):
            return str(amount.quantize(CENT))
    except InvalidOperation:  # beyond the context's precision: shown as it is
        pass
    return str(amount)
