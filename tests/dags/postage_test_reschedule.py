"""The balance sensor in reschedule mode: each poke is a short run of the task, rescheduled in between."""

from __future__ import annotations

import datetime as dt

from airflow_provider_postage.sensors.postage import BalanceThresholdSensor

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow import DAG  # type: ignore[no-redef]

with DAG(
    dag_id="postage_wait_reschedule",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    params={"conn_id": "c2m_sandbox", "threshold": "50"},
) as dag:
    BalanceThresholdSensor(
        task_id="wait",
        postage_conn_id="{{ params.conn_id }}",
        threshold="{{ params.threshold }}",
        mode="reschedule",
        poke_interval=1,
        timeout=30,
    )
