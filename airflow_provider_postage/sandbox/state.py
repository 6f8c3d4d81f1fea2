"""Thread-safe state of the postage sandbox: accounts, balances, tokens, faults, counters.

Nothing in this module knows about HTTP; :mod:`.app` turns requests into calls on a
:class:`SandboxState`. All money is :class:`decimal.Decimal` (stored with two decimal places),
all clocks are integer nanoseconds, so no float ever touches an amount.
"""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, cast, get_args

__all__ = [
    "C2M_ENVIRONMENTS",
    "C2M_PURCHASE_REPLIES",
    "CENT",
    "DEFAULT_C2M_ALLOW_NEGATIVE",
    "DEFAULT_C2M_BALANCE",
    "DEFAULT_C2M_ENVIRONMENT",
    "DEFAULT_C2M_PASSWORD",
    "DEFAULT_C2M_USERNAME",
    "DEFAULT_PB_API_KEY",
    "DEFAULT_PB_API_SECRET",
    "DEFAULT_PB_BALANCE",
    "DEFAULT_PB_BALANCE_2",
    "DEFAULT_PB_DEVELOPER_ID",
    "DEFAULT_PB_LOC_ACCOUNT_NUMBER",
    "DEFAULT_PB_LOC_AVAILABLE_CREDIT",
    "DEFAULT_PB_LOC_BALANCE_OWED",
    "DEFAULT_PB_LOC_CREDIT_LIMIT",
    "DEFAULT_PB_LOC_MINIMUM_AMOUNT_DUE",
    "DEFAULT_PB_LOC_MINIMUM_DUE_DATE",
    "DEFAULT_PB_POSTAGE_ACCOUNT_NUMBER",
    "DEFAULT_PB_POSTAGE_ACCOUNT_NUMBER_2",
    "DEFAULT_PB_PRN",
    "DEFAULT_PB_PRN_2",
    "DEFAULT_SEED",
    "DEFAULT_TOKEN_TTL",
    "DEMO_BILLING",
    "ENDPOINTS",
    "PB_DUPLICATE_POLICIES",
    "WIRE_FAULTS",
    "C2MAccountSeed",
    "C2MEnvironment",
    "C2MPurchaseReply",
    "Endpoint",
    "Fault",
    "FundResult",
    "InvalidSettingError",
    "IssuedToken",
    "LineOfCreditSeed",
    "LineOfCreditView",
    "MerchantView",
    "PBCredentialSeed",
    "PBDuplicatePolicy",
    "PBMerchantSeed",
    "Purchase",
    "Refill",
    "SandboxError",
    "SandboxState",
    "Seed",
    "UnknownEntityError",
    "WireFault",
    "money_str",
    "to_money",
]

CENT = Decimal("0.01")

# --------------------------------------------------------------------------------------------
# Default seed
# --------------------------------------------------------------------------------------------
DEFAULT_C2M_USERNAME = "demo-user"
DEFAULT_C2M_PASSWORD = "demo-pass-C2M"
DEFAULT_C2M_BALANCE = Decimal("5.00")
DEFAULT_C2M_ALLOW_NEGATIVE = False
DEFAULT_C2M_ENVIRONMENT = "staging"

DEFAULT_PB_API_KEY = "demo-api-key"
DEFAULT_PB_API_SECRET = "demo-api-secret-PB"
DEFAULT_PB_DEVELOPER_ID = "44440000"

DEFAULT_PB_PRN = "900001"
DEFAULT_PB_POSTAGE_ACCOUNT_NUMBER = "****6062"
DEFAULT_PB_BALANCE = Decimal("12.50")
DEFAULT_PB_LOC_ACCOUNT_NUMBER = "************8952"
DEFAULT_PB_LOC_BALANCE_OWED = Decimal("0.00")
DEFAULT_PB_LOC_AVAILABLE_CREDIT = Decimal("500.00")
DEFAULT_PB_LOC_CREDIT_LIMIT = Decimal("5000.00")
DEFAULT_PB_LOC_MINIMUM_AMOUNT_DUE = Decimal("0.00")
DEFAULT_PB_LOC_MINIMUM_DUE_DATE = "2026-12-31"

DEFAULT_PB_PRN_2 = "900002"
DEFAULT_PB_POSTAGE_ACCOUNT_NUMBER_2 = "****6051"
DEFAULT_PB_BALANCE_2 = Decimal("457.22")

DEFAULT_TOKEN_TTL = 35999

#: A billing profile the sandbox accepts (Click2Mail's documented staging test card), as the extras of a
#: ``click2mail`` connection: for demos, tests and benchmarks.
DEMO_BILLING: dict[str, str] = {
    "billing_name": "Awesome User",
    "billing_address1": "221B Baker St",
    "billing_city": "Springfield",
    "billing_state": "MO",
    "billing_zip": "34567",
    "card_number": "4111111111111111",
    "card_exp_month": "12",
    "card_exp_year": "2030",
    "card_cvv": "123",
    "card_type": "VI",
}

Endpoint = Literal["c2m_credit", "c2m_purchase", "pb_token", "pb_balance", "pb_fund"]
ENDPOINTS: tuple[Endpoint, ...] = get_args(Endpoint)

C2MPurchaseReply = Literal["full", "description", "declaration_only"]
C2M_PURCHASE_REPLIES: tuple[C2MPurchaseReply, ...] = get_args(C2MPurchaseReply)

PBDuplicatePolicy = Literal["replay", "reject", "apply"]
PB_DUPLICATE_POLICIES: tuple[PBDuplicatePolicy, ...] = get_args(PBDuplicatePolicy)

C2MEnvironment = Literal["staging", "production"]
C2M_ENVIRONMENTS: tuple[C2MEnvironment, ...] = get_args(C2MEnvironment)

#: How a :class:`Fault` breaks the reply on the wire (see :class:`Fault`).
WireFault = Literal["tls_alert", "corrupt_record", "reset", "cut_body", "oversize", "trickle"]
WIRE_FAULTS: tuple[WireFault, ...] = get_args(WireFault)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------
class SandboxError(Exception):
    """Base class of errors raised by the sandbox control API."""


class UnknownEntityError(SandboxError, LookupError):
    """An account, merchant or endpoint name that the sandbox does not know (HTTP 404)."""


class InvalidSettingError(SandboxError, ValueError):
    """A control value that the sandbox refuses (HTTP 400)."""


# --------------------------------------------------------------------------------------------
# Money helpers
# --------------------------------------------------------------------------------------------
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


def _to_rate(value: object) -> Decimal:
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


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1_000_000_000, tz=timezone.utc).isoformat(timespec="milliseconds")


