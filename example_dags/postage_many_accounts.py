"""
### Many accounts

The accounts come from the Airflow Variable `postage_accounts` (JSON): a list of
`{"postage_conn_id": ..., "top_up_to": ...}` (a plain connection id uses `default_top_up_to`).
Dynamic task mapping reads and tops up each account in its own task instance, so one failing account
(bad credentials, a declined card) does not stop the others. The run ends with a report of every
account; the report fails the run, after listing everything, when any account failed.

Example: `airflow variables set postage_accounts '["postage_click2mail", "postage_pitney_bowes"]'`
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.common.compat.sdk import DAG, Param, TriggerRule, Variable, task

from airflow_provider_postage.operators.postage import FetchBalancesOperator, PurchaseCreditOperator

CLICK2MAIL_CONN_ID = "postage_click2mail"
PITNEY_BOWES_CONN_ID = "postage_pitney_bowes"

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
    def accounts(params: dict[str, Any] | None = None) -> list[dict[str, str]]:
        """Read at run time (never at parse time) from the Variable."""
        assert params is not None
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
                    "top_up_to": str(entry.get("top_up_to", params["default_top_up_to"])),
                }
            )
        return plan

    @task
    def conn_ids(plan: list[dict[str, str]]) -> list[str]:
        return [account["postage_conn_id"] for account in plan]

    plan = accounts()
    balances = FetchBalancesOperator.partial(task_id="balances").expand(postage_conn_ids=conn_ids(plan))
    top_up = PurchaseCreditOperator.partial(task_id="top_up", max_amount="500").expand_kwargs(plan)
    balances >> top_up

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def report(plan: list[dict[str, str]], purchases: list[dict[str, Any]]) -> dict[str, Any]:
        """One line per account; failed accounts are those whose top-up left no result."""
        done = {p["conn_id"]: p for p in purchases}
        failed = [a["postage_conn_id"] for a in plan if a["postage_conn_id"] not in done]
        for account in plan:
            p = done.get(account["postage_conn_id"])
            line = "FAILED (see its top_up task log)" if p is None else f"{p['status']} {p['amount'] or ''}"
            print(f"{account['postage_conn_id']:<28} target {account['top_up_to']:>10}  {line}")
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(plan)} accounts failed: {', '.join(failed)}")
        return {"accounts": len(plan), "results": list(purchases)}

    report(plan, top_up.output)
