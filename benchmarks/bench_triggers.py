"""Triggerer load: N balance triggers in one asyncio loop, driven the way Airflow's triggerer drives them.

One run = one implementation, one N, in a fresh process (run_all.py starts it; the sandbox runs in
another process):

* ``ours``: ``BalanceThresholdTrigger`` on Pitney Bowes connections (one merchant each, one API
  key), threshold never met, so each keeps polling.
* ``http``: ``HttpSensorTrigger`` (apache-airflow-providers-http) on one http connection, with a
  bearer token fetched once and put in its headers. It cannot check a threshold: it fires on the
  first reply that is not a 404. So that it keeps polling, its endpoint is the balance URL of a
  merchant the sandbox does not know (the sandbox checks the token, looks the merchant up, answers
  404 with a JSON error body): the same work for the server, less for the client (no parsing).

Like ``TriggerRunner.create_triggers``, the triggers are created one at a time with
``await asyncio.sleep(0)`` around each, each ``trigger.run()`` iterated by its own task. A warm-up
trigger polls once first (lazy imports, our shared client and token: a running triggerer has them).
Then: start-up (creating the N triggers, plus one poke interval) and steady state (``--rounds`` poke
intervals), timed by a sampler thread so that the run ends on time even if the loop falls behind.

The triggers watch ``--accounts`` accounts between them (default 10: many deferred sensors on a
few accounts; ``0``: an account, hence a connection, each). Polls are counted the same way for both
(each trigger sleeps ``poke_interval`` after a poll); the sandbox counts the HTTP requests.

With ``--spread`` the triggers start one every ``poke / N`` seconds over one poke interval (as deferred
sensors arrive over time) instead of back to back; with ``--accounts 1`` they all watch one account,
and the sandbox's count of balance requests per poke interval shows how many polls share one request.
With ``--gc-freeze created`` (or ``startup``), ``gc.freeze()`` runs once the triggers are created (or
after the warm-up): what a triggerer's operator could do; Airflow's own triggerer does not.

Measured in this process: CPU seconds (``time.process_time``, all threads) per poll in the steady
state (the window's CPU, less what the idle harness used per second before the triggers, over the
polls in it); peak RSS growth over the pre-trigger baseline, per trigger; the event loop's longest block
(a monitor task sleeps 10 ms and records how late it wakes; also bounded by the loop thread's CPU time,
which excludes time the OS gave to other processes), split into the garbage collector's pauses inside it
(``gc.callbacks``) and the rest, with the long blocks and pauses and their times. Also the share of
scheduled polls that happened, the sandbox's CPU share and the kernel's listen-queue overflows, to show
whether the sandbox kept up.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import math
import os
import statistics
import sys
import threading
import time
import urllib.request

from _common import (
    FIRST_EXTRA_PRN,
    MISSING_PRN,
    PB_PRN,
    balance_path,
    http_conn,
    listen_overflows,
    pb_conn,
    peak_rss_bytes,
    proc_cpu,
    quiet_logging,
    raise_fd_limit,
    rss_bytes,
    set_conn,
)


class GcPauses:
    """Python's garbage collector stops the loop too: record how long each collection took, keep a running
    total (so a loop block can be split into GC and the rest) and the long ones with their times."""

    LONG = 0.01  # pauses kept with their timestamps

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.total = 0.0  # seconds spent in collections so far, never reset
        self.reset()
        self._start = 0.0
        gc.callbacks.append(self.callback)

    def reset(self) -> None:
        self.max_pause = 0.0
        self.full_collections = 0
        self.long: list[tuple[float, float, int]] = []  # (start since t0, seconds, generation)

    def callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            pause = time.perf_counter() - self._start
            self.total += pause
            self.max_pause = max(self.max_pause, pause)
            self.full_collections += info.get("generation") == 2
            if pause >= self.LONG:
                self.long.append((round(self._start - self.t0, 3), round(pause, 4), info.get("generation", -1)))


class LagMonitor:
    """How late a 10 ms sleep wakes up: the longest stretch the loop ran without coming back to it.

    ``max_lag`` is wall time. On a shared machine part of it can be the OS running other processes,
    so ``max_cpu_lag`` also bounds each overshoot by the CPU time the loop's thread used meanwhile:
    a block that the triggers' code caused shows in both. Each block is also split into the garbage
    collector's pauses inside it and the rest (``max_own_lag``: what the code running on the loop
    took, the collector's pauses left out); blocks over 50 ms are kept with their times."""

    LONG = 0.05

    def __init__(self, gcp: GcPauses) -> None:
        self.gcp = gcp
        self.reset()
        self.last_wake = time.perf_counter()

    def reset(self) -> None:
        self.max_lag = self.max_cpu_lag = self.max_own_lag = self.max_own_cpu_lag = 0.0
        self.max_lag_gc = 0.0  # GC seconds inside the longest block
        self.max_gc_free_lag = 0.0  # the longest block with no collection at all inside
        self.over_02 = self.cpu_over_02 = self.own_over_02 = 0
        self.long: list[tuple[float, float, float, float]] = []  # (start since t0, block, of which GC, CPU)

    def snapshot(self) -> tuple[float, float]:
        """The maxima so far, counting a block still in progress (the loop may be stuck right now)."""
        ongoing = time.perf_counter() - self.last_wake - 0.01
        return max(self.max_lag, ongoing), self.max_cpu_lag

    async def run(self) -> None:
        while True:
            start, cpu_start, gc_start = time.perf_counter(), time.thread_time(), self.gcp.total
            self.last_wake = start
            await asyncio.sleep(0.01)
            lag = time.perf_counter() - start - 0.01
            cpu_lag = max(0.0, min(lag, time.thread_time() - cpu_start - 0.01))
            in_gc = self.gcp.total - gc_start
            own = max(0.0, lag - in_gc)
            own_cpu = max(0.0, min(own, cpu_lag - in_gc))
            if lag > self.max_lag:
                self.max_lag, self.max_lag_gc = lag, min(lag, in_gc)
            if in_gc == 0.0:
                self.max_gc_free_lag = max(self.max_gc_free_lag, lag)
            self.max_cpu_lag = max(self.max_cpu_lag, cpu_lag)
            self.max_own_lag = max(self.max_own_lag, own)
            self.max_own_cpu_lag = max(self.max_own_cpu_lag, own_cpu)
            self.over_02 += lag > 0.2
            self.cpu_over_02 += cpu_lag > 0.2
            self.own_over_02 += own > 0.2
            if lag >= self.LONG:
                self.long.append(
                    (round(start + 0.01 - self.gcp.t0, 3), round(lag, 4), round(in_gc, 4), round(cpu_lag, 4))
                )

    def figures(self) -> dict:
        return {
            "max_lag_s": self.max_lag,
            "max_lag_gc_s": self.max_lag_gc,
            "max_cpu_lag_s": self.max_cpu_lag,
            "max_own_lag_s": self.max_own_lag,
            "max_own_cpu_lag_s": self.max_own_cpu_lag,
            "max_gc_free_lag_s": self.max_gc_free_lag,
            "own_over_0_2s": self.own_over_02,
            "long_blocks": sorted(self.long, key=lambda b: -b[1])[:10],
        }


