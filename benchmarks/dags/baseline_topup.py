"""The pipeline's shape with EmptyOperator only: what a DAG file costs to parse without any provider
beyond Airflow's own (the baseline of "what our provider adds").

Parse-cost benchmark (benchmarks/bench_parse.py)."""

from __future__ import annotations

import datetime as dt

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG(
    dag_id="bench_baseline_topup",
    schedule="@hourly",
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
) as dag:
    fetch = EmptyOperator(task_id="fetch_balances")
    top_up = EmptyOperator(task_id="top_up")
    wait = EmptyOperator(task_id="wait_for_funds")
    fetch >> top_up >> wait
