"""Pure rules of the Pitney Bowes API: refill body and transaction id, auto-refill rule body,
transaction report query, and Spring-style paging.

No HTTP and no state here, so that each rule can be read (and tested) on its own. Each failure is a
:class:`~..errors.RuleError` whose ``code`` is the ``errorCode`` that the route answers with HTTP 400:

* ``1000050``: the body is not JSON, not an object, or a field has the wrong JSON type or value;
* ``PB-INVALID-CURRENCY``: a refill in another currency than USD;
* ``PB-INVALID-MERCHANT-ID``: an auto-refill rule whose ``merchantID`` is not the path's merchant;
* ``PB-INVALID-PARAMETER``: a report query parameter that is missing or malformed;
* ``PB-INVALID-DATE-RANGE``: a report window that ends before it starts or starts more than
  :data:`REPORT_HISTORY_MONTHS` months ago.
"""

from __future__ import annotations

import calendar
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..errors import RuleError
from ..jsonio import loads
from ..values import parse_instant

__all__ = [
    "REPORT_DEFAULT_SIZE",
    "REPORT_HISTORY_MONTHS",
    "REPORT_MAX_SIZE",
    "TRANSACTION_ID_RE",
    "AutoRefillRequest",
    "FundRequest",
    "ReportQuery",
    "months_before",
    "spring_page",
    "validate_autorefill_body",
    "validate_fund_body",
    "validate_report_query",
]

TRANSACTION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,25}$")

#: How far back ``GET …/transactions/reports`` reaches (older entries are PB's "archived" ones).
REPORT_HISTORY_MONTHS = 6
REPORT_DEFAULT_SIZE = 20
REPORT_MAX_SIZE = 2000

_STRUCTURE = "1000050"
_PARAMETER = "PB-INVALID-PARAMETER"
_RANGE = "PB-INVALID-DATE-RANGE"
_EXAMPLE_INSTANT = "2026-11-01T00:00:00Z"


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RuleError("Invalid JSON structure", _STRUCTURE) from None
    if not isinstance(data, dict):
        raise RuleError("Invalid JSON structure", _STRUCTURE)
    return data


# --------------------------------------------------------------------------------------------
# Refill
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FundRequest:
    amount: int
    currency_code: str


def validate_fund_body(raw: bytes) -> FundRequest:
    """Validate a refill body ``{"amount": <positive integer>, "currencyCode": "USD"}``."""
    data = _json_object(raw)
    if "amount" not in data or "currencyCode" not in data:
        raise RuleError("Invalid JSON structure: amount and currencyCode are required", _STRUCTURE)
    amount = data["amount"]
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise RuleError("Invalid JSON structure: amount must be an integer number of dollars", _STRUCTURE)
    if amount <= 0:
        raise RuleError("Invalid amount: amount must be greater than 0", _STRUCTURE)
    currency = data["currencyCode"]
    if not isinstance(currency, str):
        raise RuleError("Invalid JSON structure: currencyCode must be a string", _STRUCTURE)
    if currency != "USD":
        raise RuleError(f"Unsupported currency code {currency!r}; only USD is supported", "PB-INVALID-CURRENCY")
    return FundRequest(amount=amount, currency_code=currency)


# --------------------------------------------------------------------------------------------
# Auto-refill rule
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AutoRefillRequest:
    threshold: Decimal | None
    add_amount: int | None
    enabled: bool


def validate_autorefill_body(raw: bytes, prn: str) -> AutoRefillRequest:
    """Validate ``{"merchantID": prn, "threshold": number|null, "addAmount": integer|null, "enabled": bool}``.

    A field left out is null (``enabled``: false). ``threshold`` is >= 0 with two decimal places at
    most, ``addAmount`` a whole number of dollars >= 0. Other fields are ignored.
    """
    data = _json_object(raw)
    merchant_id = data.get("merchantID")
    if merchant_id is None:
        raise RuleError(f"merchantID is required: the merchant's postalReportingNumber {prn}", "PB-INVALID-MERCHANT-ID")
    if not isinstance(merchant_id, str):
        raise RuleError("Invalid JSON structure: merchantID must be a string", _STRUCTURE)
    if merchant_id != prn:
        raise RuleError(
            f"merchantID {merchant_id!r} does not match the postalReportingNumber {prn!r} of the path",
            "PB-INVALID-MERCHANT-ID",
        )
    threshold = data.get("threshold")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | Decimal):
            raise RuleError("Invalid JSON structure: threshold must be a number or null", _STRUCTURE)
        threshold = Decimal(threshold)
        if threshold < 0:
            raise RuleError(f"Invalid threshold {threshold}: it must be 0 or more", _STRUCTURE)
        if threshold != threshold.quantize(Decimal("0.01")):
            raise RuleError(f"Invalid threshold {threshold}: at most two decimal places", _STRUCTURE)
    add_amount = data.get("addAmount")
    if add_amount is not None:
        if isinstance(add_amount, bool) or not isinstance(add_amount, int):
            raise RuleError(
                "Invalid JSON structure: addAmount must be an integer number of dollars or null", _STRUCTURE
            )
        if add_amount < 0:
            raise RuleError(f"Invalid addAmount {add_amount}: it must be 0 or more", _STRUCTURE)
    enabled = data.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise RuleError("Invalid JSON structure: enabled must be true, false or null", _STRUCTURE)
    return AutoRefillRequest(threshold=threshold, add_amount=add_amount, enabled=bool(enabled))


