"""Cluster check: a low-balance asset watcher across triggerer kills (tests/cluster/test_kills.py).

An ``AssetWatcher`` with :class:`LowBalanceEventTrigger` on an account of its own (``acct_c2m_49``),
polling every ``POKE_SECONDS``; each event starts a run of this DAG, whose one task does nothing: no
top-up, so a low balance stays low. The test SIGKILLs the triggerer running the watcher while the
balance stays low (no second run may start: the fired state is in the asset's ``asset_state_store``),
and while it is high, then lowers it before the watcher is back (exactly one run). Airflow 3.3 only;
loaded by ``scripts/cluster`` as the DAG bundle ``cluster_checks``.
"""

from __future__ import annotations

import datetime as dt

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset, AssetWatcher

from airflow_provider_postage.triggers.postage import LowBalanceEventTrigger

CONN_ID = "acct_c2m_49"
LOW_WATER = "50.00"
#: Seconds between two polls of the watcher (tests/cluster/test_kills.py reads it).
POKE_SECONDS = 2

low_balance = Asset(
    name=f"{CONN_ID}_low_balance_watch",
    uri=f"postage://{CONN_ID}/low-balance-watch",
    watchers=[
        AssetWatcher(
            name=f"{CONN_ID}_low_balance_watcher",
            trigger=LowBalanceEventTrigger(postage_conn_id=CONN_ID, threshold=LOW_WATER, poke_interval=POKE_SECONDS),
        )
    ],
)

with DAG(
    dag_id="postage_cluster_low_balance_watch",
    schedule=[low_balance],
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    tags=["postage", "cluster-check"],
    doc_md=__doc__,
) as dag:
    EmptyOperator(task_id="noted")
