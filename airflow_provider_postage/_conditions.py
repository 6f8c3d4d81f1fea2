"""The balance condition a sensor and its trigger wait for, in one place so both judge alike."""

from __future__ import annotations

from decimal import Decimal

from airflow_provider_postage.protocol.errors import (
    PostageAPIError,
    PostageConfigError,
    PostageError,
    PostageResponseError,
    PostageValidationError,
)
from airflow_provider_postage.protocol.money import parse_threshold
from airflow_provider_postage.protocol.records import ACCOUNT_TYPES, Balance

AT_LEAST = "at_least"
BELOW = "below"
CONDITIONS = (AT_LEAST, BELOW)


def validate_condition(condition: str) -> str:
    if condition not in CONDITIONS:
        raise PostageValidationError("condition", f"must be one of {', '.join(CONDITIONS)}")
    return condition


def validate_account_type(account_type: str | None) -> str | None:
    if account_type is not None and account_type not in ACCOUNT_TYPES:
        raise PostageValidationError("account_type", f"must be one of {', '.join(ACCOUNT_TYPES)}")
    return account_type


def validate_threshold(threshold: object) -> Decimal:
    return parse_threshold(threshold)


def is_met(balance: Balance, threshold: Decimal, condition: str) -> bool:
    return balance.available >= threshold if condition == AT_LEAST else balance.available < threshold


def pick(balances: list[Balance], account_type: str | None, default: str) -> Balance:
    wanted = account_type or default
    for balance in balances:
        if balance.account_type == wanted:
            return balance
    conn_id = balances[0].conn_id if balances else "?"
    raise PostageConfigError("account_type", f"connection {conn_id!r} has no {wanted} account")


def is_permanent(error: BaseException) -> bool:
    """Errors worth failing a wait for: refused credentials, unknown merchant, 403, bad input.
    Everything else (timeouts, 5xx, an unreadable reply) is waited out."""
    if isinstance(error, PostageValidationError):
        return True
    if isinstance(error, PostageAPIError):
        return not error.transient and not isinstance(error, PostageResponseError)
    return not isinstance(error, PostageError)
