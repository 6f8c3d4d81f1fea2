"""Click2Mail ("MOL Pro") credit API as plain functions: settings from a connection, requests out,
typed results or typed errors back. No I/O here; see ``hooks.postage`` (sync) and ``triggers.postage``
(async) for the two drivers."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode
from xml.parsers.expat import ExpatError

import xmltodict

from airflow_provider_postage.protocol.errors import (
    PostageAPIError,
    PostageAuthError,
    PostageConfigError,
    PostageResponseError,
)
from airflow_provider_postage.protocol.http import (
    HttpRequest,
    HttpResponse,
    basic_auth,
    endpoint,
    extra_value,
    verify_tls,
)
from airflow_provider_postage.protocol.money import format_money, parse_amount, reply_amount
from airflow_provider_postage.protocol.records import CLICK2MAIL, CREDIT, Balance, PurchaseResult

PROVIDER = CLICK2MAIL
BASE_URLS = {
    "staging": "https://stage-rest.click2mail.com/molpro",
    "production": "https://rest.click2mail.com/molpro",
}
DEFAULT_ENVIRONMENT = "staging"
MINIMUM_PURCHASE = Decimal("10.00")
STAGING_TEST_CARD = "4111111111111111"
CARD_TYPES = ("VI", "MC", "DI", "AE")
BILLING_FIELDS = ("billing_name", "billing_address1", "billing_city", "billing_state", "billing_zip")
#: The card number and CVV live in extras whose keys hold "secret": Airflow hides an extra by its key
#: (REST API, UI edit form, ``airflow connections get``), whatever the form widget.
CARD_NUMBER = "card_number_secret"
CARD_CVV = "card_cvv_secret"
CARD_FIELDS = (CARD_NUMBER, "card_exp_month", "card_exp_year", CARD_CVV, "card_type")
#: Extra names of earlier releases, still read (with a deprecation warning): Airflow shows them in clear.
RENAMED_EXTRAS = {"card_number": CARD_NUMBER, "card_cvv": CARD_CVV}
#: Extras that hold secrets: registered with the masker as soon as a connection is read. The CVV is
#: too short for the masker (under 5 characters), so it is simply never logged, stored or echoed.
SECRET_EXTRAS = (CARD_NUMBER, "card_number")

_ZIP = re.compile(r"^\d{5}(-\d{4})?$")
_XML_HEADERS = {"Accept": "application/xml"}


@dataclass(frozen=True)
class BillingProfile:
    """The card and billing address a purchase is paid with; validated by :func:`validate_billing`."""

    name: str
    address1: str
    city: str
    state: str
    zip: str
    card_number: str = field(repr=False)
    exp_month: str = field(repr=False)
    exp_year: str = field(repr=False)
    cvv: str = field(repr=False)
    card_type: str = field(repr=False)


@dataclass(frozen=True)
class Click2MailSettings:
    """What a ``click2mail`` connection says. ``billing`` is None when its billing extras are all empty
    (a read-only connection); purchases then fail with a clear error."""

    username: str
    password: str = field(repr=False)
    environment: str
    base_url: str
    billing_extras: Mapping[str, Any] = field(repr=False, default_factory=dict)
    #: TLS certificate verification: True, False (only a connection's explicit ``verify_ssl: false``),
    #: or the path of a CA bundle.
    verify: bool | str = True
    #: Extra names of earlier releases that this connection still uses (the hooks warn).
    deprecated_extras: tuple[str, ...] = ()


def _extra(extra: Mapping[str, Any], name: str) -> Any:
    return extra_value(extra, "click2mail", name)


def settings_from_connection(
    login: str | None,
    password: str | None,
    host: str | None,
    extra: Mapping[str, Any],
    *,
    port: object = None,
    schema: str | None = None,
) -> Click2MailSettings:
    if not login:
        raise PostageConfigError("login", "the Click2Mail account username is missing")
    if not password:
        raise PostageConfigError("password", "the Click2Mail account password is missing")
    environment, base_url = endpoint(
        _extra(extra, "environment"), BASE_URLS, DEFAULT_ENVIRONMENT, host, port=port, scheme=schema
    )
    if not base_url.endswith("/molpro"):
        base_url = f"{base_url}/molpro"
    billing = {name: _extra(extra, name) for name in (*BILLING_FIELDS, *CARD_FIELDS)}
    deprecated = []
    for old, new in RENAMED_EXTRAS.items():
        if _extra(extra, old) not in (None, ""):
            deprecated.append(old)
            if billing[new] in (None, ""):
                billing[new] = _extra(extra, old)
    verify = verify_tls(_extra(extra, "verify_ssl"), _extra(extra, "ca_bundle"))
    return Click2MailSettings(login, password, environment, base_url, billing, verify, tuple(deprecated))


def luhn_ok(number: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def validate_billing(settings: Click2MailSettings, *, today: dt.date) -> BillingProfile:
    """Check the billing profile of a connection before a purchase. Messages name the field and never
    repeat a card number or CVV."""
    raw = {name: ("" if value is None else str(value).strip()) for name, value in settings.billing_extras.items()}
    for name in (*BILLING_FIELDS, *CARD_FIELDS):
        if not raw.get(name):
            raise PostageConfigError(name, "is required for a Click2Mail purchase and is missing")
    if not _ZIP.match(raw["billing_zip"]):
        raise PostageConfigError("billing_zip", "must be 5 digits, or ZIP+4 (5 digits, a hyphen, 4 digits)")
    card_type = raw["card_type"].upper()
    if card_type not in CARD_TYPES:
        raise PostageConfigError("card_type", f"must be one of {', '.join(CARD_TYPES)}")
    number = re.sub(r"[\s-]", "", raw[CARD_NUMBER])
    if not number.isdigit() or not 12 <= len(number) <= 19:
        raise PostageConfigError(CARD_NUMBER, "must be 12 to 19 digits")
    if not luhn_ok(number):
        raise PostageConfigError(CARD_NUMBER, "fails the Luhn check (mistyped card number)")
    if settings.environment == "production" and number == STAGING_TEST_CARD:
        raise PostageConfigError(CARD_NUMBER, "is the staging test card, which production refuses")
    month_text = raw["card_exp_month"]
    if not month_text.isdigit() or not 1 <= int(month_text) <= 12:
        raise PostageConfigError("card_exp_month", "must be a month from 01 to 12")
    year_text = raw["card_exp_year"]
    if not year_text.isdigit() or len(year_text) not in (2, 4):
        raise PostageConfigError("card_exp_year", "must be 2 or 4 digits")
    year = int(year_text) + (2000 if len(year_text) == 2 else 0)
    if (year, int(month_text)) < (today.year, today.month):
        raise PostageConfigError("card_exp_year", "the card has expired")
    cvv_length = 4 if card_type == "AE" else 3
    if not raw[CARD_CVV].isdigit() or len(raw[CARD_CVV]) != cvv_length:
        raise PostageConfigError(CARD_CVV, f"must be {cvv_length} digits for card type {card_type}")
    return BillingProfile(
        name=raw["billing_name"],
        address1=raw["billing_address1"],
        city=raw["billing_city"],
        state=raw["billing_state"],
        zip=raw["billing_zip"],
        card_number=number,
        exp_month=f"{int(month_text):02d}",
        exp_year=str(year),
        cvv=raw[CARD_CVV],
        card_type=card_type,
    )


def validate_purchase_amount(amount: object) -> Decimal:
    return parse_amount(amount, minimum=MINIMUM_PURCHASE)


def build_balance_request(settings: Click2MailSettings) -> HttpRequest:
    headers = {**_XML_HEADERS, "Authorization": basic_auth(settings.username, settings.password)}
    return HttpRequest("GET", f"{settings.base_url}/credit", headers)


def build_purchase_request(settings: Click2MailSettings, amount: Decimal, billing: BillingProfile) -> HttpRequest:
    form = {
        "billingName": billing.name,
        "billingAddress1": billing.address1,
        "billingCity": billing.city,
        "billingState": billing.state,
        "billingZip": billing.zip,
        "billingAmount": format_money(amount),
        "billingNumber": billing.card_number,
        "billingMonth": billing.exp_month,
        "billingYear": billing.exp_year,
        "billingCvv": billing.cvv,
        "billingCcType": billing.card_type,
    }
    headers = {
        **_XML_HEADERS,
        "Authorization": basic_auth(settings.username, settings.password),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return HttpRequest(
        "POST", f"{settings.base_url}/credit/purchase", headers, urlencode(form).encode(), moves_money=True
    )


def _parse_xml(response: HttpResponse) -> dict[str, Any] | None:
    """The XML document as a dict, or None when the body holds no element (empty or declaration only).

    Raises PostageResponseError for anything that is not XML (an HTML error page, garbage)."""
    text = response.text().strip()
    if not text or (text.startswith("<?xml") and text.endswith("?>") and text.count("<") == 1):
        return None
    if not text.startswith("<") or text[:15].lower().startswith(("<!doctype", "<html")):
        raise _unreadable(response, "reply is not XML")
    try:
        document = xmltodict.parse(text)
    except (ExpatError, ValueError, RecursionError):
        raise _unreadable(response, "reply is malformed XML") from None
    if not isinstance(document, dict) or len(document) != 1:
        raise _unreadable(response, "reply has no single root element")
    root_name, root = next(iter(document.items()))
    if str(root_name).lower() == "html":
        raise _unreadable(response, "reply is an HTML page, not XML")
    return root if isinstance(root, dict) else {}


def _unreadable(response: HttpResponse, why: str) -> PostageResponseError:
    kind = response.content_type or "no content type"
    return PostageResponseError(PROVIDER, response.status, f"{why} ({kind}, {len(response.body)} bytes)")


def _text(root: Mapping[str, Any], name: str) -> str | None:
    value = root.get(name)
    if value is None:
        return None
    if isinstance(value, dict):  # an element with attributes: xmltodict keeps its text under #text
        value = value.get("#text")
    # Only text: a repeated element (a list) or one with children is no answer, and repeating its
    # structure in a message could echo anything the reply held.
    return value.strip() if isinstance(value, str) else None


def error_from_response(response: HttpResponse) -> PostageAPIError:
    """The typed error for a non-2xx reply: status-9 XML when there is one, else the HTTP status alone."""
    error_class = PostageAuthError if response.status in (401, 403) else PostageAPIError
    try:
        root = _parse_xml(response)
    except PostageResponseError:
        root = None
    if root:
        description = _text(root, "description") or "no description"
        return error_class(PROVIDER, response.status, description, code=_text(root, "status"))
    if response.status == 401:
        return PostageAuthError(PROVIDER, 401, "username or password refused")
    reason = "no readable error body" if not response.body.strip() else f"{response.content_type or 'unknown'} reply"
    return error_class(PROVIDER, response.status, reason)


def _check_status_element(response: HttpResponse, root: Mapping[str, Any]) -> None:
    status = _text(root, "status")
    if status not in (None, "", "0"):
        description = _text(root, "description") or "no description"
        raise PostageAPIError(PROVIDER, response.status, description, code=status)


def parse_balance_response(response: HttpResponse, *, conn_id: str, received_at: dt.datetime) -> Balance:
    if not 200 <= response.status < 300:
        raise error_from_response(response)
    root = _parse_xml(response)
    if root is None:
        raise _unreadable(response, "reply is empty")
    _check_status_element(response, root)
    try:
        available = reply_amount(_text(root, "balance"), "balance")
    except ValueError:
        raise _unreadable(response, "reply has no readable <balance>") from None
    allow_negative_text = (_text(root, "allowNegative") or "").lower()
    return Balance(
        provider=PROVIDER,
        conn_id=conn_id,
        account_type=CREDIT,
        account_number=None,
        currency="USD",
        available=available,
        as_of=received_at,
        allow_negative=allow_negative_text == "true" if allow_negative_text else None,
    )


@dataclass(frozen=True)
class PurchaseAck:
    """Click2Mail's reply to a purchase. ``confirmed`` is False when a 200 said nothing either way
    (the success body is not published): the balance must then tell whether the credit arrived."""

    confirmed: bool
    description: str | None


def parse_purchase_response(response: HttpResponse) -> PurchaseAck:
    """A 2xx reply: confirmed, unconfirmed, or a status-9 error. Raises for a non-2xx reply; the
    caller decides whether that reply proves nothing was charged (4xx) or not (5xx)."""
    if not 200 <= response.status < 300:
        raise error_from_response(response)
    try:
        root = _parse_xml(response)
    except PostageResponseError:
        return PurchaseAck(confirmed=False, description=None)
    if not root:
        return PurchaseAck(confirmed=False, description=None)
    _check_status_element(response, root)
    description = _text(root, "description")
    status = _text(root, "status")
    confirmed = status == "0" or (description or "").lower() == "success"
    return PurchaseAck(confirmed=confirmed, description=description)


def purchase_result(conn_id: str, amount: Decimal, description: str | None) -> PurchaseResult:
    return PurchaseResult(PROVIDER, conn_id, amount, "USD", None, description)
