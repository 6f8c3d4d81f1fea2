"""Buy credit, then wait with the deferrable sensor until it shows: the smallest funding pipeline.

Connection ids and amounts come from params so the tests can point one DAG at either API."""

from __future__ import annotations

import datetime as dt

from airflow_provider_postage.operators.postage import FetchBalancesOperator, PurchaseCreditOperator
from airflow_provider_postage.sensors.postage import BalanceThresholdSensor

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow import DAG  # type: ignore[no-redef]

with DAG(
    dag_id="postage_purchase_then_wait",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    params={"conn_id": "c2m_sandbox", "top_up_to": "50", "threshold": "50"},
) as dag:
    fetch = FetchBalancesOperator(task_id="fetch", postage_conn_ids="{{ params.conn_id }}")
    buy = PurchaseCreditOperator(
        task_id="buy",
        postage_conn_id="{{ params.conn_id }}",
        top_up_to="{{ params.top_up_to }}",
        retries=2,
        retry_delay=dt.timedelta(seconds=0),
    )
    wait = BalanceThresholdSensor(
        task_id="wait",
        postage_conn_id="{{ params.conn_id }}",
        threshold="{{ params.threshold }}",
        deferrable=True,
        poke_interval=1,
        timeout=60,
    )
    fetch >> buy >> wait
