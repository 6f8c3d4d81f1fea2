"""Losing a machine's worth of process on the cluster: a Celery worker SIGKILLed while purchases are in
flight, a triggerer SIGKILLed under 200 deferred sensors. Both report measured numbers (MEASURED)."""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil
import pytest

from cluster.helpers import MEASURED, Cluster, wait_until

#: A whole DAG run on the cluster takes minutes, more than the suite's default per-test timeout.
pytestmark = pytest.mark.timeout(900)

#: The sandbox holds each purchase's reply this long after applying it: the purchase is in flight.
HOLD_SECONDS = 15


def _kill(cluster: Cluster, name: str) -> list[psutil.Process]:
    """SIGKILL a process and all its descendants at once (the machine running it is gone)."""
    pid = cluster.ops.pid_of(name)
    assert pid is not None, f"{name} is not running"
    family = cluster.ops.kill_tree(pid, signal.SIGKILL)
    _, alive = psutil.wait_procs(family, timeout=10)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], f"{name} survived SIGKILL: {alive}"
    return family


def test_worker_killed_mid_purchase_retries_on_the_other_worker_and_charges_once(cluster: Cluster) -> None:
    dag_id = "postage_cluster_top_up"
    world = cluster.world
    accounts = [world.c2m_conn_id(i) for i in range(4)] + [world.pb_conn_id(i) for i in range(4)]
    plan = [{"postage_conn_id": c, "amount": "40.00" if "c2m" in c else "40"} for c in accounts]
    cluster.settle(0)
    for endpoint in ("c2m_purchase", "pb_fund"):
        fault = {"endpoint": endpoint, "delay": HOLD_SECONDS, "apply": True, "times": 4}
        assert cluster.sandbox.post("/_sandbox/faults", json=fault).status_code == 200
    before = cluster.counters()
    victim = survivor = ""
    try:
        run_id = cluster.trigger(dag_id, {"accounts": plan})

        def in_flight_by_worker() -> dict[str, list[int]] | None:
            """Top-ups running whose purchase the sandbox has applied (its reply held), per worker."""
            charged = cluster.charges(before)
            tops = cluster.task_instances(dag_id, run_id, "top_up")
            found: dict[str, list[int]] = {}
            for index, ti in tops.items():
                if ti["state"] == "running" and world.account_of(plan[index]["postage_conn_id"])[1] in charged:
                    found.setdefault(ti["hostname"], []).append(index)
            return found or None

        in_flight = wait_until(in_flight_by_worker, 180, "a purchase in flight")
        time.sleep(2)  # let the other top-ups reach the sandbox too
        in_flight = in_flight_by_worker() or in_flight
        victim_host = max(in_flight, key=lambda host: len(in_flight[host]))
        victim = victim_host.split(".", 1)[0]
        survivor = "worker-2" if victim == "worker-1" else "worker-1"
        killed = in_flight[victim_host]
        family = _kill(cluster, victim)
        killed_at = time.monotonic()
        runs = cluster.wait_runs(dag_id, 240, {run_id})
        recovered = time.monotonic() - killed_at
    finally:
        cluster.sandbox.delete("/_sandbox/faults")
        cluster.set_paused(dag_id, True)
        if victim and cluster.ops.pid_of(victim) is None:
            cluster.restart(victim)

    assert [run["state"] for run in runs] == ["success"]
    tops = cluster.task_instances(dag_id, run_id, "top_up")
    assert {ti["state"] for ti in tops.values()} == {"success"}
    for index in killed:  # retried, on the worker still alive, which found the purchase made
        assert tops[index]["try_number"] >= 2, tops[index]
        assert tops[index]["hostname"] == cluster.ops.airflow_hostname(survivor), tops[index]
        assert cluster.xcom(dag_id, run_id, "top_up", index)["status"] == "already_applied"
    charges = cluster.charges(before)
    per_account = {world.account_of(c)[1]: len(charges.get(world.account_of(c)[1], [])) for c in accounts}
    doubles = sum(n - 1 for n in per_account.values() if n > 1)
    missed = sum(1 for n in per_account.values() if n == 0)
    assert set(charges) <= set(per_account), charges
    MEASURED["worker SIGKILL mid-purchase"] = (
        f"{victim} ({len(family)} processes) killed with {len(killed)} purchases in flight; "
        f"retried on {survivor}, run done {recovered:.0f} s after the kill; "
        f"{doubles} double charges, {missed} missed charges over {len(accounts)} accounts "
        f"(PB duplicate transactions seen by the sandbox: {cluster.counters()['pb_duplicate_transactions']})"
    )
    assert (doubles, missed) == (0, 0), per_account


def _balance_reads(counters: dict[str, Any]) -> int:
    return int(counters["requests"]["c2m_credit"]) + int(counters["requests"]["pb_balance"])


def _sensor_poke_seconds(cluster: Cluster) -> float:
    """POKE_SECONDS of the 200-sensor DAG (tests/cluster/dags/postage_cluster_deferred_sensors.py)."""
    dag_file = cluster.ops.DAG_BUNDLES["cluster_checks"] / "postage_cluster_deferred_sensors.py"
    found = re.search(r"^POKE_SECONDS = ([0-9.]+)$", dag_file.read_text(), re.MULTILINE)
    assert found
    return float(found.group(1))


