"""Dynamic task mapping: balances of several connections, and one purchase per map index."""

from __future__ import annotations

import datetime as dt

from airflow_provider_postage.operators.postage import FetchBalancesOperator, PurchaseCreditOperator

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow import DAG  # type: ignore[no-redef]

with DAG(dag_id="postage_mapped", schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False) as dag:
    FetchBalancesOperator.partial(task_id="fetch").expand(
        postage_conn_ids=["c2m_sandbox", ["pb_sandbox", "pb_sandbox_postage_only"]]
    )
    PurchaseCreditOperator.partial(task_id="buy", postage_conn_id="pb_sandbox").expand(amount=["10", "20"])
