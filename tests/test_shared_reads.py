"""Balance reads shared across triggerers through Redis (``[postage] redis_url``): two triggerer loops,
each with its own per-process cache, cost one request per account per poll interval between them."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import C2M_CONN_ID

from airflow_provider_postage.sandbox import SandboxState
from airflow_provider_postage.triggers.postage import BalanceThresholdTrigger


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/test installs it)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder: Path = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    server.terminate()
    server.wait(10)


def triggerer(interval: float, waiters: int, seconds: float) -> None:
    """One triggerer: its own event loop, its waiters started across one interval."""

    async def main() -> None:
        async def wait(delay: float) -> None:
            await asyncio.sleep(delay)
            events = BalanceThresholdTrigger(C2M_CONN_ID, threshold="100000", poke_interval=interval).run()
            try:
                await events.__anext__()
            finally:
                await events.aclose()

        tasks = [asyncio.ensure_future(wait(interval * i / waiters)) for i in range(waiters)]
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def requests_per_interval(state: SandboxState, interval: float, intervals: int) -> float:
    threads = [threading.Thread(target=triggerer, args=(interval, 50, interval * (intervals + 1))) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(interval)  # every waiter of both triggerers has started
    state.reset_counters()
    time.sleep(interval * intervals)
    made = state.request_count("c2m_credit")
    for thread in threads:
        thread.join(30)
    return made / intervals


def test_two_triggerers_share_one_read_per_interval_through_redis(
    connections: SandboxState, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    interval, intervals = 0.5, 4
    without = requests_per_interval(connections, interval, intervals)
    monkeypatch.setenv("AIRFLOW__POSTAGE__REDIS_URL", redis_url)
    with_redis = requests_per_interval(connections, interval, intervals)
    print(f"balance requests per interval, 2 triggerers x 50 waiters: {without:.2f} alone, {with_redis:.2f} with Redis")
    assert with_redis <= 1.2 + 1 / intervals, with_redis
    assert without > with_redis


def test_an_unreachable_redis_only_costs_the_sharing(connections: SandboxState, monkeypatch: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AIRFLOW__POSTAGE__REDIS_URL", f"redis://127.0.0.1:{port}/0")  # nothing listens there

    async def first() -> Any:
        events = BalanceThresholdTrigger(C2M_CONN_ID, threshold="1", poke_interval=0.2).run()
        try:
            return (await asyncio.wait_for(events.__anext__(), 20)).payload
        finally:
            await events.aclose()

    assert asyncio.run(first())["status"] == "success"