def test_triggerer_killed_under_200_deferred_sensors(cluster: Cluster) -> None:
    """200 sensors (ten per account on 10 Click2Mail accounts and 10 Pitney Bowes merchants) deferred on
    the two triggerers; the one holding most of them is SIGKILLed and the funds arrive at once: the other
    triggerer takes its triggers over, and every sensor finishes, once, within the triggerers' health-check
    threshold plus two poll intervals."""
    dag_id = "postage_cluster_deferred_sensors"
    world = cluster.world
    accounts = [world.c2m_conn_id(i) for i in range(10)] + [world.pb_conn_id(i) for i in range(10)]
    conn_ids = accounts * 10  # sensor i waits on accounts[i % 20]
    poke = _sensor_poke_seconds(cluster)
    threshold = cluster.ops.TRIGGERER_HEALTH_CHECK_THRESHOLD
    _set_balances(cluster, accounts, "100.00")
    victim = ""
    try:
        run_id = cluster.trigger(dag_id, {"conn_ids": conn_ids, "threshold": "1000.00"})
        wait_until(
            lambda: cluster.states(dag_id, run_id, "wait").get("deferred") == 200, 420, "200 deferred sensors", 2
        )

        def assignment() -> dict[int, set[int]]:
            rows = cluster.sql(
                "SELECT t.triggerer_id, ti.map_index FROM task_instance ti JOIN trigger t ON t.id = ti.trigger_id "
                "WHERE ti.dag_id = %s AND ti.run_id = %s",
                dag_id,
                run_id,
            )
            found: dict[int, set[int]] = {}
            for job, index in rows:
                found.setdefault(job, set()).add(index)
            return found

        by_job = wait_until(
            lambda: (found := assignment()) and None not in found and sum(map(len, found.values())) == 200 and found,
            60,
            "every trigger assigned",
        )
        time.sleep(poke)  # every trigger polling

        # Balance reads per account per poll interval, with both triggerers up.
        start, began = cluster.counters(), time.monotonic()
        time.sleep(2 * poke)
        reads, window = _balance_reads(cluster.counters()) - _balance_reads(start), time.monotonic() - began
        per_account = reads / len(accounts) / (window / poke)
        split = sorted((len(indexes) for indexes in by_job.values()), reverse=True)
        # one read per interval per triggerer that polls the account, if each coalesces its own polls
        floor = sum(len({job for job, idx in by_job.items() if idx & set(range(a, 200, 20))}) for a in range(20))

        hosts = dict(cluster.sql("SELECT id, hostname FROM job WHERE job_type = 'TriggererJob'"))
        victim_job = max(by_job, key=lambda job: len(by_job[job]))
        victim = hosts[victim_job].split(".", 1)[0]
        family = _kill(cluster, victim)
        killed_at = time.monotonic()
        _set_balances(cluster, accounts, "1500.00")  # the funds arrive
        funded = time.monotonic() - killed_at
        moved = wait_until(lambda: victim_job not in assignment(), 120, "the triggers to move", 0.2)
        moved_after = time.monotonic() - killed_at
        assert moved
        wait_until(lambda: "deferred" not in cluster.states(dag_id, run_id, "wait"), 120, "every trigger to fire", 0.2)
        released = time.monotonic() - killed_at
        runs = cluster.wait_runs(dag_id, 420, {run_id})
        finished = time.monotonic() - killed_at
    finally:
        cluster.set_paused(dag_id, True)
        if victim and cluster.ops.pid_of(victim) is None:
            cluster.restart(victim)

    shared = "redis_url" in (cluster.ops.HOME / "airflow.cfg").read_text()  # POSTAGE_CLUSTER_SHARED_READS=1
    waits = cluster.task_instances(dag_id, run_id, "wait")
    lost = [i for i in range(200) if waits.get(i, {}).get("state") != "success"]
    retried = [i for i, ti in waits.items() if ti["try_number"] != 1]
    completed: Counter[int] = Counter()
    for index in range(200):
        for path in (cluster.task_logs(dag_id, run_id, "wait") / f"map_index={index}").glob("attempt=*.log"):
            completed[index] += path.read_text(errors="replace").count("reached the condition")
    twice = [i for i in range(200) if completed[i] > 1]
    MEASURED["balance reads per account per poll interval, two triggerers"] = (
        f"{per_account:.2f} ({reads} reads of {len(accounts)} accounts in {window:.1f} s, poll interval {poke:.0f} s, "
        f"10 sensors per account; triggers split {split}; one read per account per polling triggerer would be "
        f"{floor / len(accounts):.2f}; reads shared through Redis: {'yes' if shared else 'no'})"
    )
    MEASURED["triggerer SIGKILL under 200 deferred sensors"] = (
        f"{victim} ({len(family)} processes, {len(by_job[victim_job])} triggers) killed; funds in {funded:.1f} s; "
        f"its triggers reassigned after {moved_after:.1f} s; all 200 fired {released:.1f} s after the kill "
        f"(bound: threshold {threshold} s + 2 x {poke:.0f} s = {threshold + 2 * poke:.0f} s); run done after "
        f"{finished:.0f} s; {len(lost)} lost sensors, {len(twice)} finished twice, {len(retried)} retried"
    )
    assert [run["state"] for run in runs] == ["success"]
    assert (lost, twice, retried) == ([], [], [])
    assert released <= threshold + 2 * poke, f"{released:.1f} s"


def _set_balances(cluster: Cluster, conn_ids: list[str], amount: str) -> None:
    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda conn_id: cluster.set_balance(conn_id, amount), conn_ids))