def counters(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/_sandbox/counters", timeout=30) as reply:
        return json.loads(reply.read())


POLLS = [0]


def count_polls(poke: float) -> None:
    """Count polls the same way for both implementations, without touching their code: each sleeps
    ``poke_interval`` after a poll (ours after every poll, HttpSensorTrigger after each 404)."""
    real_sleep = asyncio.sleep

    async def sleep(delay: float, result=None):
        if delay == poke:
            POLLS[0] += 1
        return await real_sleep(delay, result)

    asyncio.sleep = sleep  # type: ignore[assignment]


def account(args: argparse.Namespace, i: int) -> int:
    """The account trigger ``i`` watches: one of ``--accounts`` (0: an account of its own)."""
    return i % args.accounts if args.accounts else i


def make_factories(args: argparse.Namespace) -> tuple[list, object]:
    """Trigger factories (the triggerer builds each trigger from its kwargs) and a warm-up trigger."""
    if args.impl == "ours":
        from airflow_provider_postage.triggers.postage import BalanceThresholdTrigger

        def ours(conn_id: str, poke: float, prn: str | None = None) -> BalanceThresholdTrigger:
            return BalanceThresholdTrigger(
                postage_conn_id=conn_id,
                threshold="1000000",
                account_type="postage",
                poke_interval=poke,
                postal_reporting_number=prn,
            )

        set_conn("pb_warmup", **pb_conn(args.url, prn=PB_PRN))
        if not args.accounts:  # a merchant each, all through one connection (one developer account, one token)
            set_conn("pb_bench_all", **pb_conn(args.url, prn=PB_PRN))
            factories = [
                lambda i=i: ours("pb_bench_all", args.poke, str(FIRST_EXTRA_PRN + account(args, i)))
                for i in range(args.n)
            ]
            return factories, ours("pb_warmup", 3600)
        for j in sorted({account(args, i) for i in range(args.n)}):
            set_conn(f"pb_bench_{j}", **pb_conn(args.url, prn=str(FIRST_EXTRA_PRN + j)))
        factories = [lambda i=i: ours(f"pb_bench_{account(args, i)}", args.poke) for i in range(args.n)]
        return factories, ours("pb_warmup", 3600)

    from airflow.providers.http.triggers.http import HttpSensorTrigger

    set_conn("pb_http", **http_conn(args.port))
    headers = {"Authorization": f"Bearer {args.token}", "Accept": "application/json"}

    def theirs(prn: int, poke: float) -> HttpSensorTrigger:
        return HttpSensorTrigger(
            endpoint=balance_path(str(prn)), http_conn_id="pb_http", method="GET", headers=headers, poke_interval=poke
        )

    factories = [lambda i=i: theirs(MISSING_PRN + account(args, i), args.poke) for i in range(args.n)]
    return factories, theirs(MISSING_PRN - 1, 3600)


async def run_trigger(trigger, events: list) -> None:
    """TriggerRunner.run_trigger: iterate the generator; an event ends the deferral."""
    async for event in trigger.run():
        events.append(event.payload)
        return


class Sampler(threading.Thread):
    """Ends the run on the wall clock, whatever state the loop is in, and prints the result."""

    def __init__(
        self, args: argparse.Namespace, monitor: LagMonitor, gcp: GcPauses, created: threading.Event, state: dict
    ) -> None:
        super().__init__(daemon=True)
        self.args, self.monitor, self.gcp, self.created, self.state = args, monitor, gcp, created, state

    def sample(self) -> dict:
        # The sandbox's counters come over HTTP, which takes a while when the loop holds the GIL: the
        # client-side readings are taken on both sides of that call and averaged, to line them up.
        polls0, cpu0, wall0 = POLLS[0], time.process_time(), time.perf_counter()
        c = counters(self.args.url)
        polls1, cpu1, wall1 = POLLS[0], time.process_time(), time.perf_counter()
        return {
            "wall": (wall0 + wall1) / 2,
            "cpu": (cpu0 + cpu1) / 2,
            "sandbox_cpu": proc_cpu(self.args.sandbox_pid),
            "polls": (polls0 + polls1) / 2,
            "requests": c["requests"]["pb_balance"],
            "tokens": c["tokens_issued"],
        }

    def run(self) -> None:
        args, state = self.args, self.state
        s0 = state["s0"]
        all_created = self.created.wait(timeout=args.create_timeout)
        created_s = time.perf_counter() - s0["wall"]
        time.sleep(args.poke)
        s1 = self.sample()
        startup_lag, startup_cpu_lag = self.monitor.snapshot()
        startup_gc = self.gcp.max_pause
        startup_blocks, startup_gc_long = self.monitor.figures(), list(self.gcp.long)
        self.monitor.reset()
        self.gcp.reset()
        # Samples about a second apart, on a grid that puts one on every poke-interval boundary.
        per_poke = math.ceil(args.poke)
        slices, boundaries = [s1], [s1]
        for j in range(1, args.rounds * per_poke + 1):
            time.sleep(max(0.0, s1["wall"] + j * args.poke / per_poke - time.perf_counter()))
            slices.append(self.sample())
            if j % per_poke == 0:
                boundaries.append(slices[-1])
        s2 = slices[-1]
        steady_lag, steady_cpu_lag = self.monitor.snapshot()
        steady_blocks = self.monitor.figures()
        peak = peak_rss_bytes()

        idle = state["idle_cpu_per_s"]  # the harness's own CPU (monitor, sampler) with no trigger running
        per_slice = [
            (b["cpu"] - a["cpu"] - idle * (b["wall"] - a["wall"])) / (b["polls"] - a["polls"])
            for a, b in itertools.pairwise(slices)
            if b["polls"] > a["polls"] and b["wall"] - a["wall"] > 0.5
        ]
        polls = s2["polls"] - s1["polls"]
        wall = s2["wall"] - s1["wall"]
        ideal = args.n * wall / args.poke
        events = state["events"]
        # Balance requests per poke interval, as the sandbox counted them: the window's mean, and the count in
        # each measured interval (samples on the interval boundaries).
        per_interval = (s2["requests"] - s1["requests"]) / (wall / args.poke) if wall else None
        interval_counts = [b["requests"] - a["requests"] for a, b in itertools.pairwise(boundaries)]
        # The longest block split into the collector's share and the rest (whole run).
        own = max(startup_blocks["max_own_lag_s"], steady_blocks["max_own_lag_s"])
        longest = startup_blocks if startup_blocks["max_lag_s"] >= steady_blocks["max_lag_s"] else steady_blocks
        result = {
            "impl": args.impl,
            "n": args.n,
            "poke_interval_s": args.poke,
            "rounds": args.rounds,
            "all_created": all_created,
            "created": state.get("created", 0),
            "create_s": state.get("create_s", created_s),
            "accounts": args.accounts or args.n,
            "spread_starts": args.spread,
            "gc_freeze": args.gc_freeze,
            "requests_per_interval": per_interval,
            "requests_in_each_interval": interval_counts,
            "startup_polls": s1["polls"] - s0["polls"],
            "startup_cpu_s": s1["cpu"] - s0["cpu"],
            "steady_polls": polls,
            "steady_wall_s": wall,
            "steady_cpu_s": s2["cpu"] - s1["cpu"],
            "cpu_per_poll_s": (s2["cpu"] - s1["cpu"] - idle * wall) / polls if polls else None,
            "cpu_per_poll_median_of_slices_s": statistics.median(per_slice) if per_slice else None,
            "idle_cpu_per_s": idle,
            "cpu_per_poll_slices": len(per_slice),
            "poll_rate_vs_ideal": polls / ideal if ideal else None,
            "http_requests_per_poll": (s2["requests"] - s1["requests"]) / polls if polls else None,
            "client_cpu_share": (s2["cpu"] - s1["cpu"]) / wall,
            "peak_rss_growth_bytes": peak - state["rss0"],
            "peak_rss_per_trigger_bytes": (peak - state["rss0"]) / max(1, state.get("created", 0)),
            "max_loop_block_s": max(startup_lag, steady_lag),
            "max_loop_block_cpu_s": max(startup_cpu_lag, steady_cpu_lag),
            "startup_max_loop_block_s": startup_lag,
            "steady_max_loop_block_s": steady_lag,
            "steady_max_loop_block_cpu_s": steady_cpu_lag,
            "steady_blocks_over_0_2s": self.monitor.over_02,
            "max_gc_pause_s": max(startup_gc, self.gcp.max_pause),
            "steady_max_gc_pause_s": self.gcp.max_pause,
            "startup_max_gc_pause_s": startup_gc,
            "max_own_block_s": own,
            "max_own_block_cpu_s": max(startup_blocks["max_own_cpu_lag_s"], steady_blocks["max_own_cpu_lag_s"]),
            "max_block_gc_share_s": longest["max_lag_gc_s"],
            "max_gc_free_block_s": max(startup_blocks["max_gc_free_lag_s"], steady_blocks["max_gc_free_lag_s"]),
            "own_blocks_over_0_2s": startup_blocks["own_over_0_2s"] + steady_blocks["own_over_0_2s"],
            "startup_blocks": startup_blocks,
            "steady_blocks": steady_blocks,
            "gc_tracked_objects_before": state["tracked0"],
            "gc_tracked_objects_after": len(gc.get_objects()),
            "gc_frozen_objects": gc.get_freeze_count(),
            "long_gc_pauses": sorted(startup_gc_long + self.gcp.long, key=lambda g: -g[1])[:10],
            "steady_full_collections": self.gcp.full_collections,
            "sandbox_cpu_share_steady": (s2["sandbox_cpu"] - s1["sandbox_cpu"]) / wall,
            "sandbox_cpu_share_startup": (s1["sandbox_cpu"] - s0["sandbox_cpu"]) / (s1["wall"] - s0["wall"]),
            "sandbox_rps_steady": (s2["requests"] - s1["requests"]) / wall,
            "listen_overflows": listen_overflows() - state["overflows0"],
            "tokens_issued": s2["tokens"] - s0["tokens"],
            "tokens_including_warmup": s2["tokens"] - state["tokens_before_warmup"],
            "since_warmup_s": s2["wall"] - state["warmup_start"],
            "events": len(events),
            "event_sample": events[:3],
        }
        print("RESULT " + json.dumps(result, default=str), flush=True)
        sys.stderr.flush()
        os._exit(0)  # no clean-up: cancelling thousands of tasks is not part of the measurement


async def main(args: argparse.Namespace) -> None:
    count_polls(args.poke)
    factories, warm = make_factories(args)
    events: list = []

    # Warm-up: one trigger, one poll.
    first = await asyncio.to_thread(counters, args.url)
    before = first["requests"]["pb_balance"]
    warmup_start = time.perf_counter()
    warm_task = asyncio.create_task(run_trigger(warm, events))
    for _ in range(500):
        await asyncio.sleep(0.02)
        if (await asyncio.to_thread(counters, args.url))["requests"]["pb_balance"] > before:
            break
    await asyncio.sleep(0.1)
    warm_task.cancel()
    await asyncio.gather(warm_task, return_exceptions=True)
    if events:
        raise RuntimeError(f"the warm-up trigger fired: {events}")

    gc.collect()
    if args.gc_freeze == "startup":  # after the triggerer's start-up (imports, shared client, token)
        gc.freeze()
    gcp = GcPauses(time.perf_counter())
    monitor = LagMonitor(gcp)
    asyncio.create_task(monitor.run())  # noqa: RUF006 - lives until os._exit
    await asyncio.sleep(0.05)
    idle0 = time.process_time()
    await asyncio.sleep(1.0)
    idle_cpu_per_s = time.process_time() - idle0
    monitor.reset()
    gcp.reset()
    created = threading.Event()
    state: dict = {
        "events": events,
        "rss0": rss_bytes(),
        "tracked0": len(gc.get_objects()),  # what a full collection walks, before the triggers
        "overflows0": listen_overflows(),
        "tokens_before_warmup": first["tokens_issued"],
        "warmup_start": warmup_start,
        "idle_cpu_per_s": idle_cpu_per_s,
    }
    sampler = Sampler(args, monitor, gcp, created, state)
    state["s0"] = await asyncio.to_thread(sampler.sample)
    sampler.start()

    tasks = []
    first_start = time.perf_counter()
    for i, factory in enumerate(factories):  # TriggerRunner.create_triggers
        if args.spread:  # deferred sensors arrive over time: trigger i starts i/N of an interval in
            await asyncio.sleep(max(0.0, first_start + i * args.poke / args.n - time.perf_counter()))
        await asyncio.sleep(0)
        trigger = factory()
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(run_trigger(trigger, events)))
        state["created"] = len(tasks)
    state["create_s"] = time.perf_counter() - state["s0"]["wall"]
    if args.gc_freeze == "created":  # what an operator could do once the triggerer holds its triggers
        gc.freeze()
    created.set()
    await asyncio.sleep(3600)  # the sampler ends the process


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=("ours", "http"), required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--poke", type=float, required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--accounts", type=int, default=10, help="accounts the triggers share; 0: one each")
    parser.add_argument("--create-timeout", type=float, default=45)
    parser.add_argument("--spread", action="store_true", help="start the triggers spread over one poke interval")
    parser.add_argument(
        "--gc-freeze", choices=("no", "startup", "created"), default="no", help="gc.freeze() after start-up or creation"
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sandbox-pid", type=int, required=True)
    parser.add_argument("--token", default="")
    args = parser.parse_args()
    raise_fd_limit()
    import airflow.sdk

    if args.impl == "ours":
        import airflow_provider_postage.triggers.postage  # noqa: F401
    else:
        import airflow.providers.http.triggers.http  # noqa: F401
    quiet_logging()
    asyncio.run(main(args))
