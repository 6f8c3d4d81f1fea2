"""
### Low-balance watch: auto-recharge, event-driven

Click2Mail has no auto-recharge and no low-balance alert; most users' cron scripts poll blindly. This
DAG tops the account up when, and only when, its balance falls below a low-water mark:

- **Airflow 3**: an `AssetWatcher` runs `LowBalanceEventTrigger` on the triggerer. Each time the
  balance falls below `LOW_WATER` (once per fall), the asset gets an event and this DAG runs: top up
  to `TARGET`, then wait (deferrable) until the new funds show, so the watcher re-arms.
- **Airflow 2.11** (no watchers): the same DAG runs continuously (`@continuous`, one run at a time),
  each run first waiting on the triggerer with a deferrable sensor (`condition="below"`) for the
  balance to fall below the mark.

Either way no worker slot is held while nothing happens.
"""

from __future__ import annotations

import datetime as dt

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_postage.operators.postage import PurchaseCreditOperator
from airflow_provider_postage.sensors.postage import BalanceThresholdSensor

CONN_ID = "postage_click2mail"
LOW_WATER = "50.00"
TARGET = "100.00"
#: Seconds between balance polls (the demo and the tests shorten it with a cluster policy).
POKE_SECONDS = 60

try:  # Airflow 3: event-driven scheduling on an asset watched by the triggerer
    from airflow.sdk import Asset, AssetWatcher

    from airflow_provider_postage.triggers.postage import LowBalanceEventTrigger

    low_balance = Asset(
        name=f"{CONN_ID}_low_balance",
        uri=f"postage://{CONN_ID}/low-balance",
        watchers=[
            AssetWatcher(
                name=f"{CONN_ID}_low_balance_watcher",
                trigger=LowBalanceEventTrigger(
                    postage_conn_id=CONN_ID, threshold=LOW_WATER, poke_interval=POKE_SECONDS
                ),
            )
        ],
    )
    schedule: list[Asset] | str = [low_balance]
    EVENT_DRIVEN = True
except ImportError:  # Airflow 2.11
    schedule = "@continuous"
    EVENT_DRIVEN = False

with DAG(
    dag_id="postage_low_balance_top_up",
    description=f"Top {CONN_ID} up to {TARGET} whenever it falls below {LOW_WATER}",
    schedule=schedule,
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["postage", "example"],
    doc_md=__doc__,
) as dag:
    top_up = PurchaseCreditOperator(
        task_id="top_up",
        postage_conn_id=CONN_ID,
        top_up_to=TARGET,
        retries=2,
        retry_delay=dt.timedelta(seconds=30),
    )
    # Done once the balance is back at or above LOW_WATER, the level that re-arms the watcher: waiting
    # for TARGET could wait forever while spending goes on.
    funds_visible = BalanceThresholdSensor(
        task_id="wait_for_funds",
        postage_conn_id=CONN_ID,
        threshold=LOW_WATER,
        deferrable=True,
        poke_interval=POKE_SECONDS,
        timeout=2 * 60 * 60,
    )
    if not EVENT_DRIVEN:
        low = BalanceThresholdSensor(
            task_id="wait_for_low_balance",
            postage_conn_id=CONN_ID,
            threshold=LOW_WATER,
            condition="below",
            deferrable=True,
            poke_interval=POKE_SECONDS,
            timeout=7 * 24 * 60 * 60,
        )
        low >> top_up
    top_up >> funds_visible
