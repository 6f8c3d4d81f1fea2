"""Purchases whose task retries at once (retry_delay 0), for the tests of idempotency across tries.

``postage_retry_amount`` buys ``params.value`` and ``postage_retry_top_up`` tops up to ``params.value``, on
``params.conn_id``, with one retry. The hook makes four attempts of each read with almost no backoff, so
that a test can exhaust them quickly."""

from __future__ import annotations

import datetime as dt

from airflow_provider_postage.operators.postage import PurchaseCreditOperator

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow import DAG  # type: ignore[no-redef]

FAST_HOOK = {"max_attempts": 4, "backoff_initial": 0.01, "backoff_max": 0.02}

for mode in ("amount", "top_up_to"):
    with DAG(
        dag_id=f"postage_retry_{'amount' if mode == 'amount' else 'top_up'}",
        schedule=None,
        start_date=dt.datetime(2026, 1, 1),
        catchup=False,
        params={"conn_id": "c2m_sandbox", "value": "20"},
    ) as dag:
        PurchaseCreditOperator(
            task_id="buy",
            postage_conn_id="{{ params.conn_id }}",
            **{mode: "{{ params.value }}"},
            hook_params=FAST_HOOK,
            retries=1,
            retry_delay=dt.timedelta(seconds=0),
        )
    globals()[dag.dag_id] = dag
