"""
### Scheduled top-up

Every morning: read the balances of every configured account (Click2Mail credit and the Pitney Bowes
postage account), top up each account that is under its target (`top_up_to`), wait on the triggerer
(deferrable sensor, no worker slot held) until the new funds are visible, and finish with a summary of
what was bought and the balances after.

Configure the accounts in the `accounts` param (or when triggering a run): a list of
`{"postage_conn_id": ..., "top_up_to": ...}`. Purchases are capped by `max_amount` and safe under
task retries: a retried top-up never buys twice.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_postage.operators.postage import FetchBalancesOperator, PurchaseCreditOperator
from airflow_provider_postage.sensors.postage import BalanceThresholdSensor

CLICK2MAIL_CONN_ID = "postage_click2mail"
PITNEY_BOWES_CONN_ID = "postage_pitney_bowes"
#: Seconds between balance polls (the demo and the tests shorten it with a cluster policy).
POKE_SECONDS = 60
WAIT_TIMEOUT_SECONDS = 2 * 60 * 60

ACCOUNTS = [
    {"postage_conn_id": CLICK2MAIL_CONN_ID, "top_up_to": "100.00"},
    {"postage_conn_id": PITNEY_BOWES_CONN_ID, "top_up_to": "250"},
]

with DAG(
    dag_id="postage_scheduled_top_up",
    description="Top up every configured postage account that is under its target",
    schedule="0 6 * * *",
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    params={"accounts": Param(ACCOUNTS, type="array", description="accounts and their top-up targets")},
    default_args={"retries": 2, "retry_delay": dt.timedelta(seconds=30)},
    tags=["postage", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def accounts(**context: Any) -> list[dict[str, str]]:
        """The top-up plan from the run's params, as strings (amounts stay exact)."""
        return [
            {"postage_conn_id": a["postage_conn_id"], "top_up_to": str(a["top_up_to"])}
            for a in context["params"]["accounts"]
        ]

    @task
    def conn_ids(plan: list[dict[str, str]]) -> list[str]:
        return [account["postage_conn_id"] for account in plan]

    @task
    def targets(plan: list[dict[str, str]]) -> list[dict[str, str]]:
        return [{"postage_conn_id": a["postage_conn_id"], "threshold": a["top_up_to"]} for a in plan]

    @task
    def summary(purchases: list[dict[str, Any]], balances: list[dict[str, Any]]) -> dict[str, Any]:
        """What was bought and what the accounts hold now (also the run's XCom)."""
        # A mapped XCom read by index up to its length: iterating it would ask for one item past the end.
        purchases = [purchases[i] for i in range(len(purchases))]
        balances = list(balances)
        bought = [p for p in purchases if p["status"] in ("purchased", "already_applied")]
        for p in purchases:
            print(f"{p['conn_id']:<24} {p['status']:<16} {p['amount'] or '-':>10} {p['currency']}")
        for b in balances:
            print(f"{b['conn_id']:<24} {b['account_type']:<16} {b['available']:>10} {b['currency']}")
        return {"purchases": purchases, "balances": balances, "bought": len(bought)}

    plan = accounts()
    ids = conn_ids(plan)
    before = FetchBalancesOperator(task_id="balances_before", postage_conn_ids=ids)
    top_up = PurchaseCreditOperator.partial(task_id="top_up", max_amount="500").expand_kwargs(plan)
    wait = BalanceThresholdSensor.partial(
        task_id="wait_for_funds",
        deferrable=True,
        poke_interval=POKE_SECONDS,
        timeout=WAIT_TIMEOUT_SECONDS,
        retries=0,
    ).expand_kwargs(targets(plan))
    after = FetchBalancesOperator(task_id="balances_after", postage_conn_ids=ids)
    before >> top_up >> wait >> after
    summary(top_up.output, after.output)
