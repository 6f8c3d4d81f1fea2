"""BalanceThresholdTrigger driven with asyncio against the sandbox over real HTTP (aiohttp), as a triggerer
runs it: many triggers on one event loop, polled until the balance crosses the threshold."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from conftest import (
    AIRFLOW_V3,
    C2M_CONN_ID,
    PB_CONN_ID,
    PB_NO_CREDIT_CONN_ID,
    c2m_connection,
    conn_uri_env,
    pb_connection,
)

from airflow_provider_postage.hooks.postage import aget_postage_hook
from airflow_provider_postage.protocol.errors import PostageValidationError
from airflow_provider_postage.sandbox import SandboxServer, SandboxState
from airflow_provider_postage.sandbox import state as sandbox_defaults
from airflow_provider_postage.triggers.postage import BalanceThresholdTrigger, LowBalanceEventTrigger

CLASSPATH = "airflow_provider_postage.triggers.postage.BalanceThresholdTrigger"
C2M_USER = sandbox_defaults.DEFAULT_C2M_USERNAME
PB_PRN = sandbox_defaults.DEFAULT_PB_PRN
BALANCE_ENDPOINT = {C2M_CONN_ID: "c2m_credit", PB_CONN_ID: "pb_balance"}
READ_ONLY = {"c2m_credit", "pb_token", "pb_balance"}


def requests_made(state: SandboxState) -> dict[str, int]:
    return {name: count for name, count in state.counters()["requests"].items() if count}


def set_balance(state: SandboxState, conn_id: str, value: str) -> None:
    if conn_id == C2M_CONN_ID:
        state.set_c2m_balance(C2M_USER, value)
    else:
        state.set_pb_balance(PB_PRN, value)


async def first_event(trigger: BalanceThresholdTrigger, timeout: float = 20.0) -> dict[str, Any]:
    """The trigger's one event, as the triggerer takes it; the generator is closed afterwards."""
    events = trigger.run()
    try:
        event = await asyncio.wait_for(anext(events), timeout)
    finally:
        await events.aclose()
    return event.payload


async def when_requests(state: SandboxState, endpoint: str, n: int, change: Callable[[], None]) -> None:
    """Apply ``change`` once ``endpoint`` has seen ``n`` requests and their replies have left."""
    while state.request_count(endpoint) < n:  # type: ignore[arg-type]
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    change()


# --- events ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("conn_id", [C2M_CONN_ID, PB_CONN_ID])
async def test_fires_at_once_when_already_met(connections: SandboxState, conn_id: str) -> None:
    payload = await first_event(BalanceThresholdTrigger(conn_id, threshold="5", poke_interval=0.2))
    assert payload["status"] == "success"
    balance = payload["balance"]
    expected = ("click2mail", "credit", "5.00") if conn_id == C2M_CONN_ID else ("pitney_bowes", "postage", "12.50")
    assert (balance["provider"], balance["account_type"], balance["available"]) == expected
    assert balance["conn_id"] == conn_id
    reads = {"c2m_credit": 1} if conn_id == C2M_CONN_ID else {"pb_token": 1, "pb_balance": 1}
    assert requests_made(connections) == reads


@pytest.mark.parametrize("conn_id", [C2M_CONN_ID, PB_CONN_ID])
async def test_fires_when_the_balance_crosses_the_threshold(connections: SandboxState, conn_id: str) -> None:
    endpoint = BALANCE_ENDPOINT[conn_id]
    trigger = BalanceThresholdTrigger(conn_id, threshold="50", poke_interval=0.3)
    payload, _ = await asyncio.gather(
        first_event(trigger), when_requests(connections, endpoint, 1, lambda: set_balance(connections, conn_id, "75"))
    )
    assert payload["status"] == "success"
    assert payload["balance"]["available"] == "75.00"
    assert connections.request_count(endpoint) >= 2  # it waited: the first poll saw the old balance
    assert set(requests_made(connections)) <= READ_ONLY


