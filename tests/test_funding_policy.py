"""The funding policy over real HTTP against the sandbox: one purchase per account at a time, credit still
settling counted, spend caps and the circuit breaker refusing before any request, the ledger, receipts."""

from __future__ import annotations

import json
import threading
import uuid
from decimal import Decimal
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
from conftest import AIRFLOW_V3, C2M_CONN_ID, PB_CONN_ID, FakeTaskInstance, c2m_connection, conn_uri_env, task_context

from airflow_provider_postage import _ledger
from airflow_provider_postage.operators.postage import PurchaseCreditOperator
from airflow_provider_postage.protocol.errors import PostageAPIError
from airflow_provider_postage.sandbox import SandboxServer, SandboxState

FAST: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.02, "max_attempts": 2}


def new_ti() -> FakeTaskInstance:
    return FakeTaskInstance(run_id=f"manual__{uuid.uuid4().hex}")


def buy(conn_id: str = C2M_CONN_ID, **kwargs: Any) -> PurchaseCreditOperator:
    return PurchaseCreditOperator(task_id="buy", postage_conn_id=conn_id, hook_params=FAST, **kwargs)


def ledger_of(store: Any) -> dict[str, Any]:
    [key] = [key for key in store.values if key.startswith("postage_ledger.")]
    return json.loads(store.values[key])


def store_for(journal_store: Any) -> Any:
    """A task state store per task instance on Airflow 3 (fake), the real Variable journal on 2.11."""
    from conftest import FakeTaskStateStore

    return FakeTaskStateStore() if AIRFLOW_V3 else None


# --- one purchase per account at a time, and credit still settling ------------------------------------