# --------------------------------------------------------------------------------------------
# Transaction report
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportQuery:
    from_time: datetime
    to_time: datetime
    transaction_type: str | None
    merchant_id: str | None
    page: int
    size: int


def months_before(moment: datetime, months: int) -> datetime:
    """The same time ``months`` calendar months earlier (the day clamped to the month's length)."""
    index = moment.year * 12 + moment.month - 1 - months
    year, month = index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _instant_param(params: Mapping[str, str], name: str) -> datetime:
    text = params.get(name)
    if text is None or not text.strip():
        raise RuleError(f"{name} is required: an ISO 8601 date-time such as {_EXAMPLE_INSTANT}", _PARAMETER)
    moment = parse_instant(text)
    if moment is None:
        raise RuleError(f"{name} must be an ISO 8601 date-time such as {_EXAMPLE_INSTANT}, got {text!r}", _PARAMETER)
    return moment


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int | None = None) -> int:
    text = params.get(name)
    if text is None or not text.strip():
        return default
    text = text.strip()
    bounds = f"from {low} to {high}" if high is not None else f"{low} or more"
    if not (text.isascii() and text.isdigit()) or int(text) < low or (high is not None and int(text) > high):
        raise RuleError(f"{name} must be an integer {bounds}, got {text!r}", _PARAMETER)
    return int(text)


def _optional_param(params: Mapping[str, str], name: str) -> str | None:
    text = (params.get(name) or "").strip()
    return text or None


def validate_report_query(params: Mapping[str, str], now: datetime) -> ReportQuery:
    """Validate the query of ``GET …/transactions/reports``.

    ``fromDate`` and ``toDate`` (required ISO 8601 date-times; without an offset they are UTC),
    ``transactionType`` and ``merchantId`` (optional filters), ``page`` (0-based, default 0) and
    ``size`` (1 to 2000, default 20). ``fromDate`` must not be after ``toDate`` nor more than
    :data:`REPORT_HISTORY_MONTHS` calendar months before ``now``.
    """
    from_time = _instant_param(params, "fromDate")
    to_time = _instant_param(params, "toDate")
    if from_time > to_time:
        raise RuleError(f"fromDate {params['fromDate']} is after toDate {params['toDate']}", _RANGE)
    earliest = months_before(now, REPORT_HISTORY_MONTHS)
    if from_time < earliest:
        raise RuleError(
            f"fromDate {params['fromDate']} is more than {REPORT_HISTORY_MONTHS} months ago: transaction reports "
            f"cover {earliest.isoformat(timespec='seconds').replace('+00:00', 'Z')} onwards",
            _RANGE,
        )
    return ReportQuery(
        from_time=from_time,
        to_time=to_time,
        transaction_type=_optional_param(params, "transactionType"),
        merchant_id=_optional_param(params, "merchantId"),
        page=_int_param(params, "page", 0, 0),
        size=_int_param(params, "size", REPORT_DEFAULT_SIZE, 1, REPORT_MAX_SIZE),
    )


def spring_page(items: Sequence[Any], page: int, size: int) -> dict[str, Any]:
    """Page ``page`` (0-based) of ``items`` in the shape of a Spring ``Page``:
    ``content``, ``totalElements``, ``totalPages``, ``number``, ``size``, ``numberOfElements``,
    ``first``, ``last``."""
    total = len(items)
    pages = math.ceil(total / size)
    content = list(items[page * size : (page + 1) * size])
    return {
        "content": content,
        "totalElements": total,
        "totalPages": pages,
        "number": page,
        "size": size,
        "numberOfElements": len(content),
        "first": page == 0,
        "last": page >= pages - 1,
    }
