"""Pitney Bowes Shipping API (token, account balances, refill) as plain functions: settings from a
connection, requests out, typed results or typed errors back. No I/O here."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from airflow_provider_postage.protocol.errors import (
    DuplicateTransactionError,
    PostageAPIError,
    PostageAuthError,
    PostageConfigError,
    PostageResponseError,
    PostageValidationError,
    TransactionReplayedError,
)
from airflow_provider_postage.protocol.flow import Token, purchase_key
from airflow_provider_postage.protocol.http import (
    HttpRequest,
    HttpResponse,
    basic_auth,
    endpoint,
    extra_value,
    verify_tls,
)
from airflow_provider_postage.protocol.money import parse_amount, reply_amount
from airflow_provider_postage.protocol.records import (
    LINE_OF_CREDIT,
    PITNEY_BOWES,
    POSTAGE,
    Balance,
    PurchaseResult,
)

PROVIDER = PITNEY_BOWES
HOSTS = {
    "sandbox": "https://shipping-api-sandbox.pitneybowes.com",
    "production": "https://shipping-api.pitneybowes.com",
}
DEFAULT_ENVIRONMENT = "sandbox"
#: Used when a token reply has no readable ``expiresIn``: short enough to be safe, and a 401 still
#: makes the hook fetch a new token early.
FALLBACK_TOKEN_LIFETIME = 300
#: Tokens are never trusted for longer than this, whatever ``expiresIn`` says (PB's last about 10 hours).
MAX_TOKEN_LIFETIME = 24 * 3600
TRANSACTION_ID_MAX = 25
_TRANSACTION_ID = re.compile(r"^[A-Za-z0-9_-]{1,25}$")
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_ACCOUNT_TYPES = {"postage account": POSTAGE, "pb line of credit": LINE_OF_CREDIT}


@dataclass(frozen=True)
class PitneyBowesSettings:
    api_key: str
    api_secret: str = field(repr=False)
    environment: str
    host: str
    developer_id: str
    postal_reporting_number: str
    #: TLS certificate verification: True, False (only a connection's explicit ``verify_ssl: false``),
    #: or the path of a CA bundle.
    verify: bool | str = True

    @property
    def base_url(self) -> str:
        return self.host

    @property
    def token_url(self) -> str:
        return f"{self.host}/oauth/token"

    @property
    def api_base(self) -> str:
        return f"{self.host}/shippingservices"

    @property
    def merchant_url(self) -> str:
        return f"{self.api_base}/v1/developers/{self.developer_id}/merchants/{self.postal_reporting_number}"

    @property
    def credential_key(self) -> str:
        """Identifies the credentials (for sharing tokens) without holding the secret itself."""
        digest = hashlib.sha256(f"{self.token_url}\0{self.api_key}\0{self.api_secret}".encode()).hexdigest()
        return digest


def _extra(extra: Mapping[str, Any], name: str) -> Any:
    return extra_value(extra, "pitney_bowes", name)


def settings_from_connection(
    login: str | None,
    password: str | None,
    host: str | None,
    extra: Mapping[str, Any],
    *,
    port: object = None,
    schema: str | None = None,
) -> PitneyBowesSettings:
    if not login:
        raise PostageConfigError("login", "the Pitney Bowes API key is missing")
    if not password:
        raise PostageConfigError("password", "the Pitney Bowes API secret is missing")
    environment, base = endpoint(
        _extra(extra, "environment"), HOSTS, DEFAULT_ENVIRONMENT, host, port=port, scheme=schema
    )
    base = base.removesuffix("/shippingservices")
    ids = {}
    for name in ("developer_id", "postal_reporting_number"):
        value = str(_extra(extra, name) or "").strip()
        if not value:
            raise PostageConfigError(name, "is required for Pitney Bowes and is missing")
        if not _PATH_SEGMENT.match(value):
            raise PostageConfigError(name, "may hold only letters, digits, '.', '-' and '_'")
        ids[name] = value
    verify = verify_tls(_extra(extra, "verify_ssl"), _extra(extra, "ca_bundle"))
    return PitneyBowesSettings(
        login, password, environment, base, ids["developer_id"], ids["postal_reporting_number"], verify
    )


def with_merchant(settings: PitneyBowesSettings, postal_reporting_number: str) -> PitneyBowesSettings:
    value = str(postal_reporting_number or "").strip()
    if not _PATH_SEGMENT.match(value):
        raise PostageConfigError("postal_reporting_number", "may hold only letters, digits, '.', '-' and '_'")
    return dataclasses.replace(settings, postal_reporting_number=value)


def validate_refill_amount(amount: object) -> Decimal:
    """Refills are whole dollars: the API's ``amount`` is an integer."""
    value = parse_amount(amount)
    if value != value.to_integral_value():
        raise PostageValidationError("amount", "must be a whole number of dollars for Pitney Bowes")
    return value