@pytest.mark.parametrize("conn_id", [C2M_CONN_ID, PB_CONN_ID])
def test_concurrent_top_ups_of_one_account_buy_once(
    connections: SandboxState, ledger_store: Any, journal_store: Any, conn_id: str
) -> None:
    """Two task instances (mapped tasks, two runs or two DAGs alike) top up one account at once; the
    balances do not show a purchase that is still settling, so without the policy both would buy."""
    connections.settle_seconds = 60
    ledger_store.settle_seconds = 0.05
    results: list[Any] = []

    def top_up() -> None:
        if not AIRFLOW_V3:  # Airflow 2's execute() guard keeps its state in a thread-local made at import
            from airflow.models.baseoperator import ExecutorSafeguard

            ExecutorSafeguard._sentinel.callers = {}
        try:
            results.append(buy(conn_id, top_up_to="100").execute(task_context(new_ti(), store_for(journal_store))))
        except Exception as error:  # surfaced by the assertion below
            results.append(error)

    threads = [threading.Thread(target=top_up) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    statuses = sorted(r["status"] if isinstance(r, dict) else type(r).__name__ for r in results)
    assert statuses == ["purchased", "skipped"], results
    charged = connections.purchases if conn_id == C2M_CONN_ID else connections.refills
    assert len(charged) == 1
    entries = ledger_of(ledger_store)["entries"]
    assert [(e["status"], e["amount"]) for e in entries] == [("purchased", str(charged[0].amount))]


def test_a_later_top_up_counts_credit_still_settling(
    connections: SandboxState, ledger_store: Any, journal_store: Any, task_log: Any
) -> None:
    connections.settle_seconds = 60  # bought funds show a minute later, as on the real services
    first = buy(top_up_to="100").execute(task_context(new_ti(), store_for(journal_store)))
    assert (first["status"], first["amount"], first["balance_after"]) == ("purchased", "95.00", "5.00")
    second = buy(top_up_to="100").execute(task_context(new_ti(), store_for(journal_store)))
    assert second["status"] == "skipped"
    assert "+ 95.00 settling" in task_log()
    third = buy(top_up_to="120").execute(task_context(new_ti(), store_for(journal_store)))
    assert (third["status"], third["amount"]) == ("purchased", "20.00")  # only what is still missing
    assert [str(p.amount) for p in connections.purchases] == ["95.00", "20.00"]


def test_a_busy_account_is_refused_when_asked_not_to_wait(
    connections: SandboxState, sandbox: SandboxServer, ledger_store: Any, journal_store: Any
) -> None:
    ledger = _ledger.AccountLedger("click2mail", f"demo-user@127.0.0.1:{sandbox.port}")
    ledger_store.values[ledger.lease_key] = json.dumps({"holder": "other-task", "until": "2999-01-01T00:00:00+00:00"})
    with pytest.raises(AirflowFailException, match=r"another purchase on click2mail account .* is in progress"):
        buy(amount="20", wait_for_other_purchases=0).execute(task_context(new_ti(), store_for(journal_store)))
    assert connections.request_count("c2m_purchase") == 0


# --- caps and the breaker ------------------------------------------------------------------------------


def test_a_daily_cap_refuses_before_any_request_and_says_what_to_do(
    connections: SandboxState, sandbox: SandboxServer, journal_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(*conn_uri_env("c2m_capped", **c2m_connection(sandbox.url, max_daily_amount="50")))
    buy("c2m_capped", amount="30").execute(task_context(new_ti(), store_for(journal_store)))
    with pytest.raises(AirflowFailException) as caught:
        buy("c2m_capped", amount="30").execute(task_context(new_ti(), store_for(journal_store)))
    message = str(caught.value)
    assert "would bring today's spending to 60.00, above max_daily_amount 50.00 (spent 30.00 since" in message
    assert "the window resets at" in message and "raise max_daily_amount in the extras of connection" in message
    assert len(connections.purchases) == 1 and connections.request_count("c2m_purchase") == 1


def test_an_operator_may_lower_a_cap_but_not_raise_it(
    connections: SandboxState, sandbox: SandboxServer, journal_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(*conn_uri_env("c2m_capped", **c2m_connection(sandbox.url, max_monthly_amount="100")))
    with pytest.raises(AirflowFailException, match=r"above max_monthly_amount 100\.00"):
        buy("c2m_capped", amount="150", max_monthly_amount="1000").execute(
            task_context(new_ti(), store_for(journal_store))
        )
    with pytest.raises(AirflowFailException, match=r"above max_daily_amount 10\.00"):
        buy("c2m_capped", amount="20", max_daily_amount="10").execute(task_context(new_ti(), store_for(journal_store)))
    assert connections.request_count("c2m_purchase") == 0


@pytest.mark.parametrize("conn_id", [C2M_CONN_ID, PB_CONN_ID])
def test_the_breaker_opens_after_three_refusals_and_closes_when_its_variable_is_deleted(
    connections: SandboxState, ledger_store: Any, journal_store: Any, conn_id: str
) -> None:
    endpoint = "c2m_purchase" if conn_id == C2M_CONN_ID else "pb_fund"
    connections.inject_fault(endpoint, status=400, times=3)
    for _ in range(3):
        with pytest.raises(PostageAPIError):
            buy(conn_id, amount="20").execute(task_context(new_ti(), store_for(journal_store)))
    with pytest.raises(AirflowFailException, match="are stopped: the last 3 were refused") as caught:
        buy(conn_id, amount="20").execute(task_context(new_ti(), store_for(journal_store)))
    assert connections.request_count(endpoint) == 3  # the fourth was refused before any request
    [breaker_key] = [key for key in ledger_store.values if key.startswith("postage_breaker.")]
    assert f"airflow variables delete {breaker_key}" in str(caught.value)

    del ledger_store.values[breaker_key]  # what `airflow variables delete` does
    result = buy(conn_id, amount="20").execute(task_context(new_ti(), store_for(journal_store)))
    assert result["status"] == "purchased"
    statuses = [e["status"] for e in ledger_of(ledger_store)["entries"]]
    assert statuses == ["refused", "refused", "refused", "purchased"]


# --- the ledger in real Airflow Variables, and receipts in a real DAG run ------------------------------


def test_the_ledger_lives_in_airflow_variables_in_a_dag_run(
    connections: SandboxState, sandbox: SandboxServer, dagbag: Any, ledger_store: Any
) -> None:
    from airflow.models.variable import Variable

    _ledger.STORE[0] = _ledger.VariableStore()  # the real store, as every deployment uses
    run = dagbag.get_dag("postage_purchase_then_wait").test(
        run_conf={"conn_id": C2M_CONN_ID, "top_up_to": "30", "threshold": "30"}
    )
    assert run.state == "success"
    ledger = _ledger.AccountLedger("click2mail", f"demo-user@127.0.0.1:{sandbox.port}")
    try:
        document = json.loads(Variable.get(ledger.ledger_key))
        [entry] = document["entries"]
        assert (entry["status"], entry["amount"], entry["dag_id"], entry["run_id"]) == (
            "purchased",
            "25.00",
            "postage_purchase_then_wait",
            run.run_id,
        )
        assert document["balances"] and Variable.get(ledger.lease_key, None) is None  # the lease was released
        if AIRFLOW_V3:
            assert_receipt(run, entry)
    finally:
        for key in (ledger.ledger_key, ledger.lease_key, ledger.breaker_key):
            Variable.delete(key)


def assert_receipt(run: Any, entry: dict[str, Any]) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri.like("postage://click2mail/%"), AssetEvent.source_run_id == run.run_id)
        ).all()
        assert len(events) == 1
        extra = events[0].extra
    assert (extra["status"], extra["amount"], extra["conn_id"]) == ("purchased", entry["amount"], C2M_CONN_ID)
    assert "4111111111111111" not in json.dumps(extra)
    assert Decimal(extra["balance_before"]) == Decimal("5.00")


def test_a_settled_purchase_spent_later_is_not_settling_again(
    connections: SandboxState, ledger_store: Any, journal_store: Any
) -> None:
    """Bought 95.00 (settling), the wait for funds saw it arrive, then the money was spent: the next top-up
    buys what is missing instead of counting the spent purchase as still on its way."""
    from airflow_provider_postage.sensors.postage import BalanceThresholdSensor

    connections.settle_seconds = 1
    first = buy(top_up_to="100").execute(task_context(new_ti(), store_for(journal_store)))
    assert (first["status"], first["amount"]) == ("purchased", "95.00")
    connections.settle_seconds = 0
    import time

    time.sleep(1.2)  # the funds arrive
    assert BalanceThresholdSensor(task_id="wait", postage_conn_id=C2M_CONN_ID, threshold="100").poke({}).is_done
    connections.set_c2m_balance("demo-user", "30.00")  # spent
    second = buy(top_up_to="100").execute(task_context(new_ti(), store_for(journal_store)))
    assert (second["status"], second["amount"]) == ("purchased", "70.00")
