"""Wait for an account's balance to cross a threshold: poke, reschedule, or deferred to the triggerer."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, BaseSensorOperator, Context, PokeReturnValue, conf

from airflow_provider_postage import _conditions
from airflow_provider_postage._ledger import AccountLedger
from airflow_provider_postage._templating import known_at_parse_time
from airflow_provider_postage.hooks.postage import PostageHook, get_postage_hook
from airflow_provider_postage.protocol.money import format_money
from airflow_provider_postage.triggers.postage import BalanceThresholdTrigger

log = logging.getLogger(__name__)

__all__ = ["BalanceThresholdSensor"]


class BalanceThresholdSensor(BaseSensorOperator):
    """Succeeds once the balance is at least ``threshold`` (or, with ``condition="below"``, under it),
    returning the balance dict it saw (XCom).

    Transient API trouble (timeouts, 5xx, an unreadable reply) is logged and waited out; refused
    credentials, an unknown merchant or a 403 fail the task with the API's message.

    :param postage_conn_id: a ``click2mail`` or ``pitney_bowes`` connection (templated).
    :param threshold: str, int or Decimal, at most two decimals (templated; a float is refused).
    :param account_type: ``credit``, ``postage`` or ``line_of_credit`` (templated); default: the
        connection's main account (``credit`` for Click2Mail, ``postage`` for Pitney Bowes).
    :param condition: ``at_least`` (default) or ``below``.
    :param deferrable: poke once, then hand the wait to the triggerer (no worker slot held). Defaults
        to ``[operators] default_deferrable``.
    :param postal_reporting_number: watch this Pitney Bowes merchant instead of the connection's own
        (templated).
    """

    template_fields: Sequence[str] = ("postage_conn_id", "threshold", "account_type", "postal_reporting_number")
    ui_color = "#e6f2ff"

    def __init__(
        self,
        *,
        postage_conn_id: str,
        threshold: str | int | Decimal,
        account_type: str | None = None,
        condition: str = _conditions.AT_LEAST,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        postal_reporting_number: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.postage_conn_id = postage_conn_id
        self.postal_reporting_number = postal_reporting_number
        self.threshold = threshold
        self.account_type = account_type
        self.condition = _conditions.validate_condition(condition)
        self.deferrable = deferrable
        # Fail at DAG parse time where the value is already known; templates are checked once rendered.
        if known_at_parse_time(threshold):
            _conditions.validate_threshold(threshold)
        if known_at_parse_time(account_type):
            _conditions.validate_account_type(account_type)

    def _checked(self) -> tuple[Decimal, str | None]:
        return _conditions.validate_threshold(self.threshold), _conditions.validate_account_type(self.account_type)

    def poke(self, context: Context) -> PokeReturnValue:
        threshold, account_type = self._checked()
        hook = get_postage_hook(self.postage_conn_id, account=self.postal_reporting_number or None)
        try:
            balance = _conditions.pick(hook.get_balances(), account_type, hook.main_account_type)
        except Exception as error:
            if _conditions.is_permanent(error):
                raise
            self.log.warning("%s: %s; poking again later", self.postage_conn_id, error)
            return PokeReturnValue(is_done=False)
        done = _conditions.is_met(balance, threshold, self.condition)
        self.log.info(
            "%s %s balance %s %s; waiting until %s %s",
            self.postage_conn_id,
            balance.account_type,
            format_money(balance.available),
            balance.currency,
            self.condition.replace("_", " "),
            format_money(threshold),
        )
        if done:
            _record(lambda: hook, balance.account_type, balance.available)
        return PokeReturnValue(is_done=done, xcom_value=balance.to_dict() if done else None)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        threshold, account_type = self._checked()
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        self.defer(
            trigger=BalanceThresholdTrigger(
                postage_conn_id=self.postage_conn_id,
                threshold=format_money(threshold),
                account_type=account_type,
                condition=self.condition,
                poke_interval=float(self.poke_interval),
                postal_reporting_number=self.postal_reporting_number or None,
            ),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=float(self.timeout)),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("status") == "success":
            balance: dict[str, Any] = event["balance"]
            self.log.info("%s balance %s reached the condition", self.postage_conn_id, balance["available"])
            _record(
                lambda: get_postage_hook(self.postage_conn_id, account=self.postal_reporting_number or None),
                balance.get("account_type"),
                balance.get("available"),
            )
            return balance
        raise AirflowException(f"{self.postage_conn_id}: {event.get('message', 'balance trigger failed')}")


def _record(hook: Callable[[], PostageHook], account_type: object, available: object) -> None:
    """A balance a sensor saw, for the funding ledger: it shows which purchases have settled. Best effort:
    a sensor never fails for want of a ledger (outside a task runner there are no Variables)."""
    try:
        found = hook()
        ledger = AccountLedger(found.provider, found.account_id)
        ledger.record_balance(str(account_type), Decimal(str(available)))
    except Exception as error:
        log.debug("balance not recorded in the ledger: %s", error)