async def test_condition_below_fires_when_the_balance_falls(connections: SandboxState) -> None:
    connections.drain_c2m(C2M_USER, "5")  # 5.00 falls by 5.00 a second
    payload = await first_event(
        BalanceThresholdTrigger(C2M_CONN_ID, threshold="3", condition="below", poke_interval=0.2)
    )
    assert payload["status"] == "success"
    assert Decimal("0") <= Decimal(payload["balance"]["available"]) < Decimal("3")
    assert connections.request_count("c2m_credit") >= 2


@pytest.mark.parametrize(("threshold", "condition"), [("500", "at_least"), ("600", "below")])
async def test_line_of_credit_account(connections: SandboxState, threshold: str, condition: str) -> None:
    trigger = BalanceThresholdTrigger(
        PB_CONN_ID, threshold=threshold, account_type="line_of_credit", condition=condition, poke_interval=0.2
    )
    payload = await first_event(trigger)
    assert payload["status"] == "success"
    assert (payload["balance"]["account_type"], payload["balance"]["available"]) == ("line_of_credit", "500.00")
    assert requests_made(connections) == {"pb_token": 1, "pb_balance": 1}


# --- waiting through trouble ----------------------------------------------------------------------

INTERVAL = 0.2
WINDOW = 1.2


@pytest.mark.parametrize(
    ("conn_id", "endpoint", "fault"),
    [
        (C2M_CONN_ID, "c2m_credit", None),
        (C2M_CONN_ID, "c2m_credit", {"status": 500}),
        (C2M_CONN_ID, "c2m_credit", {"delay": 1.0}),  # longer than the trigger's 0.1 s read timeout
        (C2M_CONN_ID, "c2m_credit", {"status": 200, "body": "<html>down</html>", "content_type": "text/html"}),
        (PB_CONN_ID, "pb_token", {"status": 503}),
        (PB_CONN_ID, "pb_balance", {"status": 502}),
    ],
    ids=["no-error", "500", "read-timeout", "unreadable", "token-503", "balance-502"],
)
async def test_polls_once_per_poke_interval_also_through_errors(
    connections: SandboxState, conn_id: str, endpoint: Any, fault: dict[str, Any] | None
) -> None:
    if fault is not None:
        connections.inject_fault(endpoint, times=100_000, **fault)
    trigger = BalanceThresholdTrigger(conn_id, threshold="100", poke_interval=INTERVAL, timeout=(1.0, 0.1))
    waiting = asyncio.ensure_future(first_event(trigger, timeout=30))
    await asyncio.sleep(WINDOW)
    polls = connections.request_count(endpoint)
    assert not waiting.done()  # no error event: it keeps waiting
    # One poll per interval, the first at once: WINDOW / INTERVAL + 1 = 7; a busy loop would make hundreds.
    assert 3 <= polls <= WINDOW / INTERVAL + 2
    connections.clear_faults()
    set_balance(connections, conn_id, "150")
    payload = await asyncio.wait_for(waiting, 10)
    assert (payload["status"], payload["balance"]["available"]) == ("success", "150.00")
    assert set(requests_made(connections)) <= READ_ONLY


