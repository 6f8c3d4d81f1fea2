"""Operators that read balances and buy credit on Click2Mail and Pitney Bowes connections."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator, Context

from airflow_provider_postage._journal import PurchaseJournal, is_done, journal_location, purchase_journal
from airflow_provider_postage._templating import known_at_parse_time
from airflow_provider_postage.hooks.postage import PostageHook, get_postage_hook
from airflow_provider_postage.protocol.errors import (
    DuplicateTransactionError,
    PostageAPIError,
    PostageError,
    PostageTransportError,
    PostageValidationError,
    TransactionReplayedError,
)
from airflow_provider_postage.protocol.flow import purchase_key
from airflow_provider_postage.protocol.money import format_money, parse_amount, parse_threshold, round_up
from airflow_provider_postage.protocol.records import Balance

__all__ = ["DEFAULT_MAX_AMOUNT", "FetchBalancesOperator", "PurchaseCreditOperator"]

#: The default cap on one purchase: a typo in ``amount`` must not empty a card.
DEFAULT_MAX_AMOUNT = Decimal("500.00")

PURCHASED = "purchased"
SKIPPED = "skipped"
DRY_RUN = "dry_run"
ALREADY_APPLIED = "already_applied"


def balance_table(balances: list[Balance]) -> str:
    """A fixed-width table for the task log."""
    rows = [("connection", "provider", "account", "number", "available", "currency")]
    rows += [
        (b.conn_id, b.provider, b.account_type, b.account_number or "-", format_money(b.available), b.currency)
        for b in balances
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(row: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(width) if i == 4 else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    lines = [line(row) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class FetchBalancesOperator(BaseOperator):
    """Read the balances of every account behind one or more connections (either type).

    Returns (XCom) a list of balance dicts, amounts as decimal strings; nothing secret, no raw payload.
    Maps well: ``FetchBalancesOperator.partial(task_id=...).expand(postage_conn_ids=[...])``.

    :param postage_conn_ids: a connection id or a list of them (templated).
    :param postal_reporting_number: read this Pitney Bowes merchant instead of the connection's own
        (templated): one connection, one token, many merchants.
    :param hook_params: extra keyword arguments for the hooks (e.g. ``timeout``, ``max_attempts``).
    """

    template_fields: Sequence[str] = ("postage_conn_ids", "postal_reporting_number")
    ui_color = "#e6f2ff"

    def __init__(
        self,
        *,
        postage_conn_ids: str | list[str],
        postal_reporting_number: str | None = None,
        hook_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.postage_conn_ids = postage_conn_ids
        self.postal_reporting_number = postal_reporting_number
        self.hook_params = hook_params or {}

    def execute(self, context: Context) -> list[dict[str, Any]]:
        conn_ids = [self.postage_conn_ids] if isinstance(self.postage_conn_ids, str) else list(self.postage_conn_ids)
        if not conn_ids:
            raise PostageValidationError("postage_conn_ids", "no connection ids given")
        balances: list[Balance] = []
        for conn_id in conn_ids:
            hook = get_postage_hook(conn_id, account=self.postal_reporting_number or None, **self.hook_params)
            balances.extend(hook.get_balances())
        self.log.info("Balances:\n%s", balance_table(balances))
        return [balance.to_dict() for balance in balances]


class PurchaseCreditOperator(BaseOperator):
    """Buy Click2Mail credit or refill a Pitney Bowes postage account, at most once per task instance.

    Give exactly one of ``amount`` (buy this much) or ``top_up_to`` (buy only when the available
    balance is below this target: the difference, rounded up to what the API accepts and to its
    minimum). Everything is checked before any request; nothing above ``max_amount`` is ever bought.

    Retries are safe. Before buying, the operator notes the purchase in the task instance's state
    (``task_state_store`` on Airflow 3.3+, a Variable before); a later try that finds the note reads
    the balance to learn whether the purchase went through. Pitney Bowes refills also carry an
    ``X-PB-TransactionId`` derived from the task instance, the same on every try. For Click2Mail, which
    has no such key, a try that cannot tell fails (without further retries) rather than buy twice.

    Returns (XCom) ``provider``, ``conn_id``, ``status`` (``purchased``, ``skipped``, ``dry_run``,
    ``already_applied``), ``amount``, ``currency``, ``balance_before``, ``balance_after``,
    ``transaction_id`` (for services whose purchases carry one).

    :param postage_conn_id: a postage connection, e.g. ``click2mail`` or ``pitney_bowes`` (templated).
    :param amount: str, int or Decimal (templated); a float is refused, being inexact.
    :param top_up_to: str, int or Decimal target balance (templated).
    :param max_amount: cap on one purchase (templated), default 500.00.
    :param dry_run: work out and log the purchase, buy nothing.
    :param postal_reporting_number: refill this Pitney Bowes merchant instead of the connection's own
        (templated).
    :param hook_params: extra keyword arguments for the hook (e.g. ``timeout``).
    """

    template_fields: Sequence[str] = ("postage_conn_id", "amount", "top_up_to", "max_amount", "postal_reporting_number")
    ui_color = "#ffe9cc"

    def __init__(
        self,
        *,
        postage_conn_id: str,
        amount: str | int | Decimal | None = None,
        top_up_to: str | int | Decimal | None = None,
        max_amount: str | int | Decimal = DEFAULT_MAX_AMOUNT,
        dry_run: bool = False,
        postal_reporting_number: str | None = None,
        hook_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (amount is None) == (top_up_to is None):
            raise PostageValidationError("amount", "give exactly one of amount or top_up_to")
        self.postage_conn_id = postage_conn_id
        self.amount = amount
        self.top_up_to = top_up_to
        self.max_amount = max_amount
        # Not ``self.dry_run``: that name is BaseOperator's method behind ``airflow tasks test --dry-run``.
        self.purchase_dry_run = dry_run
        self.postal_reporting_number = postal_reporting_number
        self.hook_params = hook_params or {}
        # Values known at parse time are checked now, so a bad DAG fails to load, not at 3 a.m.
        if amount is not None and known_at_parse_time(amount):
            parse_amount(amount)
        if top_up_to is not None and known_at_parse_time(top_up_to):
            parse_threshold(top_up_to, field="top_up_to")
        if known_at_parse_time(max_amount):
            parse_amount(max_amount, field="max_amount")

    # --- helpers ----------------------------------------------------------------------------------

    def _cap(self, hook: PostageHook, amount: Decimal, cap: Decimal) -> Decimal:
        amount = hook.validate_purchase(amount)
        if amount > cap:
            raise PostageValidationError(
                "amount", f"{format_money(amount)} is above max_amount {format_money(cap)}; nothing was bought"
            )
        return amount

    def _top_up_amount(self, hook: PostageHook, target: Decimal, available: Decimal) -> Decimal:
        missing = round_up(target - available, hook.purchase_step)
        return max(missing, hook.minimum_purchase)

    def _result(
        self,
        hook: PostageHook,
        status: str,
        amount: Decimal | None,
        before: Balance,
        after: Balance | None,
        transaction_id: str | None,
    ) -> dict[str, Any]:
        return {
            "provider": hook.provider,
            "conn_id": self.postage_conn_id,
            **({"account": self.postal_reporting_number} if self.postal_reporting_number else {}),
            "status": status,
            "amount": None if amount is None else format_money(amount),
            "currency": before.currency,
            "balance_before": format_money(before.available),
            "balance_after": None if after is None else format_money(after.available),
            "transaction_id": transaction_id if hook.service.idempotent_purchases else None,
        }

    def _balance_after(self, hook: PostageHook) -> Balance | None:
        try:
            return hook.get_balance()
        except PostageError as error:
            self.log.warning("Bought, but the balance afterwards could not be read: %s", error)
            return None

    # --- execute ----------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        hook = get_postage_hook(self.postage_conn_id, account=self.postal_reporting_number or None, **self.hook_params)
        cap = parse_amount(self.max_amount, field="max_amount")
        wanted = None if self.amount is None else self._cap(hook, parse_amount(self.amount), cap)
        target = None if self.top_up_to is None else parse_threshold(self.top_up_to, field="top_up_to")
        if wanted is None:
            hook.validate_purchase(None)  # the rest of the purchase set-up (billing profile, ids)
        ti = context["ti"]
        transaction_id = purchase_key(ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1))
        journal = purchase_journal(context, transaction_id)

        pending = journal.get()
        if is_done(pending):
            assert pending is not None
            done = pending["result"]
            if done.get("conn_id") == self.postage_conn_id and done.get("account") == (
                self.postal_reporting_number or None
            ):
                self.log.info("This task instance has bought already (%s): not buying again", done)
                return {**done, "status": ALREADY_APPLIED}
            pending = None  # a purchase on another connection, e.g. before the task was changed and cleared
        before = hook.get_balance()
        if pending is not None:
            return self._resume(hook, context, pending, before, transaction_id, journal, cap)

        if wanted is None:
            assert target is not None
            if before.available >= target:
                self.log.info(
                    "%s balance %s is at or above %s: nothing to buy",
                    self.postage_conn_id,
                    format_money(before.available),
                    format_money(target),
                )
                return self._result(hook, SKIPPED, None, before, before, None)
            wanted = self._cap(hook, self._top_up_amount(hook, target, before.available), cap)

        if self.purchase_dry_run:
            self.log.info("Dry run: would buy %s %s on %s", format_money(wanted), before.currency, self.postage_conn_id)
            return self._result(hook, DRY_RUN, wanted, before, None, transaction_id)

        journal.put(
            {
                "conn_id": self.postage_conn_id,
                **({"account": self.postal_reporting_number} if self.postal_reporting_number else {}),
                "amount": format_money(wanted),
                "balance_before": format_money(before.available),
                "transaction_id": transaction_id,
            }
        )
        return self._buy(hook, wanted, before, transaction_id, journal)

    def _buy(
        self, hook: PostageHook, amount: Decimal, before: Balance, transaction_id: str, journal: PurchaseJournal
    ) -> dict[str, Any]:
        self.log.info("Buying %s %s on %s", format_money(amount), before.currency, self.postage_conn_id)
        try:
            hook.purchase_credit(amount, transaction_id=transaction_id, balance_before=before)
        except DuplicateTransactionError:
            result = self._result(hook, ALREADY_APPLIED, amount, before, self._balance_after(hook), transaction_id)
            journal.complete(result)
            return result
        except PostageAPIError as error:
            if 400 <= error.status < 500:
                journal.clear()  # refused outright: nothing was charged, a retry may buy afresh
            raise
        except PostageTransportError as error:
            if not error.request_sent:
                journal.clear()  # it never left this machine: nothing was charged, a retry may buy afresh
            raise
        except TransactionReplayedError as error:
            journal.clear()  # the outcome is known: nothing new was bought
            raise AirflowFailException(str(error)) from None
        after = self._balance_after(hook)
        result = self._result(hook, PURCHASED, amount, before, after, transaction_id)
        journal.complete(result)
        money, was = format_money(amount), format_money(before.available)
        if after is not None and after.available - before.available >= amount:
            shown = f"balance {was} -> {format_money(after.available)}"
        else:  # the APIs' balances do not show purchases still settling
            shown = f"balance {was} before; the purchase is settling and not in the balance yet"
        self.log.info("Bought %s %s on %s; %s", money, before.currency, self.postage_conn_id, shown)
        return result

    def _resume(
        self,
        hook: PostageHook,
        context: Context,
        pending: dict[str, Any],
        now: Balance,
        transaction_id: str,
        journal: PurchaseJournal,
        cap: Decimal,
    ) -> dict[str, Any]:
        """An earlier try of this task instance started a purchase and did not see it through. It is
        resumed only as it was: on the same connection and within this try's ``max_amount``."""
        amount = Decimal(str(pending["amount"]))
        before = Decimal(str(pending["balance_before"]))
        where = journal_location(context, transaction_id)
        if (pending.get("conn_id"), pending.get("account")) != (
            self.postage_conn_id,
            self.postal_reporting_number or None,
        ):
            raise AirflowFailException(
                f"An earlier try of this task started a purchase of {format_money(amount)} on "
                f"{pending.get('conn_id')!r} whose outcome is unknown; this try is for {self.postage_conn_id!r}. "
                f"Not resuming it on another account, and not buying. Check {pending.get('conn_id')!r}, then "
                f"delete {where} and run the task again."
            )
        if amount > cap:
            raise AirflowFailException(
                f"An earlier try of this task started a purchase of {format_money(amount)} on "
                f"{self.postage_conn_id!r} whose outcome is unknown, above this try's max_amount "
                f"{format_money(cap)}. Not resuming it. Check the account, then delete {where} and run the "
                "task again."
            )
        earlier = Balance(**{**now.__dict__, "available": before})
        if now.available - before >= amount:
            self.log.info(
                "An earlier try's purchase of %s went through (balance %s then, %s now): not buying again",
                format_money(amount),
                format_money(before),
                format_money(now.available),
            )
            result = self._result(hook, ALREADY_APPLIED, amount, earlier, now, transaction_id)
            journal.complete(result)
            return result
        if hook.service.idempotent_purchases:
            # The service deduplicates on the key: resending the same purchase with the same key is safe.
            self.log.info(
                "Resending purchase %s of %s with the same transaction id", transaction_id, format_money(amount)
            )
            return self._buy(hook, amount, earlier, transaction_id, journal)
        raise AirflowFailException(
            f"An earlier try of this task started a {hook.service.hook_name} purchase of {format_money(amount)} on "
            f"{self.postage_conn_id!r} whose outcome is unknown: the balance was {format_money(before)} before it "
            f"and is {format_money(now.available)} now. Not buying again. Check the account; to buy anyway, "
            f"delete {where} and run the task again."
        )
