"""The sandbox's initial world: default accounts and merchants, and :class:`Seed`, its JSON-able description.

``SandboxState(seed)`` starts from a seed and :meth:`~.state.SandboxState.reset` returns to it;
``postage-sandbox --seed FILE`` reads one (format in :class:`Seed` and :mod:`.__main__`).
Without a seed the world is :data:`DEFAULT_SEED`: Click2Mail account ``demo-user`` (5.00), Pitney Bowes
key ``demo-api-key`` of developer ``44440000``, merchants ``900001`` (12.50, with a PB Line of Credit)
and ``900002`` (457.22, postage account only).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from .click2mail.rules import C2M_ENVIRONMENTS, C2MEnvironment
from .errors import InvalidSettingError
from .settings import (
    DEFAULT_TOKEN_TTL,
    C2MPurchaseReply,
    PBDuplicatePolicy,
    check_dup,
    check_reply,
    check_ttl,
)
from .values import check_date, money_str, to_money

__all__ = [
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
    "C2MAccountSeed",
    "LineOfCreditSeed",
    "PBCredentialSeed",
    "PBMerchantSeed",
    "Seed",
]

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

#: A billing profile the sandbox accepts (Click2Mail's documented staging test card), as the extras of a
#: ``click2mail`` connection (the card under the provider's secret extra names ``card_number_secret`` and
#: ``card_cvv_secret``): for demos, tests and benchmarks.
DEMO_BILLING: dict[str, str] = {
    "billing_name": "Awesome User",
    "billing_address1": "221B Baker St",
    "billing_city": "Springfield",
    "billing_state": "MO",
    "billing_zip": "34567",
    "card_number_secret": "4111111111111111",
    "card_exp_month": "12",
    "card_exp_year": "2030",
    "card_cvv_secret": "123",
    "card_type": "VI",
}


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
            minimum_due_date=check_date(_str_field(data, "minimum_due_date")),
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
            token_ttl=check_ttl(data.get("token_ttl", base.token_ttl)),
            c2m_purchase_reply=check_reply(data.get("c2m_purchase_reply", base.c2m_purchase_reply)),
            pb_duplicate_transaction=check_dup(data.get("pb_duplicate_transaction", base.pb_duplicate_transaction)),
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
