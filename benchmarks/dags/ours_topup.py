"""Keep a Pitney Bowes postage account funded, with this provider: read, top up, wait until it shows.

Parse-cost benchmark (benchmarks/bench_parse.py); the same pipeline as http_topup.py."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG

from airflow_provider_postage.operators.postage import FetchBalancesOperator, PurchaseCreditOperator
from airflow_provider_postage.sensors.postage import BalanceThresholdSensor

with DAG(
    dag_id="bench_ours_topup",
    schedule="@hourly",
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
) as dag:
    fetch = FetchBalancesOperator(task_id="fetch_balances", postage_conn_ids="pb_production")
    top_up = PurchaseCreditOperator(
        task_id="top_up", postage_conn_id="pb_production", top_up_to="250", max_amount="500"
    )
    wait = BalanceThresholdSensor(
        task_id="wait_for_funds",
        postage_conn_id="pb_production",
        threshold="250",
        deferrable=True,
        poke_interval=60,
        timeout=3600,
    )
    fetch >> top_up >> wait
