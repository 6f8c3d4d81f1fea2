"""Pitney Bowes funding policy as plain functions: the merchant's auto-refill rule (read, replace) and
the transaction report (spend history). Requests out, typed results or typed errors back; no I/O here.

The rule is replaced whole: a field a ``POST`` leaves out is set to null by Pitney Bowes, and a rule
without a threshold or an amount is disabled. So every request carries all four fields.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

from airflow_provider_postage.protocol.errors import PostageResponseError, PostageValidationError
from airflow_provider_postage.protocol.http import HttpRequest, HttpResponse
from airflow_provider_postage.protocol.money import format_money, parse_amount, parse_threshold, reply_amount
from airflow_provider_postage.protocol.pitney_bowes import (
    PROVIDER,
    PitneyBowesSettings,
    _bearer_headers,
    _parse_json,
    _scalar,
    error_from_response,
)

POSTAGE_FUND = "POSTAGE FUND"
#: The transaction report reaches this many calendar months back; older entries are archived.
REPORT_HISTORY_MONTHS = 6
MAX_PAGE_SIZE = 2000
#: Entries per page by default: well under the reply size cap (``http.MAX_RESPONSE_BYTES``) even with
#: long descriptions, and still one request for a month of most merchants.
DEFAULT_PAGE_SIZE = 500
_INSTANT = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d{1,9}))?\s*([Zz]|[+-]\d{2}:?\d{2})?")


@dataclass(frozen=True)
class AutoRefillRule:
    """A merchant's auto-refill rule: when the postage balance falls below ``threshold``, Pitney Bowes
    adds ``add_amount``. ``enabled`` is the API's word, false whenever either amount is unset."""

    merchant_id: str
    threshold: Decimal | None
    add_amount: Decimal | None
    enabled: bool

    def matches(self, threshold: Decimal, add_amount: Decimal, enabled: bool) -> bool:
        return (self.threshold, self.add_amount, self.enabled) == (threshold, add_amount, enabled)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (XCom): amounts as decimal strings, None when unset."""
        return {
            "merchant_id": self.merchant_id,
            "threshold": None if self.threshold is None else format_money(self.threshold),
            "add_amount": None if self.add_amount is None else format_money(self.add_amount),
            "enabled": self.enabled,
        }


@dataclass(frozen=True)
class PBTransaction:
    """One entry of the transaction report. ``amount`` is its ``postageDepositAmount``: always set for a
    ``POSTAGE FUND`` entry, None for another kind of entry that has none."""

    transaction_id: str
    at: dt.datetime
    transaction_type: str
    merchant_id: str | None
    amount: Decimal | None
    description: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "at": self.at.isoformat(),
            "transaction_type": self.transaction_type,
            "merchant_id": self.merchant_id,
            "amount": None if self.amount is None else format_money(self.amount),
            "description": self.description,
        }


@dataclass(frozen=True)
class TransactionQuery:
    """A validated report query: ``from_time <= entry time <= to_time``, both aware UTC datetimes."""

    from_time: dt.datetime
    to_time: dt.datetime
    transaction_type: str | None
    page_size: int


# --- validation -------------------------------------------------------------------------------------


def validate_rule(threshold: object, add_amount: object, enabled: object) -> tuple[Decimal, Decimal, bool]:
    """The rule as it will be sent: ``threshold`` >= 0 with cents at most, ``add_amount`` whole dollars
    above zero, ``enabled`` a bool. None is refused (Pitney Bowes would store null and disable the rule);
    floats are refused (inexact)."""
    for name, value in (("threshold", threshold), ("add_amount", add_amount)):
        if value is None:
            raise PostageValidationError(name, "is required: a rule without it is disabled by Pitney Bowes")
    limit = parse_threshold(threshold, field="threshold")
    amount = parse_amount(add_amount, field="add_amount")
    if amount != amount.to_integral_value():
        raise PostageValidationError("add_amount", "must be a whole number of dollars for Pitney Bowes")
    if not isinstance(enabled, bool):
        raise PostageValidationError("enabled", f"must be true or false, not {type(enabled).__name__}")
    return limit, amount, enabled


def months_before(moment: dt.datetime, months: int) -> dt.datetime:
    """The same time ``months`` calendar months earlier, the day clamped to the month's length."""
    index = moment.year * 12 + moment.month - 1 - months
    year, month = index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def parse_instant(value: object, field: str) -> dt.datetime:
    """An aware datetime, or an ISO 8601 date-time with an offset or ``Z``, as UTC. A naive datetime
    is refused: its time zone would be a guess."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise PostageValidationError(field, "must be timezone-aware (e.g. UTC)")
        return value.astimezone(dt.timezone.utc)
    if isinstance(value, str):
        moment = _instant(value, need_offset=True)
        if moment is not None:
            return moment
        raise PostageValidationError(field, "must be an ISO 8601 date-time with an offset, e.g. 2026-11-01T00:00:00Z")
    raise PostageValidationError(field, f"must be an aware datetime or an ISO 8601 string, not {type(value).__name__}")


def validate_query(
    from_date: object,
    to_date: object,
    transaction_type: str | None,
    page_size: object,
    *,
    now: dt.datetime,
) -> TransactionQuery:
    """Everything the report needs, checked before any request: ``from_date`` not after ``to_date`` and
    not more than six calendar months before ``now`` (Pitney Bowes refuses older ones)."""
    start, end = parse_instant(from_date, "from_date"), parse_instant(to_date, "to_date")
    if start > end:
        raise PostageValidationError("from_date", "is after to_date")
    earliest = months_before(now.astimezone(dt.timezone.utc), REPORT_HISTORY_MONTHS)
    if start < earliest:
        raise PostageValidationError(
            "from_date",
            f"is {_zulu(start)}, more than {REPORT_HISTORY_MONTHS} months ago: Pitney Bowes transaction reports "
            f"only reach back to {_zulu(earliest)}",
        )
    if transaction_type is not None and (not isinstance(transaction_type, str) or not transaction_type.strip()):
        raise PostageValidationError("transaction_type", "must be a non-empty string, or None for every type")
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise PostageValidationError("page_size", f"must be a whole number from 1 to {MAX_PAGE_SIZE}")
    return TransactionQuery(start, end, transaction_type.strip() if transaction_type else None, page_size)


# --- auto-refill rule ---------------------------------------------------------------------------------


def _rule_url(settings: PitneyBowesSettings) -> str:
    return f"{settings.merchant_url}/autorefillrule"


def build_get_rule_request(settings: PitneyBowesSettings, token: str) -> HttpRequest:
    return HttpRequest("GET", _rule_url(settings), _bearer_headers(token))


def build_set_rule_request(
    settings: PitneyBowesSettings, token: str, threshold: Decimal, add_amount: Decimal, enabled: bool
) -> HttpRequest:
    """Every field, always (one left out would be stored as null). The amounts go as exact JSON numbers.
    Replacing a rule with the same rule changes nothing, so the driver may resend it like a read."""
    threshold = threshold.quantize(Decimal("0.01")) + 0  # + 0: never "-0.00"
    body = (
        f'{{"merchantID": {json.dumps(settings.postal_reporting_number)}, "threshold": {threshold}, '
        f'"addAmount": {int(add_amount)}, "enabled": {json.dumps(enabled)}}}'
    )
    headers = {**_bearer_headers(token), "Content-Type": "application/json"}
    return HttpRequest("POST", _rule_url(settings), headers, body.encode())


def _optional_amount(document: Mapping[str, Any], name: str, response: HttpResponse) -> Decimal | None:
    value = document.get(name)
    if value is None:
        return None
    try:
        return reply_amount(value, name)
    except ValueError as error:
        raise PostageResponseError(PROVIDER, response.status, str(error)) from None


def parse_rule_response(response: HttpResponse, settings: PitneyBowesSettings) -> AutoRefillRule:
    if not 200 <= response.status < 300:
        raise error_from_response(response)
    document = _parse_json(response)
    if not isinstance(document, dict):
        raise PostageResponseError(PROVIDER, response.status, "auto-refill rule reply is not an object")
    merchant = _scalar(document.get("merchantID")) or settings.postal_reporting_number
    if merchant != settings.postal_reporting_number:
        raise PostageResponseError(PROVIDER, response.status, "auto-refill rule reply is for another merchant")
    enabled = document.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise PostageResponseError(PROVIDER, response.status, "field enabled is not true or false")
    threshold = _optional_amount(document, "threshold", response)
    add_amount = _optional_amount(document, "addAmount", response)
    # A rule missing an amount never fires, whatever its flag says.
    effective = bool(enabled) and threshold is not None and add_amount is not None
    return AutoRefillRule(merchant, threshold, add_amount, effective)


# --- transaction report ------------------------------------------------------------------------------


def _zulu(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_transactions_request(
    settings: PitneyBowesSettings, token: str, query: TransactionQuery, page: int
) -> HttpRequest:
    params = {"fromDate": _zulu(query.from_time), "toDate": _zulu(query.to_time)}
    if query.transaction_type:
        params["transactionType"] = query.transaction_type
    params.update(merchantId=settings.postal_reporting_number, page=str(page), size=str(query.page_size))
    url = (
        f"{settings.api_base}/v4/ledger/developers/{settings.developer_id}/transactions/reports?"
        f"{urlencode(params, quote_via=quote)}"
    )
    return HttpRequest("GET", url, _bearer_headers(token))


def _instant(text: str, *, need_offset: bool = False) -> dt.datetime | None:
    """ISO 8601 with ``Z``, any number of fraction digits and an offset (UTC when none, unless
    ``need_offset``): ``datetime.fromisoformat`` on Python 3.10 takes no ``Z`` nor 1-2 or 7-9 digit
    fractions."""
    found = _INSTANT.fullmatch(text.strip())
    if found is None or (need_offset and not found.group(4)):
        return None
    day, clock, fraction, offset = found.groups()
    clock = clock if clock.count(":") == 2 else f"{clock}:00"
    micro = (fraction or "").ljust(6, "0")[:6]
    if not offset or offset in "Zz":
        offset = "+00:00"
    elif ":" not in offset:
        offset = f"{offset[:3]}:{offset[3:]}"
    try:
        return dt.datetime.fromisoformat(f"{day}T{clock}.{micro}{offset}").astimezone(dt.timezone.utc)
    except ValueError:
        return None


def _entry(item: Any, response: HttpResponse) -> PBTransaction:
    def bad(problem: str) -> PostageResponseError:
        return PostageResponseError(PROVIDER, response.status, f"transaction report entry {problem}")

    if not isinstance(item, dict):
        raise bad("is not an object")
    transaction_id = _scalar(item.get("transactionId"))
    if transaction_id is None:
        raise bad("has no transactionId")
    stamp = item.get("transactionDateTime")
    at = _instant(stamp) if isinstance(stamp, str) else None
    if at is None:
        raise bad("has no readable transactionDateTime")
    kind = _scalar(item.get("transactionType")) or ""
    amount = _optional_amount(item, "postageDepositAmount", response)
    if amount is None and kind.upper() == POSTAGE_FUND:
        raise bad("of type POSTAGE FUND has no postageDepositAmount")
    description = item.get("description")
    return PBTransaction(
        transaction_id,
        at,
        kind,
        _scalar(item.get("merchantId")),
        amount,
        description if isinstance(description, str) else None,
    )


def parse_transactions_page(response: HttpResponse, page: int) -> tuple[list[PBTransaction], bool]:
    """The entries of one page, and whether it is the last one (``last``, else ``number`` and
    ``totalPages``; an empty page ends the report too)."""
    if not 200 <= response.status < 300:
        raise error_from_response(response)
    document = _parse_json(response)
    content = document.get("content") if isinstance(document, dict) else None
    if not isinstance(content, list):
        raise PostageResponseError(PROVIDER, response.status, "transaction report reply has no content list")
    entries = [_entry(item, response) for item in content]
    last = document.get("last")
    if not isinstance(last, bool):
        pages, number = document.get("totalPages"), document.get("number")
        number = number if isinstance(number, int) and not isinstance(number, bool) else page
        last = not isinstance(pages, int) or isinstance(pages, bool) or number + 1 >= pages
    return entries, last or not entries
