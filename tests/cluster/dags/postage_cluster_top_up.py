"""Cluster check: one purchase per account, retried on another worker when its worker dies
(tests/cluster/test_kills.py SIGKILLs a worker while the sandbox holds the purchases' replies).

The plan is the run's ``accounts`` param: a list of ``{"postage_conn_id": ..., "amount": ...}`` (or
``"top_up_to"``), one mapped purchase each, retried twice. No schedule: only the runs the test starts.
Loaded by ``scripts/cluster`` as the DAG bundle ``cluster_checks``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_postage.operators.postage import PurchaseCreditOperator

with DAG(
    dag_id="postage_cluster_top_up",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    params={"accounts": Param([], type="array")},
    tags=["postage", "cluster-check"],
    doc_md=__doc__,
) as dag:

    @task
    def plan(**context: Any) -> list[dict[str, str]]:
        """Amounts as strings: they stay exact."""
        return [{key: str(value) for key, value in account.items()} for account in context["params"]["accounts"]]

    PurchaseCreditOperator.partial(
        task_id="top_up", max_amount="500", retries=2, retry_delay=dt.timedelta(seconds=5)
    ).expand_kwargs(plan())
