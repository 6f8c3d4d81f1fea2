"""Buying credit under the funding policy, at most once per task instance."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator, Context

from airflow_provider_postage import _funding
from airflow_provider_postage._journal import PurchaseJournal, is_done, journal_location, purchase_journal
from airflow_provider_postage._ledger import AccountLedger, FundingRefused
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

__all__ = ["DEFAULT_MAX_AMOUNT", "PurchaseCreditOperator"]

#: The default cap on one purchase: a typo in ``amount`` must not empty a card.
DEFAULT_MAX_AMOUNT = Decimal("500.00")
#: How long a purchase may hold its account's lease before another may take it (a worker that died).
LEASE_TTL = dt.timedelta(minutes=15)

PURCHASED = "purchased"
SKIPPED = "skipped"
DRY_RUN = "dry_run"
ALREADY_APPLIED = "already_applied"


class PurchaseCreditOperator(BaseOperator):
    """Buy Click2Mail credit or refill a Pitney Bowes postage account, at most once per task instance.

    Give exactly one of ``amount`` (buy this much) or ``top_up_to`` (buy only when the available
    balance is below this target: the difference, rounded up to what the API accepts and to its
    minimum). Everything is checked before any request; nothing above ``max_amount`` is ever bought.

    Retries are safe: the purchase is noted in the task instance's state before it is sent, and a later
    try settles it by the balance or by resending the same idempotency key (docs/faults.md). The funding
    policy (docs/funding.md) holds across tasks: one purchase per account at a time, credit still
    settling counted, caps and a circuit breaker checked before sending, every attempt in the account's
    ledger, every purchase a receipt (an asset event through the alias ``postage_receipts``).

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
    :param max_daily_amount: lower the account's daily spend cap (the connection's extra) for this task.
    :param max_monthly_amount: lower its monthly spend cap.
    :param wait_for_other_purchases: seconds to wait for another purchase in progress on the same account
        (any task, run or DAG) before failing; 0 refuses at once. Default 300.
    :param hook_params: extra keyword arguments for the hook (e.g. ``timeout``).

    """

    template_fields: Sequence[str] = (
        "postage_conn_id",
        "amount",
        "top_up_to",
        "max_amount",
        "postal_reporting_number",
        "max_daily_amount",
        "max_monthly_amount",
    )
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
        max_daily_amount: str | int | Decimal | None = None,
        max_monthly_amount: str | int | Decimal | None = None,
        wait_for_other_purchases: float = 300.0,
        hook_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if _funding.RECEIPTS_AS_ASSET_EVENTS:
            from airflow.providers.common.compat.assets import AssetAlias

            kwargs["outlets"] = [*(kwargs.get("outlets") or []), AssetAlias(name=_funding.RECEIPTS_ALIAS)]
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
        self.max_daily_amount = max_daily_amount
        self.max_monthly_amount = max_monthly_amount
        self.wait_for_other_purchases = float(wait_for_other_purchases)
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
        before: Balance | None,
        after: Balance | None,
        transaction_id: str | None,
    ) -> dict[str, Any]:
        return {
            "provider": hook.provider,
            "conn_id": self.postage_conn_id,
            **({"account": self.postal_reporting_number} if self.postal_reporting_number else {}),
            "status": status,
            "amount": None if amount is None else format_money(amount),
            "currency": None if before is None else before.currency,
            "balance_before": None if before is None else format_money(before.available),
            "balance_after": None if after is None else format_money(after.available),
            "transaction_id": transaction_id if hook.service.idempotent_purchases else None,
        }

    def _settle(
        self, context: Context, hook: PostageHook, ledger: AccountLedger, result: dict[str, Any], transaction_id: str
    ) -> None:
        """The purchase's outcome to the ledger, the breaker and a receipt (an asset event)."""
        ledger.update_transaction(transaction_id, status=result["status"], balance_after=result["balance_after"])
        ledger.succeeded()
        _funding.emit_receipt(context, hook.provider, hook.account_id, {**result, "account": hook.account_id})

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
        ledger = AccountLedger(hook.provider, hook.account_id)
        if pending is None and (earlier := ledger.completed(transaction_id)) is not None:
            # The ledger remembers it where the journal does not (2.11 deletes its Variable journal).
            self.log.info("This task instance has bought already (ledger entry %s): not buying again", earlier["id"])
            return self._from_ledger(hook, earlier, transaction_id)
        before = hook.get_balance()
        if target is not None and pending is None and before.available >= target:
            return self._skip(hook, before, target, Decimal(0))
        wait = 0.0 if self.purchase_dry_run else self.wait_for_other_purchases
        try:
            with ledger.lease(transaction_id, ttl=LEASE_TTL, wait=wait) as waited:
                if pending is not None:
                    return self._resume(hook, context, pending, before, transaction_id, journal, cap, ledger)
                if waited:  # another purchase on the account ended while this one waited: read again
                    before = hook.get_balance()
                return self._decide_and_buy(context, hook, ledger, journal, transaction_id, before, wanted, target, cap)
        except FundingRefused as refused:
            raise AirflowFailException(str(refused)) from None

    def _from_ledger(self, hook: PostageHook, entry: dict[str, Any], transaction_id: str) -> dict[str, Any]:
        recorded = {name: entry.get(name) for name in ("amount", "currency", "balance_before", "balance_after")}
        return {**self._result(hook, ALREADY_APPLIED, None, None, None, transaction_id), **recorded}

    def _skip(self, hook: PostageHook, before: Balance, target: Decimal, settling: Decimal) -> dict[str, Any]:
        self.log.info(
            "%s balance %s%s is at or above %s: nothing to buy",
            self.postage_conn_id,
            format_money(before.available),
            f" (+ {format_money(settling)} settling)" if settling else "",
            format_money(target),
        )
        return self._result(hook, SKIPPED, None, before, before, None)

    def _decide_and_buy(
        self,
        context: Context,
        hook: PostageHook,
        ledger: AccountLedger,
        journal: PurchaseJournal,
        transaction_id: str,
        before: Balance,
        wanted: Decimal | None,
        target: Decimal | None,
        cap: Decimal,
    ) -> dict[str, Any]:
        """Under the account's lease: the balance as of now plus what is still settling decides."""
        ledger.record_balance(before.account_type, before.available)
        if wanted is None:
            assert target is not None
            settling = ledger.settling(before.available)
            if before.available + settling >= target:
                return self._skip(hook, before, target, settling)
            wanted = self._cap(hook, self._top_up_amount(hook, target, before.available + settling), cap)

        if self.purchase_dry_run:
            self.log.info("Dry run: would buy %s %s on %s", format_money(wanted), before.currency, self.postage_conn_id)
            return self._result(hook, DRY_RUN, wanted, before, None, transaction_id)

        daily = None if self.max_daily_amount is None else parse_amount(self.max_daily_amount, field="max_daily_amount")
        monthly = (
            None
            if self.max_monthly_amount is None
            else parse_amount(self.max_monthly_amount, field="max_monthly_amount")
        )
        _funding.check(ledger, hook.funding_limits.lowered(daily, monthly), wanted, self.postage_conn_id)
        journal.put(
            {
                "conn_id": self.postage_conn_id,
                **({"account": self.postal_reporting_number} if self.postal_reporting_number else {}),
                "amount": format_money(wanted),
                "balance_before": format_money(before.available),
                "transaction_id": transaction_id,
            }
        )
        ti = context["ti"]
        ledger.record(
            {
                "conn_id": self.postage_conn_id,
                "amount": format_money(wanted),
                "currency": before.currency,
                "status": "pending",
                "transaction_id": transaction_id,
                "dag_id": ti.dag_id,
                "run_id": ti.run_id,
                "task_id": ti.task_id,
                "map_index": getattr(ti, "map_index", -1),
                "balance_before": format_money(before.available),
                "balance_after": None,
            }
        )
        return self._buy(context, hook, wanted, before, transaction_id, journal, ledger)

    def _buy(
        self,
        context: Context,
        hook: PostageHook,
        amount: Decimal,
        before: Balance,
        transaction_id: str,
        journal: PurchaseJournal,
        ledger: AccountLedger,
    ) -> dict[str, Any]:
        self.log.info("Buying %s %s on %s", format_money(amount), before.currency, self.postage_conn_id)
        try:
            hook.purchase_credit(amount, transaction_id=transaction_id, balance_before=before)
        except DuplicateTransactionError:
            result = self._result(hook, ALREADY_APPLIED, amount, before, self._balance_after(hook), transaction_id)
            journal.complete(result)
            self._settle(context, hook, ledger, result, transaction_id)
            return result
        except PostageAPIError as error:
            if 400 <= error.status < 500:
                journal.clear()  # refused outright: nothing was charged, a retry may buy afresh
                ledger.update_transaction(transaction_id, status="refused", reason=str(error)[:300])
                opened = ledger.refused(str(error))
                self.log.warning("Purchase refused (%d in a row on this account): %s", opened, error)
            else:
                ledger.update_transaction(transaction_id, status="unknown")
            raise
        except PostageTransportError as error:
            if not error.request_sent:
                journal.clear()  # it never left this machine: nothing was charged, a retry may buy afresh
                ledger.update_transaction(transaction_id, status="not_sent")
            else:
                ledger.update_transaction(transaction_id, status="unknown")
            raise
        except TransactionReplayedError as error:
            journal.clear()  # the outcome is known: nothing new was bought
            ledger.update_transaction(transaction_id, status="refused", reason="transaction id used before")
            raise AirflowFailException(str(error)) from None
        except PostageError:
            ledger.update_transaction(transaction_id, status="unknown")
            raise
        after = self._balance_after(hook)
        result = self._result(hook, PURCHASED, amount, before, after, transaction_id)
        journal.complete(result)
        self._settle(context, hook, ledger, result, transaction_id)
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
        ledger: AccountLedger,
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
            self._settle(context, hook, ledger, result, transaction_id)
            return result
        if hook.service.idempotent_purchases:
            # The service deduplicates on the key: resending the same purchase with the same key is safe.
            self.log.info(
                "Resending purchase %s of %s with the same transaction id", transaction_id, format_money(amount)
            )
            return self._buy(context, hook, amount, earlier, transaction_id, journal, ledger)
        raise AirflowFailException(
            f"An earlier try of this task started a {hook.service.hook_name} purchase of {format_money(amount)} on "
            f"{self.postage_conn_id!r} whose outcome is unknown: the balance was {format_money(before)} before it "
            f"and is {format_money(now.available)} now. Not buying again. Check the account; to buy anyway, "
            f"delete {where} and run the task again."
        )