@pytest.mark.parametrize(
    ("conn", "fault", "message", "reads"),
    [
        (
            ("pb_dev", "pb", {"developer_id": "99999999"}, {}),
            None,
            "pitney_bowes API error (HTTP 403) [1000033]",
            {"pb_token": 1, "pb_balance": 1},
        ),
        (
            ("pb_any", "pb", {}, {}),
            ("pb_balance", {"status": 403}),
            "pitney_bowes API error (HTTP 403)",
            {"pb_token": 1, "pb_balance": 1},
        ),
        (
            ("pb_any", "pb", {}, {}),
            ("pb_balance", {"status": 401, "times": 10}),
            "pitney_bowes API error (HTTP 401)",
            {"pb_token": 2, "pb_balance": 2},
        ),
        (
            ("pb_secret", "pb", {}, {"password": "wrong-secret-value"}),
            None,
            "pitney_bowes API error (HTTP 401) [1000032]",
            {"pb_token": 1},
        ),
        (
            ("pb_prn", "pb", {"postal_reporting_number": "123456"}, {}),
            None,
            "pitney_bowes API error (HTTP 404)",
            {"pb_token": 1, "pb_balance": 1},
        ),
        (
            ("c2m_pw", "c2m", {}, {"password": "nope-nope"}),
            None,
            "click2mail API error (HTTP 401): username or password refused",
            {"c2m_credit": 1},
        ),
        (
            ("c2m_403", "c2m", {}, {}),
            ("c2m_credit", {"status": 403}),
            "click2mail API error (HTTP 403)",
            {"c2m_credit": 1},
        ),
        (
            ("http_conn", "http", {}, {}),
            None,
            "connection 'http_conn' has type 'http'; expected one of click2mail, pitney_bowes",
            {},
        ),
    ],
    ids=["403-developer", "403-injected", "401-after-refresh", "bad-secret", "unknown-merchant", "bad-password",
         "c2m-403", "wrong-type"],
)  # fmt: skip
async def test_permanent_errors_end_the_wait_with_an_error_event(
    connections: SandboxState,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    conn: tuple[str, str, dict[str, Any], dict[str, Any]],
    fault: tuple[str, dict[str, Any]] | None,
    message: str,
    reads: dict[str, int],
) -> None:
    conn_id, kind, extra, fields = conn
    if kind == "http":
        monkeypatch.setenv(*conn_uri_env(conn_id, conn_type="http", host="example.com"))
    else:
        base = pb_connection(sandbox.url) if kind == "pb" else c2m_connection(sandbox.url)
        base["extra"] = {**base["extra"], **extra}  # type: ignore[dict-item]
        monkeypatch.setenv(*conn_uri_env(conn_id, **{**base, **fields}))
    if fault is not None:
        connections.inject_fault(fault[0], **fault[1])  # type: ignore[arg-type]
    payload = await first_event(BalanceThresholdTrigger(conn_id, threshold="1", poke_interval=0.2))
    assert payload["status"] == "error"
    assert set(payload) == {"status", "message"}
    assert message in payload["message"]
    assert "wrong-secret-value" not in payload["message"] and "nope-nope" not in payload["message"]
    assert requests_made(connections) == reads


async def test_missing_account_is_an_error_event(connections: SandboxState) -> None:
    trigger = BalanceThresholdTrigger(PB_NO_CREDIT_CONN_ID, threshold="1", account_type="line_of_credit")
    payload = await first_event(trigger)
    assert payload == {
        "status": "error",
        "message": "account_type: connection 'pb_sandbox_postage_only' has no line_of_credit account",
    }


def import_string(path: str) -> Any:
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


# --- serialization --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"postage_conn_id": C2M_CONN_ID, "threshold": "50"},
            {
                "postage_conn_id": C2M_CONN_ID,
                "threshold": "50.00",
                "account_type": None,
                "condition": "at_least",
                "poke_interval": 60.0,
                "timeout": [10.0, 30.0],
            },
        ),
        (
            {
                "postage_conn_id": PB_CONN_ID,
                "threshold": Decimal("12.5"),
                "account_type": "line_of_credit",
                "condition": "below",
                "poke_interval": 2,
                "timeout": (1, 2.5),
            },
            {
                "postage_conn_id": PB_CONN_ID,
                "threshold": "12.50",
                "account_type": "line_of_credit",
                "condition": "below",
                "poke_interval": 2.0,
                "timeout": [1.0, 2.5],
            },
        ),
        (
            {"postage_conn_id": PB_CONN_ID, "threshold": 0, "poke_interval": 0.25},
            {
                "postage_conn_id": PB_CONN_ID,
                "threshold": "0.00",
                "account_type": None,
                "condition": "at_least",
                "poke_interval": 0.25,
                "timeout": [10.0, 30.0],
            },
        ),
    ],
)
def test_serialize_round_trips_exactly(kwargs: dict[str, Any], expected: dict[str, Any]) -> None:
    classpath, serialized = BalanceThresholdTrigger(**kwargs).serialize()
    assert (classpath, serialized) == (CLASSPATH, expected)
    assert isinstance(serialized["threshold"], str)
    stored = json.loads(json.dumps(serialized))  # what a database keeps
    rebuilt = import_string(classpath)(**stored)
    assert rebuilt.serialize() == (CLASSPATH, expected)
    assert import_string(classpath)(**rebuilt.serialize()[1]).serialize() == (CLASSPATH, expected)


