"""
### Many accounts

The accounts come from the Airflow Variable `postage_accounts` (JSON): a list of
`{"postage_conn_id": ..., "top_up_to": ...}` (a plain connection id uses `default_top_up_to`).
Dynamic task mapping reads each account, then a mapped task group tops it up and waits (deferrable)
until the funds are visible, per account, so one failing account (bad credentials, a declined card)
does not stop the others. Waiting matters: balances do not show purchases still in progress, and the
next hourly run must not buy again what this run bought. The run ends with a report of every account;
the report fails the run, after listing everything, when any account failed.

Example: `airflow variables set postage_accounts '["postage_click2mail", "postage_pitney_bowes"]'`
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.common.compat.sdk import DAG, Param, TriggerRule, Variable, task, task_group

from airflow_provider_postage.operators.postage import FetchBalancesOperator, PurchaseCreditOperator
from airflow_provider_postage.sensors.postage import BalanceThresholdSensor

CLICK2MAIL_CONN_ID = "postage_click2mail"
PITNEY_BOWES_CONN_ID = "postage_pitney_bowes"
#: Seconds between balance polls (the demo and the tests shorten it with a cluster policy).
POKE_SECONDS = 60

with DAG(
    dag_id="postage_many_accounts",
    description="Top up every account listed in the postage_accounts Variable",
    schedule="0 * * * *",
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    params={"default_top_up_to": Param("100.00", type="string")},
    default_args={"retries": 1, "retry_delay": dt.timedelta(seconds=30)},
    tags=["postage", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def accounts(**context: Any) -> list[dict[str, str]]:
        """Read at run time (never at parse time) from the Variable."""
        listed = Variable.get("postage_accounts", None, deserialize_json=True) or [
            CLICK2MAIL_CONN_ID,
            PITNEY_BOWES_CONN_ID,
        ]
        plan = []
        for entry in listed:
            if isinstance(entry, str):
                entry = {"postage_conn_id": entry}
            plan.append(
                {
                    "postage_conn_id": entry["postage_conn_id"],
                    "top_up_to": str(entry.get("top_up_to", context["params"]["default_top_up_to"])),
                }
            )
        return plan

    @task
    def conn_ids(plan: list[dict[str, str]]) -> list[str]:
        return [account["postage_conn_id"] for account in plan]

    @task_group
    def fund(postage_conn_id: str, top_up_to: str) -> None:
        """One account: top up, then wait until the funds show."""
        top_up = PurchaseCreditOperator(
            task_id="top_up", postage_conn_id=postage_conn_id, top_up_to=top_up_to, max_amount="500"
        )
        wait = BalanceThresholdSensor(
            task_id="wait_for_funds",
            postage_conn_id=postage_conn_id,
            threshold=top_up_to,
            deferrable=True,
            poke_interval=POKE_SECONDS,
            timeout=2 * 60 * 60,
            retries=0,
        )
        top_up >> wait

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def report(plan: list[dict[str, str]], ti: Any = None) -> dict[str, Any]:
        """One line per account; an account failed when its top-up or its wait did not succeed."""
        indexes = list(range(len(plan)))
        purchases = ti.xcom_pull(task_ids="fund.top_up", map_indexes=indexes) or []
        waits = ti.xcom_pull(task_ids="fund.wait_for_funds", map_indexes=indexes) or []
        failed = []
        for account, purchase, balance in zip(plan, purchases, waits, strict=False):
            if purchase is None or balance is None:
                failed.append(account["postage_conn_id"])
                line = "FAILED (see the fund task group's logs)"
            else:
                line = f"{purchase['status']:<16} {purchase['amount'] or '':>8}  now {balance['available']}"
            print(f"{account['postage_conn_id']:<28} target {account['top_up_to']:>10}  {line}")
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(plan)} accounts failed: {', '.join(failed)}")
        return {"accounts": len(plan), "results": purchases}

    plan = accounts()
    balances = FetchBalancesOperator.partial(task_id="balances").expand(postage_conn_ids=conn_ids(plan))
    funded = fund.expand_kwargs(plan)
    balances >> funded >> report(plan)
