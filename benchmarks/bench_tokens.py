"""Token economy, synchronous part: Pitney Bowes balance reads over a simulated day, counting the token
requests the sandbox answered.

The sandbox runs with a short token lifetime (``--ttl`` seconds) and the day is scaled to it: a real PB
token lives 35,999 s (10 h), so a day is 2.4 lifetimes, and the reads are spread over 2.4 x ttl seconds
(or take longer, if they cannot keep that pace; the lifetimes actually spanned are reported).

* ``ours``: 1,000 reads in one process, each through a new hook
  (``get_postage_hook(conn_id).get_balances()``, as each operator run or sensor poke makes one); the
  process-wide token cache is what is measured.
* ``http``: the same 1,000 reads with the http-provider recipe: an ``HttpOperator`` POSTs to
  ``/oauth/token`` (API key and secret as the http connection's login and password), a second
  ``HttpOperator`` GETs the balance with that bearer token. The http provider has no token cache, so
  a token is fetched for every read.
* ``http_401_loop``: what ``HttpSensorTrigger`` does when the token baked into its headers expires
  (a deferral longer than the token's lifetime): the requests it sends in ``--loop-window`` seconds.

The asynchronous part (1,000 triggers in one loop over a simulated day) is a bench_triggers.py run
against a sandbox with the same short token lifetime; run_all.py starts it.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time

from _common import (
    MISSING_PRN,
    PB_KEY,
    PB_SECRET,
    Sandbox,
    balance_path,
    emit,
    http_conn,
    pb_conn,
    pb_token,
    quiet_logging,
    set_conn,
)

DAY_IN_LIFETIMES = 86400 / 35999


def paced(reads: int, day_s: float, read) -> float:
    """Run ``reads`` reads spread evenly over ``day_s`` seconds (or as fast as they go); elapsed seconds."""
    start = time.perf_counter()
    for i in range(reads):
        due = start + i * day_s / reads
        if (wait := due - time.perf_counter()) > 0:
            time.sleep(wait)
        read()
    return time.perf_counter() - start


def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--ttl", type=int, default=4)
    parser.add_argument("--loop-window", type=float, default=2.0)
    args = parser.parse_args()
    day_s = DAY_IN_LIFETIMES * args.ttl
    result: dict = {"reads": args.reads, "token_ttl_s": args.ttl, "day_s": day_s}

    with Sandbox(token_ttl=args.ttl) as sandbox:
        set_conn("pb_bench", **pb_conn(sandbox.url))
        set_conn("pb_oauth", **http_conn(sandbox.port, PB_KEY, PB_SECRET))
        set_conn("pb_api", **http_conn(sandbox.port))
        from airflow.providers.http.operators.http import HttpOperator
        from airflow.providers.http.triggers.http import HttpSensorTrigger

        from airflow_provider_postage.hooks.postage import get_postage_hook

        quiet_logging()

        def ours() -> None:
            get_postage_hook("pb_bench").get_balances()

        def theirs() -> None:
            token = HttpOperator(
                task_id="get_token",
                http_conn_id="pb_oauth",
                method="POST",
                endpoint="/oauth/token",
                data={"grant_type": "client_credentials"},
                headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                response_filter=lambda response: response.json()["access_token"],
            ).execute({})
            HttpOperator(
                task_id="fetch_balances",
                http_conn_id="pb_api",
                method="GET",
                endpoint=balance_path(),
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                response_filter=lambda response: response.json()["accounts"],
            ).execute({})

        for name, read in (("ours", ours), ("http", theirs)):
            sandbox.reset_counters()
            elapsed = paced(args.reads, day_s, read)
            counters = sandbox.counters()
            result[name] = {
                "elapsed_s": elapsed,
                "lifetimes_spanned": math.ceil(elapsed / args.ttl),
                "tokens": counters["tokens_issued"],
                "token_requests": counters["requests"]["pb_token"],
                "balance_requests": counters["requests"]["pb_balance"],
            }

        # HttpSensorTrigger after its token expired: it sleeps only after a 404, so a 401 repeats at once.
        token = pb_token(sandbox.url)
        trigger = HttpSensorTrigger(
            endpoint=balance_path(str(MISSING_PRN)),
            http_conn_id="pb_api",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            poke_interval=5.0,
        )
        sandbox.expire_tokens()
        sandbox.reset_counters()

        async def run_for(window: float) -> None:
            async def drive() -> None:
                async for _ in trigger.run():
                    return

            task = asyncio.create_task(drive())
            await asyncio.sleep(window)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        asyncio.run(run_for(args.loop_window))
        result["http_401_loop"] = {
            "window_s": args.loop_window,
            "poke_interval_s": 5.0,
            "requests": sandbox.counters()["requests"]["pb_balance"],
        }
    return result


if __name__ == "__main__":
    emit(main())
