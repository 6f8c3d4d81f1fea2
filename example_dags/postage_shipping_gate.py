"""
### Shipping gate

A shipping job (the stand-in task `ship`: replace it with yours) runs only once the Pitney Bowes
postage account holds enough for it. When it does not, the account is refilled from the payment
method on file (the PB Line of Credit) up to the job's cost, and a deferrable sensor waits on the
triggerer until the refill is visible. When the account already holds enough, nothing is bought and
the sensor passes at its first poke.

Params: `postage_conn_id` and `job_cost` (a decimal string, the postage the job will spend).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_postage.operators.postage import PurchaseCreditOperator
from airflow_provider_postage.sensors.postage import BalanceThresholdSensor

PITNEY_BOWES_CONN_ID = "postage_pitney_bowes"
#: Seconds between balance polls (the demo and the tests shorten it with a cluster policy).
POKE_SECONDS = 60
WAIT_TIMEOUT_SECONDS = 2 * 60 * 60

with DAG(
    dag_id="postage_shipping_gate",
    description="Run a shipping job only when the postage account can pay for it",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    params={
        "postage_conn_id": Param(PITNEY_BOWES_CONN_ID, type="string"),
        "job_cost": Param("180.00", type="string", description="postage the job will spend, e.g. 180.00"),
    },
    tags=["postage", "example"],
    doc_md=__doc__,
) as dag:
    refill = PurchaseCreditOperator(
        task_id="refill_if_short",
        postage_conn_id="{{ params.postage_conn_id }}",
        top_up_to="{{ params.job_cost }}",
        max_amount="1000",
        retries=2,
        retry_delay=dt.timedelta(seconds=30),
    )
    enough = BalanceThresholdSensor(
        task_id="wait_for_postage",
        postage_conn_id="{{ params.postage_conn_id }}",
        threshold="{{ params.job_cost }}",
        account_type="postage",
        deferrable=True,
        poke_interval=POKE_SECONDS,
        timeout=WAIT_TIMEOUT_SECONDS,
    )

    @task
    def ship(balance: dict[str, str], **context: Any) -> str:
        """Stand-in for the real shipping or mailing job."""
        message = (
            f"shipping job with postage {context['params']['job_cost']} runs; the account holds {balance['available']}"
        )
        print(message)
        return message

    refill >> enough
    ship(enough.output)
