"""On the cluster (CeleryExecutor, two workers, two triggerers, PostgreSQL, Redis): every process is
healthy and every example DAG succeeds, the many-accounts one with 100 accounts."""

from __future__ import annotations

import subprocess
import time
from decimal import Decimal
from pathlib import Path

import pytest

from cluster.helpers import MEASURED, SCRIPTS, Cluster, wait_until

#: A whole DAG run on the cluster takes minutes, more than the suite's default per-test timeout.
pytestmark = pytest.mark.timeout(900)


def test_status_shows_every_process_healthy(cluster: Cluster) -> None:
    done = subprocess.run([str(SCRIPTS / "cluster"), "status"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ["postgresql", *cluster.ops.PROCESSES]:
        assert any(line.startswith(name) and " healthy " in line for line in done.stdout.splitlines()), done.stdout


def _deferred(cluster: Cluster, dag_id: str, runs: list[dict], task_id: str) -> bool:
    """A triggerer log next to the task's log: the sensor really deferred and a triggerer ran it."""
    return any(list(cluster.task_logs(dag_id, run["dag_run_id"], task_id).rglob("*.log.trigger.*")) for run in runs)


def test_scheduled_top_up_buys_waits_on_a_triggerer_and_reports(cluster: Cluster) -> None:
    """Unpausing starts the latest daily run too: the assertions hold for both runs together."""
    dag_id, receipts = "postage_scheduled_top_up", "postage_purchase_receipts"
    cluster.set_balance(cluster.world.C2M_CONN_ID, "5.00")
    cluster.set_balance(cluster.world.PB_CONN_ID, "12.50")
    cluster.settle(8)  # longer than a worker takes to start the sensor: it misses the funds and defers
    known_receipts = {run["dag_run_id"] for run in cluster.runs(receipts)}
    cluster.set_paused(receipts, False)  # runs on the purchases' asset events (asset alias postage_receipts)
    try:
        before = cluster.counters()
        cluster.trigger(dag_id)
        runs = cluster.wait_runs(dag_id, 300)
        receipt_runs = wait_until(
            lambda: [r for r in cluster.runs(receipts) if r["dag_run_id"] not in known_receipts], 60, "a receipts run"
        )
        receipt_runs = cluster.wait_runs(receipts, 120, {r["dag_run_id"] for r in receipt_runs})
    finally:
        cluster.set_paused(receipts, True)
        cluster.set_paused(dag_id, True)
        cluster.settle(0)
    assert {run["state"] for run in runs} == {"success"}
    assert cluster.charges(before) == {"demo-user": ["95.00"], "900001": ["238.00"]}
    assert _deferred(cluster, dag_id, runs, "wait_for_funds"), "the sensor never deferred"
    assert {run["state"] for run in receipt_runs} == {"success"}
    assert {run["run_type"] for run in receipt_runs} == {"asset_triggered"}


def test_shipping_gate_refills_from_the_line_of_credit(cluster: Cluster) -> None:
    dag_id = "postage_shipping_gate"
    cluster.set_balance(cluster.world.PB_CONN_ID, "250.50")
    cluster.settle(8)
    try:
        before = cluster.counters()
        run_id = cluster.trigger(dag_id, {"job_cost": "400.00"})
        runs = cluster.wait_runs(dag_id, 240, {run_id})
    finally:
        cluster.set_paused(dag_id, True)
        cluster.settle(0)
    assert [run["state"] for run in runs] == ["success"]
    refills = cluster.counters()["refills"][len(before["refills"]) :]
    assert [(r["amount"], r["source"]) for r in refills] == [("150.00", "line_of_credit")]
    assert _deferred(cluster, dag_id, runs, "wait_for_postage"), "the sensor never deferred"
    assert cluster.task_instances(dag_id, run_id, "ship")[-1]["state"] == "success"


def test_many_accounts_with_100_accounts(cluster: Cluster) -> None:
    """The Variable lists 100 accounts (50 Click2Mail, 50 Pitney Bowes merchants): 100 mapped top-ups and
    waits, each account bought exactly once, up to the default target of 100.00."""
    dag_id = "postage_many_accounts"
    accounts = cluster.world.ACCOUNTS
    assert len(accounts) == 100
    reply = cluster.api.patch(
        "/api/v2/variables/postage_accounts", json={"key": "postage_accounts", "value": _json(accounts)}
    )
    assert reply.status_code == 200, reply.text
    for conn_id in accounts:
        start = cluster.world.START_C2M_BALANCE if "c2m" in conn_id else cluster.world.START_PB_BALANCE
        cluster.set_balance(conn_id, start)
    cluster.forget_purchases(accounts)  # a cluster used before: the accounts start over
    began = time.monotonic()
    before = cluster.counters()
    # Hourly: unpausing starts the latest hour's run unless it has one already; then a manual run.
    known = {run["dag_run_id"] for run in cluster.runs(dag_id)}
    cluster.set_paused(dag_id, False)
    try:
        time.sleep(3)
        new = [run for run in cluster.runs(dag_id) if run["dag_run_id"] not in known]
        if not new:
            cluster.trigger(dag_id)
        runs = [run for run in cluster.wait_runs(dag_id, 420) if run["dag_run_id"] not in known]
    finally:
        cluster.set_paused(dag_id, True)
    took = time.monotonic() - began
    assert [run["state"] for run in runs] == ["success"]
    run_id = runs[0]["dag_run_id"]
    tops = cluster.task_instances(dag_id, run_id, "fund.top_up")
    waits = cluster.task_instances(dag_id, run_id, "fund.wait_for_funds")
    assert sorted(tops) == sorted(waits) == list(range(100))
    assert {ti["state"] for ti in [*tops.values(), *waits.values()]} == {"success"}
    charges = cluster.charges(before)
    expected = {cluster.world.account_of(c)[1]: ["95.00" if "c2m" in c else "88.00"] for c in accounts}
    assert charges == expected
    hosts = {ti["hostname"] for ti in tops.values()}
    assert {cluster.ops.airflow_hostname(w) for w in ("worker-1", "worker-2")} <= hosts  # both workers took some
    MEASURED["many accounts, 100 accounts"] = (
        f"run succeeded in {took:.0f} s; 100 purchases, one per account, {_spent(charges)} in all"
    )


def test_low_balance_watch_starts_a_run_when_the_balance_falls(cluster: Cluster) -> None:
    """Airflow 3's event-driven shape: the asset watcher, on one of the triggerers, starts the run."""
    dag_id = "postage_low_balance_top_up"
    cluster.set_balance(cluster.world.C2M_CONN_ID, "100.00")
    known = {run["dag_run_id"] for run in cluster.runs(dag_id)}
    before = cluster.counters()
    cluster.set_paused(dag_id, False)
    try:
        wait_until(lambda: _watching(cluster, dag_id), 60, "the asset watcher on a triggerer")
        time.sleep(2)  # 100.00 is above the low-water mark: armed, no run
        assert [run for run in cluster.runs(dag_id) if run["dag_run_id"] not in known] == []
        cluster.set_balance(cluster.world.C2M_CONN_ID, "30.00")
        new = wait_until(
            lambda: [run for run in cluster.runs(dag_id) if run["dag_run_id"] not in known], 120, "the watcher's run"
        )
        run_id = new[0]["dag_run_id"]
        top_up = wait_until(
            lambda: cluster.task_instances(dag_id, run_id, "top_up").get(-1, {}).get("state") in ("success", "failed"),
            120,
            "the top-up",
        )
        assert top_up
        result = cluster.xcom(dag_id, run_id, "top_up")
        if result["status"] != "purchased":  # its sensor would wait for funds that never come: end it now
            cluster.api.patch(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", json={"state": "failed"})
            raise AssertionError(f"the balance fell to 30.00 under the 100.00 target and nothing was bought: {result}")
        runs = cluster.wait_runs(dag_id, 120, {run_id})
    finally:
        cluster.set_paused(dag_id, True)
    assert [(run["state"], run["run_type"]) for run in runs] == [("success", "asset_triggered")]
    assert cluster.charges(before) == {"demo-user": ["70.00"]}


def _watching(cluster: Cluster, dag_id: str) -> bool:
    """The DAG's asset watcher (a LowBalanceEventTrigger) runs on a triggerer."""
    rows = cluster.sql(
        "SELECT count(*) FROM trigger WHERE classpath LIKE %s AND triggerer_id IS NOT NULL", "%.LowBalanceEventTrigger"
    )
    return bool(rows[0][0])


def test_pb_spend_report_lists_this_months_refills(cluster: Cluster) -> None:
    dag_id = "postage_pb_spend_report"
    folder = cluster.ops.HOME / "reports"
    month = time.strftime("%Y-%m", time.gmtime())
    try:
        run_id = cluster.trigger(dag_id, {"merchants": ["900001"], "month": month, "output_folder": str(folder)})
        runs = cluster.wait_runs(dag_id, 240)  # unpausing may start the latest monthly run as well
    finally:
        cluster.set_paused(dag_id, True)
    assert {run["state"] for run in runs} == {"success"}
    summary = cluster.xcom(dag_id, run_id, "report")
    assert summary["month"] == month
    assert summary["count"] >= 2 and Decimal(summary["total"]) >= Decimal("388.00")  # 238.00 + 150.00 above
    assert "900001" in Path(summary["csv"]).read_text()


#: The example DAGs the tests above run; any other one in example_dags/ is run with its defaults below.
COVERED = {
    "postage_scheduled_top_up",
    "postage_purchase_receipts",
    "postage_shipping_gate",
    "postage_many_accounts",
    "postage_low_balance_top_up",
    "postage_pb_spend_report",
}


def test_every_other_example_dag_succeeds_with_its_defaults(cluster: Cluster) -> None:
    dags = cluster.api.get("/api/v2/dags", params={"limit": 1000}).json()["dags"]
    examples = {d["dag_id"] for d in dags if d.get("bundle_name") == "postage_examples"}
    files = {p.stem for p in (cluster.ops.ROOT / "example_dags").glob("*.py") if not p.name.startswith("_")}
    assert len(examples) >= len(files), f"example DAG files {sorted(files)}, DAGs {sorted(examples)}"
    assert not cluster.api.get("/api/v2/importErrors").json()["import_errors"]
    others = sorted(examples - COVERED)
    failed = {}
    for dag_id in others:
        try:
            cluster.trigger(dag_id)
            runs = cluster.wait_runs(dag_id, 240)
        finally:
            cluster.set_paused(dag_id, True)
        if {run["state"] for run in runs} != {"success"}:
            failed[dag_id] = [run["state"] for run in runs]
    MEASURED["example DAGs"] = f"{len(examples)} on the cluster; run with their defaults: {others or 'none'}"
    assert not failed, failed


def _json(value: object) -> str:
    import json

    return json.dumps(value)


def _spent(charges: dict[str, list[str]]) -> str:
    return f"{sum(Decimal(a) for amounts in charges.values() for a in amounts):,}"
