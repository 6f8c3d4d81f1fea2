"""Values every part of the sandbox shares: money (Decimal, two places), drain rates, instants.

No float ever touches an amount: money is :class:`~decimal.Decimal`, clocks are integer nanoseconds.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import cast

from .errors import InvalidSettingError

__all__ = [
    "CENT",
    "check_date",
    "iso_ms",
    "money_str",
    "parse_instant",
    "to_money",
    "to_rate",
    "utc_datetime",
]

CENT = Decimal("0.01")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def to_money(value: object, what: str = "amount") -> Decimal:
    """Convert ``value`` (Decimal, int or decimal string) to a Decimal with two places.

    Floats and booleans are refused, as are values with more than two decimal places.
    """
    if isinstance(value, bool | float):
        raise InvalidSettingError(f"{what} must be a Decimal, an int or a decimal string, not {value!r}")
    if isinstance(value, Decimal):
        dec = value
    elif isinstance(value, int):
        dec = Decimal(value)
    elif isinstance(value, str):
        try:
            dec = Decimal(value.strip())
        except InvalidOperation:
            raise InvalidSettingError(f"{what} is not a decimal number: {value!r}") from None
    else:
        raise InvalidSettingError(f"{what} must be a Decimal, an int or a decimal string, not {value!r}")
    if not dec.is_finite():
        raise InvalidSettingError(f"{what} must be finite: {value!r}")
    quantized = dec.quantize(CENT)
    if quantized != dec:
        raise InvalidSettingError(f"{what} has more than two decimal places: {value!r}")
    return quantized


def to_rate(value: object) -> Decimal:
    """A drain rate in dollars per second: a finite Decimal >= 0 (any number of places)."""
    if isinstance(value, bool | float):
        raise InvalidSettingError(f"rate_per_second must be a Decimal, an int or a string, not {value!r}")
    try:
        rate = Decimal(value.strip()) if isinstance(value, str) else Decimal(cast(Decimal | int, value))
    except (InvalidOperation, TypeError):
        raise InvalidSettingError(f"rate_per_second is not a decimal number: {value!r}") from None
    if not rate.is_finite() or rate < 0:
        raise InvalidSettingError(f"rate_per_second must be a finite number >= 0: {value!r}")
    return rate


def money_str(value: Decimal) -> str:
    """Two-place string of an amount (``Decimal("5") -> "5.00"``)."""
    return format(value.quantize(CENT), "f")


def check_date(value: str) -> str:
    """``value`` if it is a ``YYYY-MM-DD`` date, else :class:`InvalidSettingError`."""
    try:
        date.fromisoformat(value)
    except ValueError:
        raise InvalidSettingError(f"not a YYYY-MM-DD date: {value!r}") from None
    return value


def utc_datetime(ns: int) -> datetime:
    """Epoch nanoseconds as an aware UTC datetime (integer arithmetic, microsecond precision)."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def iso_ms(ns: int) -> str:
    """Epoch nanoseconds as ISO 8601 UTC with milliseconds: ``2026-11-01T10:20:30.123+00:00``."""
    return utc_datetime(ns).isoformat(timespec="milliseconds")


def parse_instant(text: str) -> datetime | None:
    """An ISO 8601 date-time (``2026-11-01T00:00:00Z``, ``…+02:00``, fractions allowed; without an
    offset it is UTC) as an aware UTC datetime; None when ``text`` is not one (a bare date is not)."""
    value = text.strip()
    if "T" not in value.upper():
        return None
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