@pytest.mark.skipif(not AIRFLOW_V3, reason="Airflow 3's serde encoding of trigger kwargs")
def test_serialize_round_trips_through_airflow_serde() -> None:
    from airflow.sdk.serde import deserialize, serialize

    trigger = BalanceThresholdTrigger(PB_CONN_ID, threshold="12.5", account_type="postage", poke_interval=3)
    classpath, kwargs = trigger.serialize()
    rebuilt = BalanceThresholdTrigger(**deserialize(json.loads(json.dumps(serialize(kwargs)))))
    assert rebuilt.serialize() == (classpath, kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"threshold": 12.5}, PostageValidationError),
        ({"threshold": "12.345"}, PostageValidationError),
        ({"threshold": "-1"}, PostageValidationError),
        ({"threshold": "1", "condition": "above"}, PostageValidationError),
        ({"threshold": "1", "account_type": "savings"}, PostageValidationError),
        ({"threshold": "1", "poke_interval": 0}, ValueError),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        BalanceThresholdTrigger(C2M_CONN_ID, **kwargs)


# --- many triggers on one loop --------------------------------------------------------------------


async def test_two_hundred_triggers_share_one_token(connections: SandboxState) -> None:
    triggers = [BalanceThresholdTrigger(PB_CONN_ID, threshold="100", poke_interval=0.2) for _ in range(200)]
    waiting = asyncio.gather(*(first_event(trigger, timeout=30) for trigger in triggers))
    # Several rounds of polls (each round's balance request would need a token of its own without the cache).
    await when_requests(connections, "pb_balance", 3, lambda: set_balance(connections, PB_CONN_ID, "100"))
    payloads = await asyncio.wait_for(waiting, 10)
    assert {(p["status"], p["balance"]["available"]) for p in payloads} == {("success", "100.00")}
    assert connections.tokens_issued == 1
    assert connections.request_count("pb_token") == 1
    assert 3 <= connections.request_count("pb_balance") < 200  # polls made together were shared


async def test_one_token_for_every_merchant_behind_the_same_credentials(connections: SandboxState) -> None:
    triggers = [
        BalanceThresholdTrigger(conn_id, threshold="10", poke_interval=0.2)
        for _ in range(100)
        for conn_id in (PB_CONN_ID, PB_NO_CREDIT_CONN_ID)
    ]
    payloads = await asyncio.gather(*(first_event(trigger) for trigger in triggers))
    seen = {(p["balance"]["conn_id"], p["balance"]["account_number"], p["balance"]["available"]) for p in payloads}
    assert seen == {(PB_CONN_ID, "****6062", "12.50"), (PB_NO_CREDIT_CONN_ID, "****6051", "457.22")}
    assert connections.tokens_issued == 1
    assert connections.request_count("pb_balance") >= 2  # one account's poll never answers another's