def validate_transaction_id(transaction_id: str) -> str:
    if not isinstance(transaction_id, str) or not _TRANSACTION_ID.fullmatch(transaction_id):
        raise PostageValidationError("transaction_id", "must be 1 to 25 characters of letters, digits, '-' and '_'")
    return transaction_id


#: Kept for callers of earlier releases: the key maker is the same for every service.
make_transaction_id = purchase_key


# --- token -----------------------------------------------------------------------------------------


def build_token_request(settings: PitneyBowesSettings) -> HttpRequest:
    headers = {
        "Authorization": basic_auth(settings.api_key, settings.api_secret),
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
    }
    return HttpRequest("POST", settings.token_url, headers, b"grant_type=client_credentials")


def parse_token_response(response: HttpResponse) -> Token:
    if response.status in (400, 401, 403):
        refused = error_from_response(response)
        raise PostageAuthError(
            PROVIDER,
            response.status,
            f"{refused.description}: the token was refused; check the connection's API key (login) and API "
            "secret (password), and its environment",
            code=refused.code,
        )
    if not 200 <= response.status < 300:
        raise error_from_response(response)
    document = _parse_json(response)
    token = document.get("access_token") if isinstance(document, dict) else None
    if not isinstance(token, str) or not token:
        raise PostageResponseError(PROVIDER, response.status, "token reply has no access_token")
    expires = document.get("expiresIn", document.get("expires_in"))
    try:
        lifetime = Decimal(str(expires))
    except (ArithmeticError, ValueError):
        lifetime = Decimal(0)
    if not lifetime.is_finite() or lifetime <= 0:  # absent or unreadable: fall back to a short lifetime
        lifetime = Decimal(FALLBACK_TOKEN_LIFETIME)
    return Token(token, int(min(lifetime, Decimal(MAX_TOKEN_LIFETIME))))


def _bearer_headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json",
        "X-PB-UnifiedErrorStructure": "true",
    }


# --- balances --------------------------------------------------------------------------------------


def build_balance_request(settings: PitneyBowesSettings, token: str) -> HttpRequest:
    return HttpRequest("GET", f"{settings.merchant_url}/account-balance", _bearer_headers(token))


def _amount(account: Mapping[str, Any], name: str, response: HttpResponse, *, required: bool) -> Decimal | None:
    value = account.get(name)
    if value is None and not required:
        return None
    try:
        return reply_amount(value, name)
    except ValueError as error:
        raise PostageResponseError(PROVIDER, response.status, str(error)) from None


def parse_balance_response(response: HttpResponse, *, conn_id: str, received_at: dt.datetime) -> list[Balance]:
    if not 200 <= response.status < 300:
        raise error_from_response(response)
    document = _parse_json(response)
    accounts = document.get("accounts") if isinstance(document, dict) else None
    if not isinstance(accounts, list):
        raise PostageResponseError(PROVIDER, response.status, "balance reply has no accounts list")
    balances = []
    for account in accounts:
        if not isinstance(account, dict):
            raise PostageResponseError(PROVIDER, response.status, "balance reply holds a non-object account")
        account_type = _ACCOUNT_TYPES.get(str(account.get("accountType", "")).strip().lower())
        if account_type is None:
            continue  # an account kind this provider does not manage
        number = _scalar(account.get("accountNumber"))
        currency = _scalar(account.get("currencyCode")) or "USD"
        if account_type == POSTAGE:
            available = _amount(account, "availableBalance", response, required=True)
            assert available is not None
            balances.append(Balance(PROVIDER, conn_id, POSTAGE, number, currency, available, received_at))
        else:
            available = _amount(account, "availableCredit", response, required=True)
            assert available is not None
            due_date = account.get("minimumDueDate")
            balances.append(
                Balance(
                    PROVIDER,
                    conn_id,
                    LINE_OF_CREDIT,
                    number,
                    currency,
                    available,
                    received_at,
                    balance_owed=_amount(account, "balanceOwed", response, required=False),
                    credit_limit=_amount(account, "creditLimit", response, required=False),
                    minimum_amount_due=_amount(account, "minimumAmountDue", response, required=False),
                    minimum_due_date=None if due_date is None else str(due_date),
                )
            )
    if not any(balance.account_type == POSTAGE for balance in balances):
        raise PostageResponseError(PROVIDER, response.status, "balance reply has no Postage Account")
    return balances


