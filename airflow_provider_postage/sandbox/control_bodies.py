"""The JSON bodies of the ``/_sandbox/*`` control routes, as pydantic models that refuse unknown fields.

Bodies are read with the sandbox's own JSON reader (every non-integer number a Decimal, never a float)
and then validated by :func:`parse_body`, which turns any problem into an
:class:`~.errors.InvalidSettingError` (HTTP 400 ``{"error": "…"}``) that names the field.
Amounts may be JSON numbers or decimal strings (two places at most); JSON types are strict (``1`` is
not ``true``). Whatever the models leave open (ranges, combinations) the state checks, as for
Python callers. Only fields present in the body are applied (``exclude_unset``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, TypeVar, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
)

from .click2mail.rules import C2MEnvironment
from .errors import InvalidSettingError
from .faults import Endpoint, WireFault
from .pitney_bowes.records import POSTAGE_FUND
from .settings import C2MPurchaseReply, PBDuplicatePolicy
from .values import to_money, to_rate

__all__ = [
    "AutoRefillBody",
    "C2MAccountBody",
    "DrainBody",
    "FaultBody",
    "PBMerchantBody",
    "SettingsBody",
    "TransactionItem",
    "TransactionsBody",
    "parse_body",
]


def _money(value: Any, info: ValidationInfo) -> Decimal | None:
    return None if value is None else to_money(value, info.field_name or "amount")


def _rate(value: Any) -> Decimal:
    return to_rate(value)


def _seconds(value: Any, info: ValidationInfo) -> Decimal | int:
    """A duration: a JSON number or a decimal string (the form ``Fault.to_mapping`` writes)."""
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except ArithmeticError:
            raise InvalidSettingError(f"{info.field_name} is not a number of seconds: {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise InvalidSettingError(f"{info.field_name} must be a number of seconds, got {value!r}")
    return value


Money = Annotated[Decimal, BeforeValidator(_money)]
OptionalMoney = Annotated[Decimal | None, BeforeValidator(_money)]
Rate = Annotated[Decimal, BeforeValidator(_rate)]
Seconds = Annotated[Decimal | int, BeforeValidator(_seconds)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class C2MAccountBody(_Body):
    """``POST /_sandbox/c2m/accounts/{username}``."""

    balance: OptionalMoney = None
    allow_negative: StrictBool | None = None
    environment: C2MEnvironment | None = None
    password: StrictStr | None = None


class PBMerchantBody(_Body):
    """``POST /_sandbox/pb/merchants/{prn}``."""

    available_balance: OptionalMoney = None
    fund_enabled: StrictBool | None = None
    balance_owed: OptionalMoney = None
    available_credit: OptionalMoney = None
    credit_limit: OptionalMoney = None
    minimum_amount_due: OptionalMoney = None
    minimum_due_date: StrictStr | None = None


class DrainBody(_Body):
    """``POST /_sandbox/c2m/accounts/{username}/drain`` and ``/_sandbox/pb/merchants/{prn}/drain``."""

    rate_per_second: Rate = Decimal(0)


class FaultBody(_Body):
    """``POST /_sandbox/faults``: the endpoint, how many calls, and the :class:`~.faults.Fault` fields."""

    endpoint: Endpoint
    times: StrictInt = 1
    after: StrictInt = 0
    status: StrictInt | None = None
    body: StrictStr | None = None
    content_type: StrictStr | None = None
    delay: Seconds = 0
    apply: StrictBool = False
    drop: StrictBool = False
    headers: dict[StrictStr, StrictStr] | None = None
    wire: WireFault | None = None
    trickle_interval: Seconds = Decimal("0.5")


class SettingsBody(_Body):
    """``POST /_sandbox/settings`` (any subset; see :mod:`.settings`)."""

    token_ttl: StrictInt | None = None
    c2m_purchase_reply: C2MPurchaseReply | None = None
    pb_duplicate_transaction: PBDuplicatePolicy | None = None
    settle_seconds: StrictInt | None = None
    compress: StrictBool | None = None
    chunked: StrictBool | None = None


class AutoRefillBody(_Body):
    """``POST /_sandbox/pb/merchants/{prn}/autorefill``: the rule, without a token (left out: null)."""

    threshold: OptionalMoney = None
    add_amount: StrictInt | None = None
    enabled: StrictBool = False


class TransactionItem(_Body):
    """One history entry to seed: ``amount``, ``at`` (ISO 8601 date-time) and ``type``."""

    amount: Money
    at: StrictStr
    type: StrictStr = POSTAGE_FUND
    transaction_id: StrictStr | None = None
    description: StrictStr | None = None


class TransactionsBody(_Body):
    """``POST /_sandbox/pb/merchants/{prn}/transactions`` (a bare JSON list of items is accepted too)."""

    transactions: list[TransactionItem]


ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_body(model: type[ModelT], data: Any) -> ModelT:
    """``data`` validated as ``model``, or :class:`InvalidSettingError` with a readable message."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidSettingError(_describe(model, exc)) from None


def _describe(model: type[BaseModel], exc: ValidationError) -> str:
    problems: list[str] = []
    seen: set[tuple[Any, ...]] = set()
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            allowed = _fields_at(model, loc[:-1])
            where = f" in {_path(loc[:-1])}" if len(loc) > 1 else ""
            problems.append(f"unknown field {loc[-1]!r}{where}; allowed: {allowed}")
            continue
        field = tuple(part for part in loc if isinstance(part, int) or part in _all_fields(model))
        if field in seen:  # one message per field (a union reports each of its members)
            continue
        seen.add(field)
        message = str(err["msg"]).removeprefix("Value error, ")
        where = _path(field) or "body"
        redundant = len(field) == 1 and message.startswith(str(field[0]))  # the state's message names it
        problems.append(message if redundant else f"{where}: {message}")
    return "; ".join(problems)


def _path(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the (nested) model found at ``loc``."""
    current = model
    for part in loc:
        if isinstance(part, int) or part not in current.model_fields:
            continue
        annotation = current.model_fields[part].annotation
        nested = [arg for arg in (*get_args(annotation), annotation) if isinstance(arg, type)]
        current = next((arg for arg in nested if issubclass(arg, BaseModel)), current)
    return list(current.model_fields)


def _all_fields(model: type[BaseModel]) -> set[str]:
    names = set(model.model_fields)
    for field in model.model_fields.values():
        for arg in get_args(field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                names |= _all_fields(arg)
    return names
