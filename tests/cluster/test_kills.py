"""Losing a machine's worth of process on the cluster: a Celery worker SIGKILLed while purchases are in
flight, a triggerer SIGKILLed under 200 deferred sensors, and under a low-balance asset watcher (twice:
while the balance stays low, and while it falls). Each reports measured numbers (MEASURED)."""

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


#: The low-balance watcher DAG (tests/cluster/dags/postage_cluster_low_balance_watch.py) and its asset.
WATCH_DAG = "postage_cluster_low_balance_watch"
ARMED = "postage_armed"  # LowBalanceEventTrigger's key in the asset's asset_state_store


def _watch_dag_constant(cluster: Cluster, name: str) -> str:
    dag_file = cluster.ops.DAG_BUNDLES["cluster_checks"] / f"{WATCH_DAG}.py"
    found = re.search(rf'^{name} = "?([^"\n]+)"?$', dag_file.read_text(), re.MULTILINE)
    assert found, name
    return found.group(1)


def _credit_reads(cluster: Cluster) -> int:
    return int(cluster.counters()["requests"]["c2m_credit"])


def test_triggerer_killed_under_a_low_balance_watcher_fires_once_per_fall(cluster: Cluster) -> None:
    """Issue 11: the watcher's armed/fired edge lives in the asset's ``asset_state_store``, not in the
    triggerer's memory. The balance falls (one run); the triggerer running the watcher is SIGKILLed while
    the balance stays low: the other triggerer re-creates the trigger (its ``triggerer_id`` changes) and
    polls the low balance several times: no second run. The balance comes back (re-armed, stored); the
    triggerer now running the watcher (the first one, restarted meanwhile) is SIGKILLed and the balance
    falls before the watcher is back: exactly one run."""
    conn_id = _watch_dag_constant(cluster, "CONN_ID")
    poke = float(_watch_dag_constant(cluster, "POKE_SECONDS"))
    asset = f"{conn_id}_low_balance_watch"
    threshold = cluster.ops.TRIGGERER_HEALTH_CHECK_THRESHOLD
    cluster.set_balance(conn_id, "100.00")
    known = {run["dag_run_id"] for run in cluster.runs(WATCH_DAG)}
    events = cluster.asset_events(asset)
    killed: list[str] = []

    def new_runs() -> list[dict[str, Any]]:
        return [run for run in cluster.runs(WATCH_DAG) if run["dag_run_id"] not in known]

    def settled() -> tuple[int, int] | None:
        """The watcher on one triggerer, polling: the same assignment over two polls, and two reads."""
        before, reads = cluster.watcher(asset), _credit_reads(cluster)
        if not before or before[1] is None:
            return None
        time.sleep(2 * poke + 0.5)
        after = cluster.watcher(asset)
        return (before[0], before[1]) if after == before and _credit_reads(cluster) - reads >= 2 else None

    def moved_from(job: int) -> tuple[int, int] | None:
        now = cluster.watcher(asset)
        return (now[0], now[1]) if now and now[1] is not None and now[1] != job else None

    def log_size(name: str) -> int:
        return cluster.ops.log_path(name).stat().st_size

    def started_since(name: str, offset: int, trigger_id: int) -> bool:
        with open(cluster.ops.log_path(name), "rb") as log:
            log.seek(offset)
            return f"trigger ID {trigger_id} starting".encode() in log.read()

    began = time.monotonic()
    cluster.set_paused(WATCH_DAG, False)
    try:
        trigger_id, holder = wait_until(settled, 120, "the watcher polling on a triggerer", 0.2)
        watching = time.monotonic() - began
        assert new_runs() == []  # 100.00: above the threshold, armed

        # The fall: one run, the fired state stored.
        cluster.set_balance(conn_id, "30.00")
        fell = time.monotonic()
        wait_until(new_runs, 60, "the run of the fall", 0.2)
        first_run = time.monotonic() - fell
        assert cluster.asset_state(asset, ARMED) is False

        # 1. The triggerer running the watcher dies while the balance stays low; the other takes it over.
        victim = cluster.triggerer_name(holder)
        triggerers = [name for name in cluster.ops.PROCESSES if name.startswith("triggerer-")]
        offsets = {name: log_size(name) for name in triggerers}  # the restarted victim appends to its log
        _kill(cluster, victim)
        killed.append(victim)
        killed_at = time.monotonic()
        cluster.ops.start(victim)  # back as scripts/cluster up would start it; the watcher has moved by then
        new_trigger, taker = wait_until(lambda: moved_from(holder), 60, "the watcher to move", 0.2)
        moved = time.monotonic() - killed_at
        taker_name = cluster.triggerer_name(taker)
        reads = _credit_reads(cluster)
        wait_until(lambda: _credit_reads(cluster) - reads >= 4, 60, "four polls after the restart", 0.2)
        time.sleep(2)  # an event of the last poll would be in asset_event by now, and a run follows it
        polled = _credit_reads(cluster) - reads
        window = time.monotonic() - killed_at
        # On a fresh process: the other triggerer or the restarted victim (whichever took it); the killed
        # process wrote nothing after the kill.
        recreated = {name for name in triggerers if started_since(name, offsets[name], new_trigger)}
        runs_while_low = new_runs()
        assert recreated, f"no triggerer log shows trigger {new_trigger} starting after the kill"
        assert len(runs_while_low) == 1, f"runs while low: {[run['run_after'] for run in runs_while_low]}"
        assert cluster.asset_events(asset) == events + 1
        assert cluster.asset_state(asset, ARMED) is False

        # 2. Back above the threshold (re-armed, stored); the triggerer running the watcher dies and the
        # balance falls before the watcher is back on a triggerer: exactly one run.
        wait_until(lambda: cluster.heartbeating(victim), 120, f"{victim} to heartbeat again")
        killed.remove(victim)
        cluster.set_balance(conn_id, "100.00")
        wait_until(lambda: cluster.asset_state(asset, ARMED) is True, 30, "the watcher to re-arm", 0.2)
        holder2 = cluster.watcher(asset)
        assert holder2 and holder2[1] is not None
        victim2 = cluster.triggerer_name(holder2[1])
        _kill(cluster, victim2)
        killed.append(victim2)
        killed2_at = time.monotonic()
        cluster.set_balance(conn_id, "30.00")
        _, taker2 = wait_until(lambda: moved_from(holder2[1]), 60, "the watcher to move again", 0.2)
        moved2 = time.monotonic() - killed2_at
        wait_until(lambda: len(new_runs()) >= 2, 60, "the run of the fall while the triggerer was down", 0.2)
        fired2 = time.monotonic() - killed2_at
        reads = _credit_reads(cluster)
        wait_until(lambda: _credit_reads(cluster) - reads >= 3, 60, "three polls after that run", 0.2)
        time.sleep(2)
        runs = new_runs()
        taker2_name = cluster.triggerer_name(taker2)
    finally:
        cluster.set_paused(WATCH_DAG, True)
        for name in killed:
            if cluster.ops.pid_of(name) is None:
                cluster.restart(name)
            else:
                wait_until(lambda name=name: cluster.heartbeating(name), 120, f"{name} to heartbeat")
    took = time.monotonic() - began
    MEASURED["triggerer SIGKILL under a low-balance watcher"] = (
        f"watching {watching:.0f} s after unpausing; fall to run {first_run:.1f} s (poll {poke:.0f} s); "
        f"{victim} killed while low: trigger {trigger_id} -> {new_trigger} on {taker_name} (job {holder} -> {taker}) "
        f"after {moved:.1f} s (health-check threshold {threshold} s), {polled} polls of the low balance "
        f"until {window:.0f} s after the kill, "
        f"{len(runs_while_low) - 1} second runs; re-armed, {victim2} killed, balance lowered while it was down: "
        f"watcher on {taker2_name} after {moved2:.1f} s, one run {fired2:.1f} s after the kill, "
        f"{len(runs) - 2} extra runs; test {took:.0f} s"
    )
    assert len(runs) == 2, [run["run_after"] for run in runs]
    assert cluster.asset_events(asset) == events + 2
    assert cluster.asset_state(asset, ARMED) is False