# --------------------------------------------------------------------------------------------
# Seed (immutable description of the initial world)
# --------------------------------------------------------------------------------------------
def _str_field(data: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or not value:
        raise InvalidSettingError(f"seed field {key!r} must be a non-empty string, got {value!r}")
    return value


def _bool_field(data: Mapping[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise InvalidSettingError(f"seed field {key!r} must be true or false, got {value!r}")
    return value


def _check_date(value: str) -> str:
    try:
        date.fromisoformat(value)
    except ValueError:
        raise InvalidSettingError(f"not a YYYY-MM-DD date: {value!r}") from None
    return value


@dataclass(frozen=True)
class C2MAccountSeed:
    username: str
    password: str
    balance: Decimal = Decimal("0.00")
    allow_negative: bool = False
    environment: C2MEnvironment = "staging"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> C2MAccountSeed:
        environment = data.get("environment", "staging")
        if environment not in C2M_ENVIRONMENTS:
            raise InvalidSettingError(f"environment must be one of {C2M_ENVIRONMENTS}, got {environment!r}")
        return cls(
            username=_str_field(data, "username"),
            password=_str_field(data, "password"),
            balance=to_money(data.get("balance", "0"), "balance"),
            allow_negative=_bool_field(data, "allow_negative", False),
            environment=cast(C2MEnvironment, environment),
        )

    def to_mapping(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "password": self.password,
            "balance": money_str(self.balance),
            "allow_negative": self.allow_negative,
            "environment": self.environment,
        }


@dataclass(frozen=True)
class PBCredentialSeed:
    api_key: str
    api_secret: str
    developer_id: str

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PBCredentialSeed:
        return cls(
            api_key=_str_field(data, "api_key"),
            api_secret=_str_field(data, "api_secret"),
            developer_id=_str_field(data, "developer_id"),
        )

    def to_mapping(self) -> dict[str, Any]:
        return {"api_key": self.api_key, "api_secret": self.api_secret, "developer_id": self.developer_id}


@dataclass(frozen=True)
class LineOfCreditSeed:
    account_number: str
    balance_owed: Decimal
    available_credit: Decimal
    credit_limit: Decimal
    minimum_amount_due: Decimal
    minimum_due_date: str
    currency_code: str = "USD"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> LineOfCreditSeed:
        return cls(
            account_number=_str_field(data, "account_number"),
            balance_owed=to_money(data.get("balance_owed", "0"), "balance_owed"),
            available_credit=to_money(data.get("available_credit", "0"), "available_credit"),
            credit_limit=to_money(data.get("credit_limit", "0"), "credit_limit"),
            minimum_amount_due=to_money(data.get("minimum_amount_due", "0"), "minimum_amount_due"),
            minimum_due_date=_check_date(_str_field(data, "minimum_due_date")),
            currency_code=_str_field(data, "currency_code", "USD"),
        )

    def to_mapping(self) -> dict[str, Any]:
        return {
            "account_number": self.account_number,
            "currency_code": self.currency_code,
            "balance_owed": money_str(self.balance_owed),
            "available_credit": money_str(self.available_credit),
            "credit_limit": money_str(self.credit_limit),
            "minimum_amount_due": money_str(self.minimum_amount_due),
            "minimum_due_date": self.minimum_due_date,
        }


@dataclass(frozen=True)
class PBMerchantSeed:
    prn: str
    account_number: str
    available_balance: Decimal
    currency_code: str = "USD"
    developer_id: str | None = None
    line_of_credit: LineOfCreditSeed | None = None
    fund_enabled: bool = True

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PBMerchantSeed:
        loc = data.get("line_of_credit")
        if loc is not None and not isinstance(loc, Mapping):
            raise InvalidSettingError("seed field 'line_of_credit' must be an object or null")
        developer_id = data.get("developer_id")
        if developer_id is not None and (not isinstance(developer_id, str) or not developer_id):
            raise InvalidSettingError("seed field 'developer_id' must be a non-empty string or null")
        return cls(
            prn=_str_field(data, "prn"),
            account_number=_str_field(data, "account_number"),
            available_balance=to_money(data.get("available_balance", "0"), "available_balance"),
            currency_code=_str_field(data, "currency_code", "USD"),
            developer_id=developer_id,
            line_of_credit=LineOfCreditSeed.from_mapping(loc) if loc is not None else None,
            fund_enabled=_bool_field(data, "fund_enabled", True),
        )

    def to_mapping(self) -> dict[str, Any]:
        return {
            "prn": self.prn,
            "developer_id": self.developer_id,
            "account_number": self.account_number,
            "currency_code": self.currency_code,
            "available_balance": money_str(self.available_balance),
            "fund_enabled": self.fund_enabled,
            "line_of_credit": self.line_of_credit.to_mapping() if self.line_of_credit else None,
        }


@dataclass(frozen=True)
class Seed:
    """The initial world; :meth:`SandboxState.reset` returns to it.

    JSON form (all keys optional; amounts as strings or JSON numbers, read as Decimal)::

        {
          "include_defaults": false,
          "token_ttl": 35999,
          "c2m_purchase_reply": "full",
          "pb_duplicate_transaction": "replay",
          "compress": true,
          "chunked": true,
          "c2m_accounts": [{"username": "u", "password": "p", "balance": "5.00",
                            "allow_negative": false, "environment": "staging"}],
          "pb_credentials": [{"api_key": "k", "api_secret": "s", "developer_id": "44440000"}],
          "pb_merchants": [{"prn": "900001", "developer_id": "44440000", "account_number": "****6062",
                            "currency_code": "USD", "available_balance": "12.50", "fund_enabled": true,
                            "line_of_credit": {"account_number": "************8952", "balance_owed": "0",
                                               "available_credit": "500", "credit_limit": "5000",
                                               "minimum_amount_due": "0", "minimum_due_date": "2026-12-31"}}]
        }

    With ``"include_defaults": true`` the entries are added to the default seed (an entry with the
    same username / api_key / prn replaces the default one); otherwise they are the whole world.
    A merchant without ``developer_id`` is visible to every developer id. ``compress`` and ``chunked``
    are the initial wire settings (see :meth:`SandboxState.update_settings`).
    """

    c2m_accounts: tuple[C2MAccountSeed, ...] = ()
    pb_credentials: tuple[PBCredentialSeed, ...] = ()
    pb_merchants: tuple[PBMerchantSeed, ...] = ()
    token_ttl: int = DEFAULT_TOKEN_TTL
    c2m_purchase_reply: C2MPurchaseReply = "full"
    pb_duplicate_transaction: PBDuplicatePolicy = "replay"
    compress: bool = True
    chunked: bool = True

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Seed:
        if not isinstance(data, Mapping):
            raise InvalidSettingError("a seed must be a JSON object")
        known = {
            "include_defaults",
            "token_ttl",
            "c2m_purchase_reply",
            "pb_duplicate_transaction",
            "compress",
            "chunked",
            "c2m_accounts",
            "pb_credentials",
            "pb_merchants",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidSettingError(f"unknown seed keys: {unknown}")
        base = DEFAULT_SEED if _bool_field(data, "include_defaults", False) else Seed()

        def items(key: str) -> list[Mapping[str, Any]]:
            value = data.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
                raise InvalidSettingError(f"seed field {key!r} must be a list of objects")
            return value

        c2m = {a.username: a for a in base.c2m_accounts}
        c2m.update((a.username, a) for a in map(C2MAccountSeed.from_mapping, items("c2m_accounts")))
        creds = {c.api_key: c for c in base.pb_credentials}
        creds.update((c.api_key, c) for c in map(PBCredentialSeed.from_mapping, items("pb_credentials")))
        merchants = {m.prn: m for m in base.pb_merchants}
        merchants.update((m.prn, m) for m in map(PBMerchantSeed.from_mapping, items("pb_merchants")))
        return cls(
            c2m_accounts=tuple(c2m.values()),
            pb_credentials=tuple(creds.values()),
            pb_merchants=tuple(merchants.values()),
            token_ttl=_check_ttl(data.get("token_ttl", base.token_ttl)),
            c2m_purchase_reply=_check_reply(data.get("c2m_purchase_reply", base.c2m_purchase_reply)),
            pb_duplicate_transaction=_check_dup(data.get("pb_duplicate_transaction", base.pb_duplicate_transaction)),
            compress=_bool_field(data, "compress", base.compress),
            chunked=_bool_field(data, "chunked", base.chunked),
        )

    @classmethod
    def from_json(cls, text: str) -> Seed:
        try:
            data = json.loads(text, parse_float=Decimal)
        except json.JSONDecodeError as exc:
            raise InvalidSettingError(f"seed is not valid JSON: {exc}") from None
        return cls.from_mapping(data)

    @classmethod
    def from_file(cls, path: str | Path) -> Seed:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def to_mapping(self) -> dict[str, Any]:
        return {
            "token_ttl": self.token_ttl,
            "c2m_purchase_reply": self.c2m_purchase_reply,
            "pb_duplicate_transaction": self.pb_duplicate_transaction,
            "compress": self.compress,
            "chunked": self.chunked,
            "c2m_accounts": [a.to_mapping() for a in self.c2m_accounts],
            "pb_credentials": [c.to_mapping() for c in self.pb_credentials],
            "pb_merchants": [m.to_mapping() for m in self.pb_merchants],
        }


def _check_ttl(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidSettingError(f"token_ttl must be an integer number of seconds >= 0, got {value!r}")
    return value


def _check_settle(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidSettingError(f"settle_seconds must be an integer number of seconds >= 0, got {value!r}")
    return value


def _check_reply(value: object) -> C2MPurchaseReply:
    if value not in C2M_PURCHASE_REPLIES:
        raise InvalidSettingError(f"c2m_purchase_reply must be one of {C2M_PURCHASE_REPLIES}, got {value!r}")
    return value


def _check_dup(value: object) -> PBDuplicatePolicy:
    if value not in PB_DUPLICATE_POLICIES:
        raise InvalidSettingError(f"pb_duplicate_transaction must be one of {PB_DUPLICATE_POLICIES}, got {value!r}")
    return value


def _check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidSettingError(f"{name} must be true or false, got {value!r}")
    return value


def _check_endpoint(value: object) -> Endpoint:
    if value not in ENDPOINTS:
        raise InvalidSettingError(f"unknown endpoint {value!r}; known: {', '.join(ENDPOINTS)}")
    return value


DEFAULT_SEED = Seed(
    c2m_accounts=(
        C2MAccountSeed(
            username=DEFAULT_C2M_USERNAME,
            password=DEFAULT_C2M_PASSWORD,
            balance=DEFAULT_C2M_BALANCE,
            allow_negative=DEFAULT_C2M_ALLOW_NEGATIVE,
            environment="staging",
        ),
    ),
    pb_credentials=(
        PBCredentialSeed(
            api_key=DEFAULT_PB_API_KEY, api_secret=DEFAULT_PB_API_SECRET, developer_id=DEFAULT_PB_DEVELOPER_ID
        ),
    ),
    pb_merchants=(
        PBMerchantSeed(
            prn=DEFAULT_PB_PRN,
            developer_id=DEFAULT_PB_DEVELOPER_ID,
            account_number=DEFAULT_PB_POSTAGE_ACCOUNT_NUMBER,
            available_balance=DEFAULT_PB_BALANCE,
            line_of_credit=LineOfCreditSeed(
                account_number=DEFAULT_PB_LOC_ACCOUNT_NUMBER,
                balance_owed=DEFAULT_PB_LOC_BALANCE_OWED,
                available_credit=DEFAULT_PB_LOC_AVAILABLE_CREDIT,
                credit_limit=DEFAULT_PB_LOC_CREDIT_LIMIT,
                minimum_amount_due=DEFAULT_PB_LOC_MINIMUM_AMOUNT_DUE,
                minimum_due_date=DEFAULT_PB_LOC_MINIMUM_DUE_DATE,
            ),
        ),
        PBMerchantSeed(
            prn=DEFAULT_PB_PRN_2,
            developer_id=DEFAULT_PB_DEVELOPER_ID,
            account_number=DEFAULT_PB_POSTAGE_ACCOUNT_NUMBER_2,
            available_balance=DEFAULT_PB_BALANCE_2,
        ),
    ),
)


# --------------------------------------------------------------------------------------------
# Faults and records
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fault:
    """What to do instead of (or after) the normal reply of one call.

    * ``status``: answer this HTTP status instead; with ``body`` None a realistic body for the API
      and status is used (status 2xx without body: an empty body).
    * ``body`` / ``content_type``: answer this body (status 200 unless ``status`` is given).
    * ``delay``: seconds to wait (asynchronously) before answering.
    * ``apply``: run the normal handler first (purchase/fund applied, token issued), then the fault;
      with no status/body/drop/wire the normal reply is sent after the delay.
    * ``drop``: send the response head with a Content-Length larger than the body actually sent,
      then close the connection (the "reply lost" case).
    * ``headers``: extra response headers (e.g. ``Retry-After``).
    * ``wire``: break the reply on the wire, after the reply is decided (with ``apply`` after the
      purchase / refill / token is applied). One of :data:`WIRE_FAULTS`:

      - ``"tls_alert"``: write a TLS fatal alert record (``15 03 03 00 02 02 50``, internal_error)
        in clear on the TCP socket under the TLS layer, then close: the client's TLS layer fails
        after its request was fully sent and processed. On plain HTTP the same 7 bytes arrive as
        a garbage status line.
      - ``"corrupt_record"``: write a bogus TLS application-data record (``17 03 03``, a 2-byte
        length, random bytes) on the raw socket, then close: "bad record mac" / decryption
        failure in the client (garbage on plain HTTP).
      - ``"reset"``: close with a TCP RST (SO_LINGER on, timeout 0) without sending any reply.
      - ``"cut_body"``: send the head and about half of the body, then close. With the ``chunked``
        setting the head says ``Transfer-Encoding: chunked`` and the terminating chunk never comes;
        otherwise the head has the true Content-Length and fewer bytes arrive.
      - ``"oversize"``: the reply (200, or ``status``) gets about 1.5 MiB of valid-looking padding in
        its content type (a ``"padding"`` member in a JSON object, an XML/HTML comment after the
        document), random base64 so that it stays over 1 MiB even when compressed. Without
        ``apply`` (and without status/body) the body is a padding-only document.
      - ``"trickle"``: send the reply (the normal one unless status/body say otherwise; the handler
        runs, as with a bare ``delay``) with its head at once, then one body byte every
        ``trickle_interval`` seconds: a client without an overall deadline hangs while its per-read
        timeout never fires. Stops (closing the connection) when the server stops.

      Except ``trickle``, a wire fault without ``apply`` means the request is not processed.
      ``tls_alert``, ``corrupt_record`` and ``reset`` need the connection registry of
      :class:`~.server.SandboxServer`; under another ASGI server they degrade to ``cut_body``.
    * ``trickle_interval``: seconds between two bytes of a ``trickle`` reply (> 0, default 0.5).

    A fault with only ``delay`` makes a slow but otherwise normal call (applied after the delay).
    ``drop`` and ``wire`` cannot be combined (``drop`` is an older, lying-Content-Length ``cut_body``).
    """

    status: int | None = None
    body: str | None = None
    content_type: str | None = None
    delay: float = 0.0
    apply: bool = False
    drop: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    wire: WireFault | None = None
    trickle_interval: float = 0.5

    def __post_init__(self) -> None:
        if self.status is not None and (
            isinstance(self.status, bool) or not isinstance(self.status, int) or not 200 <= self.status <= 599
        ):
            raise InvalidSettingError(f"fault status must be an int in 200..599, got {self.status!r}")
        if self.body is not None and not isinstance(self.body, str):
            raise InvalidSettingError("fault body must be a string or null")
        if self.content_type is not None and not isinstance(self.content_type, str):
            raise InvalidSettingError("fault content_type must be a string or null")
        delay = _duration(self.delay)
        if delay is None or delay < 0:
            raise InvalidSettingError(f"fault delay must be a number of seconds >= 0, got {self.delay!r}")
        object.__setattr__(self, "delay", delay)  # a duration, not money
        if not isinstance(self.apply, bool) or not isinstance(self.drop, bool):
            raise InvalidSettingError("fault apply and drop must be booleans")
        if self.wire is not None and self.wire not in WIRE_FAULTS:
            raise InvalidSettingError(f"fault wire must be one of {WIRE_FAULTS} or null, got {self.wire!r}")
        if self.wire is not None and self.drop:
            raise InvalidSettingError("fault drop and wire cannot be combined (use wire='cut_body')")
        interval = _duration(self.trickle_interval)
        if interval is None or interval <= 0:
            raise InvalidSettingError(
                f"fault trickle_interval must be a number of seconds > 0, got {self.trickle_interval!r}"
            )
        object.__setattr__(self, "trickle_interval", interval)

    @property
    def replaces_reply(self) -> bool:
        """True when the fault decides the reply (status, body, drop or a wire fault other than
        ``trickle``) rather than only delaying or slowing it."""
        return (
            self.status is not None
            or self.body is not None
            or self.drop
            or (self.wire is not None and self.wire != "trickle")
        )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Fault:
        known = {"status", "body", "content_type", "delay", "apply", "drop", "headers", "wire", "trickle_interval"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidSettingError(f"unknown fault keys: {unknown}")
        headers = data.get("headers") or {}
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise InvalidSettingError("fault headers must be an object of strings")
        delay = _seconds(data.get("delay", 0))
        return cls(
            status=data.get("status"),
            body=data.get("body"),
            content_type=data.get("content_type"),
            delay=delay,
            apply=data.get("apply", False),
            drop=data.get("drop", False),
            headers=tuple(headers.items()),
            wire=data.get("wire"),
            trickle_interval=_seconds(data.get("trickle_interval", 0.5)),
        )

    def to_mapping(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "body": self.body,
            "content_type": self.content_type,
            "delay": str(self.delay),
            "apply": self.apply,
            "drop": self.drop,
            "headers": dict(self.headers),
            "wire": self.wire,
            "trickle_interval": str(self.trickle_interval),
        }


def _duration(value: object) -> float | None:
    """A finite number of seconds as float (durations are not money), None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    seconds = float(value)
    return seconds if math.isfinite(seconds) else None


def _seconds(value: Any) -> Any:
    """A duration given as a decimal string (the form :meth:`Fault.to_mapping` writes) read as a number."""
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            raise InvalidSettingError(f"not a number of seconds: {value!r}") from None
    return value


@dataclass(frozen=True)
class Purchase:
    """An applied Click2Mail credit purchase."""

    username: str
    amount: Decimal
    environment: str
    card_last4: str
    at: str  # ISO-8601 UTC

    def to_mapping(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "amount": money_str(self.amount),
            "environment": self.environment,
            "card_last4": self.card_last4,
            "at": self.at,
        }


@dataclass(frozen=True)
class Refill:
    """An applied Pitney Bowes postage account refill."""

    prn: str
    amount: Decimal
    currency_code: str
    transaction_id: str
    source: Literal["line_of_credit", "payment_method"]
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


# --------------------------------------------------------------------------------------------
# Mutable runtime objects (only touched under the state lock)
# --------------------------------------------------------------------------------------------
@dataclass
class _Drain:
    start: Decimal
    rate: Decimal  # per second
    started_ns: int


@dataclass
class _C2MAccount:
    username: str
    password: str
    balance: Decimal
    allow_negative: bool
    environment: C2MEnvironment
    drain: _Drain | None = None
    #: Purchased credit not visible yet: (visible at, clock ns; amount).
    pending: list[tuple[int, Decimal]] = field(default_factory=list)


@dataclass
class _LineOfCredit:
    account_number: str
    currency_code: str
    balance_owed: Decimal
    available_credit: Decimal
    credit_limit: Decimal
    minimum_amount_due: Decimal
    minimum_due_date: str


@dataclass
class _PBMerchant:
    prn: str
    developer_id: str | None
    account_number: str
    currency_code: str
    available_balance: Decimal
    line_of_credit: _LineOfCredit | None
    fund_enabled: bool
    drain: _Drain | None = None
    pending: list[tuple[int, Decimal]] = field(default_factory=list)


@dataclass
class _Token:
    issued: IssuedToken
    expires_ns: int


@dataclass
class _Counters:
    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ENDPOINTS, 0))
    tokens_issued: int = 0
    pb_duplicate_transactions: int = 0
    purchases: list[Purchase] = field(default_factory=list)
    refills: list[Refill] = field(default_factory=list)


_LOC_FIELDS = ("balance_owed", "available_credit", "credit_limit", "minimum_amount_due")


class SandboxState:
    """The whole mutable world of the sandbox, safe to use from several threads.

    ``clock`` is a monotonic clock in integer nanoseconds (drain, token expiry);
    ``wall_clock`` is epoch time in integer nanoseconds (``issuedAt``, record times, card expiry).
    Both can be replaced by tests.
    """

    def __init__(
        self,
        seed: Seed | Mapping[str, Any] | None = None,
        *,
        clock: Callable[[], int] = time.monotonic_ns,
        wall_clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if seed is None:
            seed = DEFAULT_SEED
        elif not isinstance(seed, Seed):
            seed = Seed.from_mapping(seed)
        self._seed: Seed = seed
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.RLock()
        self._c2m: dict[str, _C2MAccount] = {}
        self._pb_credentials: dict[str, PBCredentialSeed] = {}
        self._pb_merchants: dict[str, _PBMerchant] = {}
        self._tokens: dict[str, _Token] = {}
        self._faults: dict[str, deque[Fault]] = {}
        self._transactions: dict[tuple[str, str], Refill] = {}
        self._counters = _Counters()
        self._token_ttl = DEFAULT_TOKEN_TTL
        self._c2m_purchase_reply: C2MPurchaseReply = "full"
        self._pb_duplicate_transaction: PBDuplicatePolicy = "replay"
        self._settle_seconds = 0
        self._compress = True
        self._chunked = True
        self.reset()

    @classmethod
    def from_seed_file(cls, path: str | Path) -> SandboxState:
        return cls(Seed.from_file(path))

    # ---------------------------------------------------------------------------- lifecycle
    @property
    def seed(self) -> Seed:
        return self._seed

    def reset(self) -> None:
        """Back to the seed: balances, settings, tokens, faults, transaction ids and counters."""
        seed = self._seed
        with self._lock:
            self._c2m = {}
            self._pb_credentials = {}
            self._pb_merchants = {}
            for account in seed.c2m_accounts:
                self._add_c2m(account)
            for cred in seed.pb_credentials:
                self._pb_credentials[cred.api_key] = cred
            for merchant in seed.pb_merchants:
                self._add_merchant(merchant)
            self._tokens = {}
            self._faults = {name: deque() for name in ENDPOINTS}
            self._transactions = {}
            self._counters = _Counters()
            self._token_ttl = seed.token_ttl
            self._c2m_purchase_reply = seed.c2m_purchase_reply
            self._pb_duplicate_transaction = seed.pb_duplicate_transaction
            self._settle_seconds = 0
            self._compress = seed.compress
            self._chunked = seed.chunked

    def _add_c2m(self, account: C2MAccountSeed) -> None:
        self._c2m[account.username] = _C2MAccount(
            username=account.username,
            password=account.password,
            balance=account.balance,
            allow_negative=account.allow_negative,
            environment=account.environment,
        )

    def _add_merchant(self, merchant: PBMerchantSeed) -> None:
        loc = merchant.line_of_credit
        self._pb_merchants[merchant.prn] = _PBMerchant(
            prn=merchant.prn,
            developer_id=merchant.developer_id,
            account_number=merchant.account_number,
            currency_code=merchant.currency_code,
            available_balance=merchant.available_balance,
            fund_enabled=merchant.fund_enabled,
            line_of_credit=(
                _LineOfCredit(
                    account_number=loc.account_number,
                    currency_code=loc.currency_code,
                    balance_owed=loc.balance_owed,
                    available_credit=loc.available_credit,
                    credit_limit=loc.credit_limit,
                    minimum_amount_due=loc.minimum_amount_due,
                    minimum_due_date=loc.minimum_due_date,
                )
                if loc is not None
                else None
            ),
        )

    def add_c2m_account(self, account: C2MAccountSeed) -> None:
        """Add (or replace) a Click2Mail account until the next :meth:`reset`."""
        with self._lock:
            self._add_c2m(account)

    def add_pb_credentials(self, credentials: PBCredentialSeed) -> None:
        """Add (or replace) a Pitney Bowes API key until the next :meth:`reset`."""
        with self._lock:
            self._pb_credentials[credentials.api_key] = credentials

    def add_pb_merchant(self, merchant: PBMerchantSeed) -> None:
        """Add (or replace) a Pitney Bowes merchant until the next :meth:`reset`."""
        with self._lock:
            self._add_merchant(merchant)

    # ---------------------------------------------------------------------------- settings
    @property
    def token_ttl(self) -> int:
        with self._lock:
            return self._token_ttl

    @token_ttl.setter
    def token_ttl(self, value: int) -> None:
        self.update_settings({"token_ttl": value})

    @property
    def c2m_purchase_reply(self) -> C2MPurchaseReply:
        with self._lock:
            return self._c2m_purchase_reply

    @c2m_purchase_reply.setter
    def c2m_purchase_reply(self, value: C2MPurchaseReply) -> None:
        self.update_settings({"c2m_purchase_reply": value})

    @property
    def pb_duplicate_transaction(self) -> PBDuplicatePolicy:
        with self._lock:
            return self._pb_duplicate_transaction

    @pb_duplicate_transaction.setter
    def pb_duplicate_transaction(self, value: PBDuplicatePolicy) -> None:
        self.update_settings({"pb_duplicate_transaction": value})

    @property
    def settle_seconds(self) -> int:
        """Seconds before purchased credit and refills show in the balance (0: at once). Real
        balances "do not reflect transactions still in progress"; this lets a sensor really wait."""
        with self._lock:
            return self._settle_seconds

    @settle_seconds.setter
    def settle_seconds(self, value: int) -> None:
        self.update_settings({"settle_seconds": value})

    @property
    def compress(self) -> bool:
        """Compress reply bodies (gzip or deflate) when the request's Accept-Encoding allows it."""
        with self._lock:
            return self._compress

    @compress.setter
    def compress(self, value: bool) -> None:
        self.update_settings({"compress": value})

    @property
    def chunked(self) -> bool:
        """Send HTTP/1.1 reply bodies with ``Transfer-Encoding: chunked`` in several pieces."""
        with self._lock:
            return self._chunked

    @chunked.setter
    def chunked(self, value: bool) -> None:
        self.update_settings({"chunked": value})

    def _api_settings(self) -> dict[str, Any]:
        return {
            "token_ttl": self._token_ttl,
            "c2m_purchase_reply": self._c2m_purchase_reply,
            "pb_duplicate_transaction": self._pb_duplicate_transaction,
            "settle_seconds": self._settle_seconds,
        }

    def wire_settings(self) -> dict[str, bool]:
        """The wire settings alone: ``{"compress": …, "chunked": …}``."""
        with self._lock:
            return {"compress": self._compress, "chunked": self._chunked}

    def settings(self) -> dict[str, Any]:
        """Every setting: ``token_ttl``, ``c2m_purchase_reply``, ``pb_duplicate_transaction``,
        ``settle_seconds`` (API behaviour) and ``compress``, ``chunked`` (wire behaviour)."""
        with self._lock:
            return {**self._api_settings(), **self.wire_settings()}

    def update_settings(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Set any of the settings listed in :meth:`settings`; returns them all.

        * ``compress`` (bool, default true): when the request's ``Accept-Encoding`` allows ``gzip``
          or ``deflate`` (q-values honoured, gzip preferred on a tie), every non-empty reply body is
          compressed with that coding (``deflate`` = zlib, RFC 1950), with ``Content-Encoding`` and
          ``Vary: Accept-Encoding``, whatever its size, as CDNs do.
        * ``chunked`` (bool, default true): HTTP/1.1 replies go out with ``Transfer-Encoding: chunked``
          (no Content-Length) in up to three pieces, as proxies send them.
        """
        known = {"token_ttl", "c2m_purchase_reply", "pb_duplicate_transaction", "settle_seconds", "compress", "chunked"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidSettingError(f"unknown settings: {unknown}")
        ttl = _check_ttl(data["token_ttl"]) if "token_ttl" in data else None
        reply = _check_reply(data["c2m_purchase_reply"]) if "c2m_purchase_reply" in data else None
        dup = _check_dup(data["pb_duplicate_transaction"]) if "pb_duplicate_transaction" in data else None
        settle = _check_settle(data["settle_seconds"]) if "settle_seconds" in data else None
        compress = _check_flag("compress", data["compress"]) if "compress" in data else None
        chunked = _check_flag("chunked", data["chunked"]) if "chunked" in data else None
        with self._lock:
            if settle is not None:
                self._settle_seconds = settle
            if ttl is not None:
                self._token_ttl = ttl
            if reply is not None:
                self._c2m_purchase_reply = reply
            if dup is not None:
                self._pb_duplicate_transaction = dup
            if compress is not None:
                self._compress = compress
            if chunked is not None:
                self._chunked = chunked
            return self.settings()

    def today(self) -> date:
        """Today's date (UTC) by the wall clock; used for card expiry."""
        return datetime.fromtimestamp(self._wall_clock() / 1_000_000_000, tz=timezone.utc).date()

    # ---------------------------------------------------------------------------- drain helpers
    def _current(self, value: Decimal, drain: _Drain | None, allow_negative: bool) -> Decimal:
        if drain is None:
            return value
        elapsed = Decimal(max(0, self._clock() - drain.started_ns)) / Decimal(1_000_000_000)
        drained = (drain.rate * elapsed).quantize(CENT, rounding=ROUND_DOWN)
        current = drain.start - drained
        if not allow_negative:
            current = max(current, min(drain.start, Decimal("0.00")))
        return current.quantize(CENT)

    def _matured(self, pending: list[tuple[int, Decimal]]) -> Decimal:
        """Take the pending credit whose time has come out of ``pending``; return its sum."""
        now = self._clock()
        due = [amount for visible_ns, amount in pending if visible_ns <= now]
        pending[:] = [(visible_ns, amount) for visible_ns, amount in pending if visible_ns > now]
        return sum(due, Decimal("0.00"))

    def _c2m_balance_now(self, account: _C2MAccount) -> Decimal:
        if account.pending and (arrived := self._matured(account.pending)):
            now = self._current(account.balance, account.drain, account.allow_negative)
            self._set_c2m_value(account, now + arrived)
        return self._current(account.balance, account.drain, account.allow_negative)

    def _pb_balance_now(self, merchant: _PBMerchant) -> Decimal:
        if merchant.pending and (arrived := self._matured(merchant.pending)):
            self._set_pb_value(merchant, self._current(merchant.available_balance, merchant.drain, False) + arrived)
        return self._current(merchant.available_balance, merchant.drain, False)

    def _set_c2m_value(self, account: _C2MAccount, value: Decimal) -> None:
        account.balance = value
        if account.drain is not None:
            account.drain = _Drain(start=value, rate=account.drain.rate, started_ns=self._clock())

    def _set_pb_value(self, merchant: _PBMerchant, value: Decimal) -> None:
        merchant.available_balance = value
        if merchant.drain is not None:
            merchant.drain = _Drain(start=value, rate=merchant.drain.rate, started_ns=self._clock())

    # ---------------------------------------------------------------------------- lookups
    def _account(self, username: str) -> _C2MAccount:
        try:
            return self._c2m[username]
        except KeyError:
            raise UnknownEntityError(f"unknown Click2Mail account {username!r}") from None

    def _merchant(self, prn: str) -> _PBMerchant:
        try:
            return self._pb_merchants[prn]
        except KeyError:
            raise UnknownEntityError(f"unknown Pitney Bowes merchant {prn!r}") from None

    # ---------------------------------------------------------------------------- C2M controls
    def c2m_balance(self, username: str = DEFAULT_C2M_USERNAME) -> Decimal:
        """Current balance of a Click2Mail account (drain included)."""
        with self._lock:
            return self._c2m_balance_now(self._account(username))

    def set_c2m_balance(
        self, username: str, balance: Decimal | int | str, *, allow_negative: bool | None = None
    ) -> None:
        self.set_c2m_account(username, balance=balance, allow_negative=allow_negative)

    def set_c2m_account(
        self,
        username: str,
        *,
        balance: Decimal | int | str | None = None,
        allow_negative: bool | None = None,
        environment: C2MEnvironment | None = None,
        password: str | None = None,
    ) -> None:
        """Change any of an account's balance, allowNegative flag, environment or password."""
        value = to_money(balance, "balance") if balance is not None else None
        if allow_negative is not None and not isinstance(allow_negative, bool):
            raise InvalidSettingError("allow_negative must be true or false")
        if environment is not None and environment not in C2M_ENVIRONMENTS:
            raise InvalidSettingError(f"environment must be one of {C2M_ENVIRONMENTS}")
        if password is not None and (not isinstance(password, str) or not password):
            raise InvalidSettingError("password must be a non-empty string")
        with self._lock:
            account = self._account(username)
            if allow_negative is not None:
                self._set_c2m_value(account, self._c2m_balance_now(account))
                account.allow_negative = allow_negative
            if value is not None:
                self._set_c2m_value(account, value)
            if environment is not None:
                account.environment = environment
            if password is not None:
                account.password = password

    def drain_c2m(self, username: str, rate_per_second: Decimal | int | str) -> None:
        """Make the balance fall by ``rate_per_second`` dollars per second (0 stops the drain)."""
        rate = _to_rate(rate_per_second)
        with self._lock:
            account = self._account(username)
            now_value = self._c2m_balance_now(account)
            account.balance = now_value
            account.drain = _Drain(now_value, rate, self._clock()) if rate else None

    # ---------------------------------------------------------------------------- PB controls
    def pb_balance(self, prn: str = DEFAULT_PB_PRN) -> Decimal:
        """Current postage account balance of a merchant (drain included)."""
        with self._lock:
            return self._pb_balance_now(self._merchant(prn))

    def set_pb_balance(self, prn: str, available_balance: Decimal | int | str) -> None:
        self.set_pb_merchant(prn, available_balance=available_balance)

    def set_pb_line_of_credit(self, prn: str, **fields: Decimal | int | str) -> None:
        """Set line-of-credit fields: balance_owed, available_credit, credit_limit,
        minimum_amount_due (amounts), minimum_due_date (YYYY-MM-DD)."""
        self.set_pb_merchant(prn, **fields)  # type: ignore[arg-type]

    def set_pb_merchant(
        self,
        prn: str,
        *,
        available_balance: Decimal | int | str | None = None,
        fund_enabled: bool | None = None,
        balance_owed: Decimal | int | str | None = None,
        available_credit: Decimal | int | str | None = None,
        credit_limit: Decimal | int | str | None = None,
        minimum_amount_due: Decimal | int | str | None = None,
        minimum_due_date: str | None = None,
    ) -> None:
        """Change a merchant's postage balance, fund_enabled flag or line-of-credit fields."""
        balance = to_money(available_balance, "available_balance") if available_balance is not None else None
        if fund_enabled is not None and not isinstance(fund_enabled, bool):
            raise InvalidSettingError("fund_enabled must be true or false")
        loc_values = {
            name: to_money(value, name)
            for name, value in (
                ("balance_owed", balance_owed),
                ("available_credit", available_credit),
                ("credit_limit", credit_limit),
                ("minimum_amount_due", minimum_amount_due),
            )
            if value is not None
        }
        due = _check_date(minimum_due_date) if minimum_due_date is not None else None
        with self._lock:
            merchant = self._merchant(prn)
            loc = merchant.line_of_credit
            if (loc_values or due is not None) and loc is None:
                raise InvalidSettingError(f"merchant {prn!r} has no PB Line of Credit")
            if balance is not None:
                self._set_pb_value(merchant, balance)
            if fund_enabled is not None:
                merchant.fund_enabled = fund_enabled
            if loc is not None:
                for name, value in loc_values.items():
                    setattr(loc, name, value)
                if due is not None:
                    loc.minimum_due_date = due

    def drain_pb(self, prn: str, rate_per_second: Decimal | int | str) -> None:
        """Make the postage balance fall by ``rate_per_second`` per second (floor 0; 0 stops)."""
        rate = _to_rate(rate_per_second)
        with self._lock:
            merchant = self._merchant(prn)
            now_value = self._pb_balance_now(merchant)
            merchant.available_balance = now_value
            merchant.drain = _Drain(now_value, rate, self._clock()) if rate else None

    def pb_line_of_credit(self, prn: str = DEFAULT_PB_PRN) -> LineOfCreditView | None:
        view = self.pb_merchant_view(prn)
        if view is None:
            raise UnknownEntityError(f"unknown Pitney Bowes merchant {prn!r}")
        return view.line_of_credit

    # ---------------------------------------------------------------------------- faults
    def inject_fault(
        self,
        endpoint: Endpoint,
        fault: Fault | None = None,
        *,
        times: int = 1,
        after: int = 0,
        status: int | None = None,
        body: str | None = None,
        content_type: str | None = None,
        delay: float = 0.0,
        apply: bool = False,
        drop: bool = False,
        headers: Mapping[str, str] | None = None,
        wire: WireFault | None = None,
        trickle_interval: float = 0.5,
    ) -> Fault:
        """Queue ``fault`` (or one built from the keywords) for the next ``times`` calls of ``endpoint``,
        after ``after`` calls that are answered normally (e.g. let a read before a purchase through)."""
        name = _check_endpoint(endpoint)
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise InvalidSettingError(f"times must be an integer >= 1, got {times!r}")
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise InvalidSettingError(f"after must be an integer >= 0, got {after!r}")
        if fault is None:
            fault = Fault(
                status=status,
                body=body,
                content_type=content_type,
                delay=delay,
                apply=apply,
                drop=drop,
                headers=tuple((headers or {}).items()),
                wire=wire,
                trickle_interval=trickle_interval,
            )
        with self._lock:
            self._faults[name].extend([Fault()] * after + [fault] * times)
        return fault

    def clear_faults(self, endpoint: Endpoint | None = None) -> None:
        with self._lock:
            names = ENDPOINTS if endpoint is None else (_check_endpoint(endpoint),)
            for name in names:
                self._faults[name].clear()

    def pending_faults(self) -> dict[str, list[Fault]]:
        with self._lock:
            return {name: list(queue) for name, queue in self._faults.items()}

    def begin_call(self, endpoint: Endpoint) -> Fault | None:
        """Count one request of ``endpoint`` and hand out its next queued fault, if any."""
        name = _check_endpoint(endpoint)
        with self._lock:
            self._counters.requests[name] += 1
            queue = self._faults[name]
            return queue.popleft() if queue else None

    # ---------------------------------------------------------------------------- counters
    def counters(self) -> dict[str, Any]:
        """JSON-ready counters (amounts as strings)."""
        with self._lock:
            c = self._counters
            return {
                "requests": dict(c.requests),
                "tokens_issued": c.tokens_issued,
                "pb_duplicate_transactions": c.pb_duplicate_transactions,
                "purchases": [p.to_mapping() for p in c.purchases],
                "refills": [r.to_mapping() for r in c.refills],
            }

    def reset_counters(self) -> None:
        """Zero the request counts and tokens_issued and empty the purchase/refill lists.

        Balances, tokens and the transaction ids already seen are kept.
        """
        with self._lock:
            self._counters = _Counters()

    def request_count(self, endpoint: Endpoint) -> int:
        with self._lock:
            return self._counters.requests[_check_endpoint(endpoint)]

    @property
    def tokens_issued(self) -> int:
        with self._lock:
            return self._counters.tokens_issued

    @property
    def purchases(self) -> list[Purchase]:
        with self._lock:
            return list(self._counters.purchases)

    @property
    def refills(self) -> list[Refill]:
        with self._lock:
            return list(self._counters.refills)

    # ---------------------------------------------------------------------------- snapshot
    def snapshot(self) -> dict[str, Any]:
        """JSON-ready picture of the whole state (amounts as two-place strings).

        ``"settings"`` holds the API-behaviour settings, ``"wire"`` the wire settings
        (``compress``, ``chunked``); :meth:`settings` returns both together.
        """
        with self._lock:
            accounts = {
                a.username: {
                    "balance": money_str(self._c2m_balance_now(a)),
                    "allow_negative": a.allow_negative,
                    "environment": a.environment,
                    "drain_rate_per_second": str(a.drain.rate) if a.drain else None,
                }
                for a in self._c2m.values()
            }
            merchants: dict[str, Any] = {}
            for m in self._pb_merchants.values():
                loc = m.line_of_credit
                merchants[m.prn] = {
                    "developer_id": m.developer_id,
                    "account_number": m.account_number,
                    "currency_code": m.currency_code,
                    "available_balance": money_str(self._pb_balance_now(m)),
                    "fund_enabled": m.fund_enabled,
                    "drain_rate_per_second": str(m.drain.rate) if m.drain else None,
                    "line_of_credit": (
                        {
                            "account_number": loc.account_number,
                            "currency_code": loc.currency_code,
                            "balance_owed": money_str(loc.balance_owed),
                            "available_credit": money_str(loc.available_credit),
                            "credit_limit": money_str(loc.credit_limit),
                            "minimum_amount_due": money_str(loc.minimum_amount_due),
                            "minimum_due_date": loc.minimum_due_date,
                        }
                        if loc is not None
                        else None
                    ),
                }
            now = self._clock()
            return {
                "c2m": {"accounts": accounts},
                "pb": {
                    "credentials": [
                        {"api_key": c.api_key, "developer_id": c.developer_id} for c in self._pb_credentials.values()
                    ],
                    "merchants": merchants,
                    "active_tokens": sum(1 for t in self._tokens.values() if t.expires_ns > now),
                    "transaction_ids": sorted(f"{prn}:{txn}" for prn, txn in self._transactions),
                },
                "settings": self._api_settings(),
                "wire": self.wire_settings(),
                "faults": {name: [f.to_mapping() for f in q] for name, q in self._faults.items()},
            }

    # ---------------------------------------------------------------------------- C2M API
    def c2m_check_credentials(self, username: str, password: str) -> bool:
        with self._lock:
            account = self._c2m.get(username)
            if account is None:
                return False
            return secrets.compare_digest(password.encode(), account.password.encode())

    def c2m_credit(self, username: str) -> tuple[Decimal, bool]:
        """(balance, allowNegative) of an account."""
        with self._lock:
            account = self._account(username)
            return self._c2m_balance_now(account), account.allow_negative

    def c2m_environment(self, username: str) -> C2MEnvironment:
        with self._lock:
            return self._account(username).environment

    def c2m_apply_purchase(self, username: str, amount: Decimal, card_number: str = "") -> Purchase:
        """Add a validated purchase to the balance and record it."""
        amount = to_money(amount)
        if amount <= 0:
            raise InvalidSettingError("purchase amount must be positive")
        with self._lock:
            account = self._account(username)
            if self._settle_seconds:
                account.pending.append((self._clock() + self._settle_seconds * 1_000_000_000, amount))
            else:
                self._set_c2m_value(account, self._c2m_balance_now(account) + amount)
            purchase = Purchase(
                username=username,
                amount=amount,
                environment=account.environment,
                card_last4=card_number[-4:],
                at=_iso(self._wall_clock()),
            )
            self._counters.purchases.append(purchase)
            return purchase

    # ---------------------------------------------------------------------------- PB API
    def pb_check_credentials(self, api_key: str, api_secret: str) -> bool:
        with self._lock:
            cred = self._pb_credentials.get(api_key)
            if cred is None:
                return False
            return secrets.compare_digest(api_secret.encode(), cred.api_secret.encode())

    def pb_issue_token(self, api_key: str, api_secret: str) -> IssuedToken | None:
        """A new bearer token for valid credentials, None for bad ones."""
        with self._lock:
            cred = self._pb_credentials.get(api_key)
            if cred is None or not secrets.compare_digest(api_secret.encode(), cred.api_secret.encode()):
                return None
            ttl = self._token_ttl
            token = "sbxtok-" + secrets.token_urlsafe(18)
            while token in self._tokens:  # pragma: no cover - 144 random bits
                token = "sbxtok-" + secrets.token_urlsafe(18)
            issued = IssuedToken(
                token=token,
                api_key=api_key,
                developer_id=cred.developer_id,
                issued_at_ms=self._wall_clock() // 1_000_000,
                expires_in=ttl,
            )
            self._tokens[token] = _Token(issued=issued, expires_ns=self._clock() + ttl * 1_000_000_000)
            self._counters.tokens_issued += 1
            return issued

    def pb_lookup_token(self, token: str) -> IssuedToken | None:
        """The token's grant if it is known and not expired, else None (expired ones are dropped)."""
        with self._lock:
            entry = self._tokens.get(token)
            if entry is None:
                return None
            if self._clock() >= entry.expires_ns or entry.issued.api_key not in self._pb_credentials:
                del self._tokens[token]
                return None
            return entry.issued

    def expire_tokens(self) -> int:
        """Invalidate every issued token; returns how many were still valid."""
        with self._lock:
            now = self._clock()
            alive = sum(1 for t in self._tokens.values() if t.expires_ns > now)
            self._tokens.clear()
            return alive

    def pb_merchant_view(self, prn: str) -> MerchantView | None:
        with self._lock:
            m = self._pb_merchants.get(prn)
            if m is None:
                return None
            loc = m.line_of_credit
            return MerchantView(
                prn=m.prn,
                developer_id=m.developer_id,
                account_number=m.account_number,
                currency_code=m.currency_code,
                available_balance=self._pb_balance_now(m),
                fund_enabled=m.fund_enabled,
                line_of_credit=(
                    LineOfCreditView(
                        account_number=loc.account_number,
                        currency_code=loc.currency_code,
                        balance_owed=loc.balance_owed,
                        available_credit=loc.available_credit,
                        credit_limit=loc.credit_limit,
                        minimum_amount_due=loc.minimum_amount_due,
                        minimum_due_date=loc.minimum_due_date,
                    )
                    if loc is not None
                    else None
                ),
            )

    def pb_fund(self, prn: str, amount: int, currency_code: str, transaction_id: str) -> FundResult:
        """Apply a validated refill, following the duplicate-transaction policy, atomically."""
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise InvalidSettingError("refill amount must be a positive integer")
        value = Decimal(amount).quantize(CENT)
        with self._lock:
            merchant = self._merchant(prn)
            key = (prn, transaction_id)
            previous = self._transactions.get(key)
            if previous is not None:
                self._counters.pb_duplicate_transactions += 1
                if self._pb_duplicate_transaction == "replay":
                    return FundResult("replayed", previous)
                if self._pb_duplicate_transaction == "reject":
                    return FundResult("duplicate_rejected", previous)
            loc = merchant.line_of_credit
            if loc is not None and value > loc.available_credit:
                return FundResult("insufficient_credit", None, loc.available_credit)
            if loc is not None:
                loc.available_credit -= value
                loc.balance_owed += value
            if self._settle_seconds:
                merchant.pending.append((self._clock() + self._settle_seconds * 1_000_000_000, value))
            else:
                self._set_pb_value(merchant, self._pb_balance_now(merchant) + value)
            refill = Refill(
                prn=prn,
                amount=value,
                currency_code=currency_code,
                transaction_id=transaction_id,
                source="line_of_credit" if loc is not None else "payment_method",
                at=_iso(self._wall_clock()),
            )
            self._transactions.setdefault(key, refill)
            self._counters.refills.append(refill)
            return FundResult("applied", refill)
