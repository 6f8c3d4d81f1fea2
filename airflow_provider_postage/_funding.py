"""The funding policy a purchase passes before anything is sent: spend caps per account and a circuit
breaker, both judged from the ledger (``_ledger``); and the receipt every purchase leaves as an asset event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import airflow

from airflow_provider_postage._ledger import DEFAULT_BREAKER_THRESHOLD, AccountLedger, FundingRefused
from airflow_provider_postage.protocol.errors import PostageConfigError
from airflow_provider_postage.protocol.money import format_money, parse_amount

#: The asset alias every purchase's receipt is attached to; downstream DAGs schedule on it or on an
#: account's own asset, ``postage://<provider>/<account>``.
RECEIPTS_ALIAS = "postage_receipts"
#: Airflow 3 only: 2.11's dataset aliases need their rows made by the DAG processor before a task may emit
#: through them (``dag.test()`` and fresh DAGs fail to flush). There the ledger is the receipt trail.
RECEIPTS_AS_ASSET_EVENTS = int(airflow.__version__.split(".")[0]) >= 3


@dataclass(frozen=True)
class FundingLimits:
    """Caps per account from the connection (extras ``max_daily_amount``, ``max_monthly_amount``,
    ``breaker_threshold``); an operator may lower them, never raise them."""

    max_daily_amount: Decimal | None = None
    max_monthly_amount: Decimal | None = None
    breaker_threshold: int = DEFAULT_BREAKER_THRESHOLD

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> FundingLimits:
        def amount(name: str) -> Decimal | None:
            value = extra.get(name)
            return None if value in (None, "") else parse_amount(str(value), field=name)

        threshold = extra.get("breaker_threshold")
        if threshold in (None, ""):
            breaker = DEFAULT_BREAKER_THRESHOLD
        elif str(threshold).strip().isdigit() and int(str(threshold)) >= 1:
            breaker = int(str(threshold))
        else:
            raise PostageConfigError("breaker_threshold", "must be a whole number of refusals, 1 or more")
        return cls(amount("max_daily_amount"), amount("max_monthly_amount"), breaker)

    def lowered(self, daily: Decimal | None, monthly: Decimal | None) -> FundingLimits:
        def lower(mine: Decimal | None, theirs: Decimal | None) -> Decimal | None:
            return theirs if mine is None else mine if theirs is None else min(mine, theirs)

        daily, monthly = lower(self.max_daily_amount, daily), lower(self.max_monthly_amount, monthly)
        return FundingLimits(daily, monthly, self.breaker_threshold)


def _next_month(day: dt.datetime) -> dt.datetime:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def check(ledger: AccountLedger, limits: FundingLimits, amount: Decimal, conn_id: str) -> None:
    """Refuse, before anything is sent, a purchase the breaker or a cap forbids; say what to do."""
    breaker = ledger.breaker()
    refusals = int(breaker.get("refusals", 0))
    if refusals >= limits.breaker_threshold:
        raise FundingRefused(
            f"purchases on {ledger.provider} account {ledger.account} are stopped: the last {refusals} were refused "
            f"(last at {breaker.get('last')}: {breaker.get('reason')}). Fix the cause (the card, the payment "
            f"method, the credit line), then close the breaker by deleting the Airflow Variable {ledger.breaker_key} "
            f"(UI: Admin > Variables; CLI: airflow variables delete {ledger.breaker_key})."
        )
    now = ledger.clock()
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    windows = (
        ("max_daily_amount", limits.max_daily_amount, day, day + dt.timedelta(days=1), "today"),
        ("max_monthly_amount", limits.max_monthly_amount, day.replace(day=1), _next_month(day), "this month"),
    )
    for name, cap, start, resets, when in windows:
        if cap is None:
            continue
        spent = ledger.spent_since(start)
        if spent + amount > cap:
            raise FundingRefused(
                f"buying {format_money(amount)} on {ledger.provider} account {ledger.account} would bring {when}'s "
                f"spending to {format_money(spent + amount)}, above {name} {format_money(cap)} (spent "
                f"{format_money(spent)} since {start.isoformat()}; the window resets at {resets.isoformat()}). "
                f"To allow more, raise {name} in the extras of connection {conn_id!r}."
            )


def receipt_asset_uri(provider: str, account: str) -> str:
    return f"postage://{quote(provider, safe='')}/{quote(account, safe='@:.-_')}"


def emit_receipt(context: Any, provider: str, account: str, receipt: dict[str, Any]) -> None:
    """A purchase's receipt as an asset event on the account's asset (through the receipts alias), so
    downstream DAGs, alerts and the Postage page can react. Nothing to do outside a task run."""
    events = context.get("outlet_events") if hasattr(context, "get") else None
    if events is None or not RECEIPTS_AS_ASSET_EVENTS:
        return
    from airflow.providers.common.compat.assets import Asset, AssetAlias

    uri = receipt_asset_uri(provider, account)
    asset = Asset(uri=uri, name=f"postage {provider} {account}")
    events[AssetAlias(name=RECEIPTS_ALIAS)].add(asset, extra=receipt)
