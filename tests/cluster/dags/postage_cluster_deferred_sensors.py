"""Cluster check: many deferred sensors at once (tests/cluster/test_kill.py kills a triggerer under them).

One mapped ``BalanceThresholdSensor`` per entry of the run's ``conn_ids`` param (a connection may come more
than once: several sensors waiting on one account), each deferred to the triggerers until the account's
balance reaches ``threshold``. Loaded by ``scripts/cluster`` as the DAG bundle ``cluster_checks``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_postage.sensors.postage import BalanceThresholdSensor

#: Seconds between two polls of one sensor's trigger. The test's bound on a triggerer's failover is the
#: health-check threshold plus two of these: a triggerer taking 150 triggers over needs about 10 s (on a
#: busy 2-CPU machine) to start them, read their connections and poll once.
POKE_SECONDS = 8

with DAG(
    dag_id="postage_cluster_deferred_sensors",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    params={"conn_ids": Param([], type="array"), "threshold": Param("1000.00", type="string")},
    tags=["postage", "cluster-check"],
    doc_md=__doc__,
) as dag:

    @task
    def conn_ids(**context: Any) -> list[str]:
        return list(context["params"]["conn_ids"])

    BalanceThresholdSensor.partial(
        task_id="wait",
        threshold="{{ params.threshold }}",
        deferrable=True,
        poke_interval=POKE_SECONDS,
        timeout=30 * 60,
        retries=0,
    ).expand(postage_conn_id=conn_ids())