async def test_overlapping_reads_of_one_account_make_one_request(
    connections: SandboxState, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(*conn_uri_env("pb_alias", **pb_connection(sandbox.url)))  # the same account, another id
    hook = await aget_postage_hook(PB_CONN_ID, max_attempts=1)
    alias = await aget_postage_hook("pb_alias", max_attempts=1)
    results = await asyncio.gather(
        *(hook.aget_balances() for _ in range(25)),
        *(alias.aget_balances() for _ in range(25)),
    )
    assert requests_made(connections) == {"pb_token": 1, "pb_balance": 1}
    assert [balances[0].conn_id for balances in results] == [PB_CONN_ID] * 25 + ["pb_alias"] * 25
    assert {balances[0].available for balances in results} == {Decimal("12.50")}
    # Once answered, the next read is a new request.
    await hook.aget_balances()
    assert connections.request_count("pb_balance") == 2


@pytest.mark.parametrize("conn_id", [C2M_CONN_ID, PB_CONN_ID])
async def test_triggers_polling_together_coalesce(connections: SandboxState, conn_id: str) -> None:
    endpoint = BALANCE_ENDPOINT[conn_id]
    triggers = [BalanceThresholdTrigger(conn_id, threshold="100", poke_interval=0.2) for _ in range(50)]
    waiting = asyncio.gather(*(first_event(trigger, timeout=30) for trigger in triggers))
    await asyncio.sleep(1.0)  # about six rounds of 50 polls
    polls = connections.request_count(endpoint)
    assert 1 <= polls < len(triggers)
    set_balance(connections, conn_id, "100")
    payloads = await asyncio.wait_for(waiting, 10)
    assert [p["balance"]["available"] for p in payloads] == ["100.00"] * 50


# --- restarts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("conn_id", [C2M_CONN_ID, PB_CONN_ID])
async def test_running_a_trigger_again_after_a_restart_only_reads(connections: SandboxState, conn_id: str) -> None:
    endpoint = BALANCE_ENDPOINT[conn_id]
    first = BalanceThresholdTrigger(conn_id, threshold="50", poke_interval=0.2)
    running = asyncio.ensure_future(first_event(first))
    await when_requests(connections, endpoint, 2, lambda: None)
    running.cancel()  # the triggerer stops
    with pytest.raises(asyncio.CancelledError):
        await running
    # Another triggerer picks it up from the database, twice even (e.g. two triggerers for a moment).
    _, kwargs = first.serialize()
    again = [BalanceThresholdTrigger(**json.loads(json.dumps(kwargs))) for _ in range(2)]
    payloads, _ = await asyncio.gather(
        asyncio.gather(*(first_event(trigger) for trigger in again)),
        when_requests(connections, endpoint, 3, lambda: set_balance(connections, conn_id, "60")),
    )
    assert [p["balance"]["available"] for p in payloads] == ["60.00", "60.00"]
    assert set(requests_made(connections)) <= READ_ONLY
    assert connections.purchases == [] and connections.refills == []
    assert connections.c2m_balance() == Decimal("60.00" if conn_id == C2M_CONN_ID else "5.00")
    assert connections.pb_balance() == Decimal("60.00" if conn_id == PB_CONN_ID else "12.50")


# --- LowBalanceEventTrigger (Airflow 3 asset watcher) ----------------------------------------------


def test_low_balance_event_trigger_serializes_exactly() -> None:
    trigger = LowBalanceEventTrigger(postage_conn_id=C2M_CONN_ID, threshold="50", poke_interval=2)
    path, kwargs = trigger.serialize()
    module, name = path.rsplit(".", 1)
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (path, kwargs)
    assert json.loads(json.dumps(kwargs)) == kwargs and kwargs["threshold"] == "50.00"


def test_low_balance_event_trigger_fires_once_per_fall(connections: SandboxState) -> None:
    """Edge-triggered: one event when the balance falls below the mark, none while it stays low, and
    one more only after it was back up (re-armed) and fell again. It never ends by itself."""
    trigger = LowBalanceEventTrigger(postage_conn_id=C2M_CONN_ID, threshold="50", poke_interval=0.1)
    connections.set_c2m_balance(C2M_USER, "30.00")

    async def watch() -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []

        async def collect() -> None:
            async for event in trigger.run():
                events.append(event.payload)

        task = asyncio.ensure_future(collect())
        for _ in range(100):  # the first poll reads the connection too (slower on Airflow 2.11)
            if events:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # low all along: still one event only
        assert len(events) == 1
        connections.set_c2m_balance(C2M_USER, "80.00")
        await asyncio.sleep(0.4)  # back up: re-armed, no event
        assert len(events) == 1
        connections.set_c2m_balance(C2M_USER, "20.00")
        await asyncio.sleep(0.4)
        assert not task.done()
        task.cancel()
        return events

    events = asyncio.run(watch())
    assert [(e["status"], e["balance"]["available"]) for e in events] == [("below", "30.00"), ("below", "20.00")]
    assert connections.request_count("c2m_purchase") == 0


@pytest.mark.parametrize("conn_id", [C2M_CONN_ID, PB_CONN_ID])
async def test_waiters_started_across_the_interval_share_one_read_per_interval(
    connections: SandboxState, conn_id: str
) -> None:
    """100 deferred sensors on one account, started at different moments over one poll interval (as real
    sensors are), cost about one balance request per interval -- not one per sensor."""
    interval, intervals, waiters = 0.5, 4, 100
    endpoint = BALANCE_ENDPOINT[conn_id]

    async def wait_forever(delay: float) -> None:
        await asyncio.sleep(delay)
        await first_event(BalanceThresholdTrigger(conn_id, threshold="100000", poke_interval=interval), timeout=60)

    tasks = [asyncio.ensure_future(wait_forever(interval * i / waiters)) for i in range(waiters)]
    await asyncio.sleep(interval)  # every waiter has started
    connections.reset_counters()
    await asyncio.sleep(interval * intervals)
    made = connections.request_count(endpoint)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert made <= 1.2 * intervals + 1, made  # + 1: a window need not start on a read


async def test_a_failing_api_gets_one_request_per_interval_not_one_per_waiter(connections: SandboxState) -> None:
    connections.inject_fault("c2m_credit", status=503, times=1000)
    interval = 0.5

    async def wait(delay: float) -> None:
        await asyncio.sleep(delay)
        await first_event(BalanceThresholdTrigger(C2M_CONN_ID, threshold="1", poke_interval=interval), timeout=60)

    tasks = [asyncio.ensure_future(wait(interval * i / 50)) for i in range(50)]
    await asyncio.sleep(interval * 3)
    made = connections.request_count("c2m_credit")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert made <= 5, made


class FakeAssetStateStore:
    """Airflow 3.3's ``asset_state_store`` of a watcher with one asset: kept in the database, so it
    outlives a triggerer restart."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = value


async def events_within(trigger: LowBalanceEventTrigger, seconds: float) -> list[dict[str, Any]]:
    payloads: list[dict[str, Any]] = []

    async def collect() -> None:
        async for event in trigger.run():
            payloads.append(event.payload)

    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(collect(), seconds)
    return payloads


async def test_a_watcher_restarted_while_the_balance_stays_low_does_not_fire_again(connections: SandboxState) -> None:
    store = FakeAssetStateStore()
    connections.set_c2m_balance(sandbox_defaults.DEFAULT_C2M_USERNAME, "3.00")

    def watcher() -> LowBalanceEventTrigger:
        trigger = LowBalanceEventTrigger(C2M_CONN_ID, threshold="10", poke_interval=0.1)
        trigger.asset_state_store = store  # type: ignore[attr-defined]  # what the 3.3 triggerer injects
        return trigger

    assert len(await events_within(watcher(), 0.5)) == 1
    assert store.values == {"postage_armed": False}
    assert await events_within(watcher(), 0.5) == []  # "restarted": the account is still low, no second run
    connections.set_c2m_balance(sandbox_defaults.DEFAULT_C2M_USERNAME, "50.00")
    assert await events_within(watcher(), 0.3) == [] and store.values == {"postage_armed": True}
    connections.set_c2m_balance(sandbox_defaults.DEFAULT_C2M_USERNAME, "4.00")  # fell while it was "down"
    assert [p["balance"]["available"] for p in await events_within(watcher(), 0.3)] == ["4.00"]


async def test_watchers_of_one_account_share_one_poll_stream(connections: SandboxState) -> None:
    """Airflow 3.3 runs one ``open_shared_stream`` per key and fans it out to each watcher's filter."""
    low = LowBalanceEventTrigger(C2M_CONN_ID, threshold="10", poke_interval=0.1)
    lower = LowBalanceEventTrigger(C2M_CONN_ID, threshold="4", poke_interval=0.1)
    assert low.shared_stream_key() == lower.shared_stream_key()  # thresholds differ, the poll is one
    other = LowBalanceEventTrigger(PB_CONN_ID, threshold="10", poke_interval=0.1)
    assert other.shared_stream_key() != low.shared_stream_key()
    connections.set_c2m_balance(sandbox_defaults.DEFAULT_C2M_USERNAME, "6.00")

    stream = LowBalanceEventTrigger.open_shared_stream(low.serialize()[1])
    first = await anext(stream)
    second = await anext(stream)
    await stream.aclose()

    async def replay() -> Any:
        for item in (first, second):
            yield item

    assert [e.payload["threshold"] async for e in low.filter_shared_stream(replay())] == ["10.00"]
    assert [e async for e in lower.filter_shared_stream(replay())] == []  # 6.00 is not below 4.00
    assert connections.request_count("c2m_credit") == 2