# --- refill ----------------------------------------------------------------------------------------


def build_refill_request(
    settings: PitneyBowesSettings, token: str, amount: Decimal, transaction_id: str
) -> HttpRequest:
    headers = {
        **_bearer_headers(token),
        "Content-Type": "application/json",
        "X-PB-TransactionId": validate_transaction_id(transaction_id),
    }
    body = json.dumps({"amount": int(amount), "currencyCode": "USD"}).encode()
    return HttpRequest("POST", f"{settings.merchant_url}/account/fund", headers, body, moves_money=True)


def parse_refill_response(
    response: HttpResponse, *, conn_id: str, amount: Decimal, transaction_id: str
) -> PurchaseResult:
    """A 2xx is the API's word that the refill is done, and the amount it echoes is what was done. An
    amount other than the one asked means PB replayed an earlier refill with this transaction id:
    nothing new was bought, and that is an error, never a success."""
    if not 200 <= response.status < 300:
        raise error_from_response(response)
    currency = "USD"
    confirmed = amount
    try:
        document = _parse_json(response)
    except PostageResponseError:
        document = None
    if isinstance(document, dict):
        if isinstance(document.get("currencyCode"), str) and document["currencyCode"].strip():
            currency = document["currencyCode"].strip()[:3]
        if document.get("amount") is not None:
            try:
                confirmed = reply_amount(document["amount"], "amount")
            except ValueError:
                confirmed = amount  # an unreadable echo does not undo the API's 2xx
    if confirmed != amount:
        raise TransactionReplayedError(transaction_id, requested=amount, confirmed=confirmed)
    return PurchaseResult(PROVIDER, conn_id, confirmed, currency, transaction_id, "Success")


# --- errors ----------------------------------------------------------------------------------------


def _parse_json(response: HttpResponse) -> Any:
    text = response.text().strip()
    if not text:
        raise PostageResponseError(PROVIDER, response.status, "reply is empty")
    if text[0] not in "{[":
        kind = response.content_type or "no content type"
        raise PostageResponseError(PROVIDER, response.status, f"reply is not JSON ({kind}, {len(response.body)} bytes)")
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
    except (ValueError, RecursionError, ArithmeticError):
        raise PostageResponseError(PROVIDER, response.status, "reply is malformed JSON") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _scalar(value: Any) -> str | None:
    """A code or description as text: only a string or a number; an object or a list is no answer, and
    repeating its structure in a message could echo anything the reply held."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return str(value)
    return None


def _error_entries(document: Any) -> list[Mapping[str, Any]]:
    """The error objects of every shape PB uses: unified ``{"errors": [...]}``, ``{"status": "ERROR",
    "errors": [...]}``, and top-level arrays of ``{errorCode, message}`` or ``{key, message}``."""
    if isinstance(document, dict):
        entries = document.get("errors")
        if isinstance(entries, list):
            return [entry for entry in entries if isinstance(entry, dict)]
        if "errorCode" in document or "message" in document:
            return [document]
        return []
    if isinstance(document, list):
        return [entry for entry in document if isinstance(entry, dict)]
    return []


def error_from_response(response: HttpResponse) -> PostageAPIError:
    error_class = PostageAuthError if response.status in (401, 403) else PostageAPIError
    try:
        entries = _error_entries(_parse_json(response))
    except PostageResponseError as unreadable:
        return error_class(PROVIDER, response.status, unreadable.description)
    if not entries:
        return error_class(PROVIDER, response.status, "error reply without an error entry")
    codes = [_scalar(entry.get("errorCode")) or _scalar(entry.get("key")) or "" for entry in entries]
    descriptions = [
        _scalar(entry.get("errorDescription")) or _scalar(entry.get("message")) or "no description" for entry in entries
    ]
    code = ", ".join(code for code in codes if code) or None
    if 400 <= response.status < 500 and code and "DUPLICATE" in code.upper():
        error_class = DuplicateTransactionError  # the transaction id was seen before: that refill stands
    return error_class(PROVIDER, response.status, "; ".join(descriptions), code=code)
