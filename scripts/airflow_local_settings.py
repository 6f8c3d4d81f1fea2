"""Cluster policy of the demo, the e2e test and the local cluster: the example DAGs poll balances every
``POSTAGE_POLL_SECONDS`` (1 s unless set) instead of every minute, so that a run ends in seconds and the
example DAGs stay as a deployment would copy them.

``scripts/demo`` and ``tests/e2e`` copy this file into ``$AIRFLOW_HOME/config/``, where every Airflow
process finds it; ``scripts/cluster`` puts ``scripts/`` on its processes' ``PYTHONPATH``. A deployment
can tune its poll intervals the same way, without editing DAG files (https://airflow.apache.org/docs/apache-airflow/stable/administration-and-deployment/cluster-policies.html).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _poll_seconds() -> float:
    raw = os.environ.get("POSTAGE_POLL_SECONDS", "1")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise ValueError(f"POSTAGE_POLL_SECONDS must be a positive number of seconds, got {raw!r}")
    return seconds


POLL_SECONDS = _poll_seconds()


def dag_policy(dag: Any) -> None:
    """In the example DAGs (not in DAGs that chose their own interval, such as the cluster suite's):
    balance sensors, mapped or not, and low-balance watchers (Airflow 3) poll every ``POLL_SECONDS``."""
    from airflow_provider_postage.sensors.postage import BalanceThresholdSensor
    from airflow_provider_postage.triggers.postage import LowBalanceEventTrigger

    if Path(dag.fileloc).parent.name != "example_dags":
        return
    for task in dag.tasks:
        if isinstance(task, BalanceThresholdSensor):
            task.poke_interval = POLL_SECONDS
        elif isinstance(getattr(task, "operator_class", None), type) and issubclass(
            task.operator_class, BalanceThresholdSensor
        ):
            task.partial_kwargs["poke_interval"] = POLL_SECONDS
    pending = [getattr(dag.timetable, "asset_condition", None)]
    while pending:
        item = pending.pop()
        pending.extend(getattr(item, "objects", None) or [])  # an all/any condition of assets
        for watcher in getattr(item, "watchers", None) or []:
            if isinstance(watcher.trigger, LowBalanceEventTrigger):
                watcher.trigger.poke_interval = POLL_SECONDS
