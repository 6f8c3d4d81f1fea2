"""Real DAG runs with ``dag.test()`` against the sandbox: the DAGs in tests/dags, run in this process.

Both Airflow versions run a task that failed with retries left again at once (retry_delay 0) within the
same ``dag.test()``, with the next try number, and run a deferred task's trigger inline; the journal is
then the real one (the task state store on 3.3, a Variable on 2.11)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import AIRFLOW_V3, C2M_CONN_ID, PB_CONN_ID

from airflow_provider_postage.protocol import pitney_bowes as pb
from airflow_provider_postage.sandbox import SandboxState
from airflow_provider_postage.sandbox import state as sandbox_defaults

BALANCE_ENDPOINT = {C2M_CONN_ID: "c2m_credit", PB_CONN_ID: "pb_balance"}
PURCHASE_ENDPOINT = {C2M_CONN_ID: "c2m_purchase", PB_CONN_ID: "pb_fund"}


def run_dag(dagbag: Any, dag_id: str, **conf: Any) -> Any:
    run = dagbag.get_dag(dag_id).test(run_conf=conf or None)
    assert run.state == "success", [(ti.task_id, ti.map_index, ti.state) for ti in run.get_task_instances()]
    return run


def xcom(run: Any, task_id: str, map_index: int = -1) -> Any:
    """The return value a task instance of ``run`` pushed."""
    from airflow.utils.session import create_session

    if AIRFLOW_V3:
        from airflow.models.xcom import XComModel

        query = XComModel.get_many(
            run_id=run.run_id, dag_ids=run.dag_id, task_ids=task_id, map_indexes=map_index, key="return_value"
        )
        with create_session() as session:
            rows = list(session.scalars(query))
            assert len(rows) == 1, rows
            return XComModel.deserialize_value(rows[0])
    from airflow.models.xcom import XCom

    return XCom.get_one(run_id=run.run_id, dag_id=run.dag_id, task_id=task_id, map_index=map_index)


def task_instance(run: Any, task_id: str, map_index: int = -1) -> Any:
    [ti] = [ti for ti in run.get_task_instances() if ti.task_id == task_id and ti.map_index == map_index]
    return ti


def bought(state: SandboxState, conn_id: str) -> list[str]:
    records = state.purchases if conn_id == C2M_CONN_ID else state.refills
    return [str(record.amount) for record in records]


def set_balance(state: SandboxState, conn_id: str, value: str) -> None:
    if conn_id == C2M_CONN_ID:
        state.set_c2m_balance(sandbox_defaults.DEFAULT_C2M_USERNAME, value)
    else:
        state.set_pb_balance(sandbox_defaults.DEFAULT_PB_PRN, value)


# --- purchase, then wait with the deferrable sensor -----------------------------------------------


@pytest.mark.parametrize(("conn_id", "amount"), [(C2M_CONN_ID, "15.00"), (PB_CONN_ID, "8.00")])
def test_purchase_then_wait_defers_until_the_balance_rises(
    connections: SandboxState, dagbag: Any, later: Any, task_log: Any, conn_id: str, amount: str
) -> None:
    endpoint = BALANCE_ENDPOINT[conn_id]
    assert dagbag.get_dag("postage_purchase_then_wait").get_task("wait").deferrable is True
    # Reads: fetch, buy (before and after), the sensor's one poke, the trigger's first poll. The balance
    # (20.00 once topped up) is then raised above the threshold, which the trigger's second poll sees.
    later(endpoint, 5, lambda: set_balance(connections, conn_id, "75"))
    run = run_dag(dagbag, "postage_purchase_then_wait", conn_id=conn_id, top_up_to="20", threshold="60")

    [fetched] = [b for b in xcom(run, "fetch") if b["account_type"] in ("credit", "postage")]
    assert fetched["available"] == ("5.00" if conn_id == C2M_CONN_ID else "12.50")
    result = xcom(run, "buy")
    assert (result["status"], result["amount"]) == ("purchased", amount)
    assert result["balance_after"] == ("20.00" if conn_id == C2M_CONN_ID else "20.50")
    waited = xcom(run, "wait")
    assert (waited["conn_id"], waited["available"]) == (conn_id, "75.00")
    assert bought(connections, conn_id) == [amount]
    assert connections.request_count(endpoint) == 6
    assert connections.tokens_issued == (1 if conn_id == PB_CONN_ID else 0)  # hooks and trigger share it
    assert "running trigger in line" in task_log()
    if AIRFLOW_V3:  # Airflow 3 records the trigger the task deferred to
        from airflow.models.trigger import Trigger
        from airflow.utils.session import create_session

        with create_session() as session:
            trigger = session.get(Trigger, task_instance(run, "wait").trigger_id)
            assert trigger is not None
            assert (trigger.classpath, trigger.kwargs) == (
                "airflow_provider_postage.triggers.postage.BalanceThresholdTrigger",
                {
                    "postage_conn_id": conn_id,
                    "threshold": "60.00",
                    "account_type": None,
                    "condition": "at_least",
                    "poke_interval": 1.0,
                    "timeout": [10.0, 30.0],
                },
            )


def test_purchase_then_wait_needs_no_deferral_when_the_purchase_reaches_the_threshold(
    connections: SandboxState, dagbag: Any
) -> None:
    run = run_dag(dagbag, "postage_purchase_then_wait", conn_id=PB_CONN_ID, top_up_to="50", threshold="50")
    assert (xcom(run, "buy")["amount"], xcom(run, "wait")["available"]) == ("38.00", "50.50")
    assert bought(connections, PB_CONN_ID) == ["38.00"]
    assert connections.request_count("pb_balance") == 4
    assert task_instance(run, "wait").trigger_id is None


# --- retries --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conn_id", "dag_id", "amount", "after"),
    [
        (C2M_CONN_ID, "postage_retry_amount", "20.00", "25.00"),
        (C2M_CONN_ID, "postage_retry_top_up", "15.00", "20.00"),
        (PB_CONN_ID, "postage_retry_amount", "20.00", "32.50"),
        (PB_CONN_ID, "postage_retry_top_up", "8.00", "20.50"),
    ],
)
def test_retry_after_a_lost_purchase_reply_buys_nothing_more(
    connections: SandboxState, dagbag: Any, conn_id: str, dag_id: str, amount: str, after: str
) -> None:
    if conn_id == C2M_CONN_ID:
        # The purchase is applied and its reply lost; the hook's confirming balance read then fails on every
        # attempt (the operator reads the balance once before buying), so the first try fails not knowing.
        attempts = dagbag.get_dag(dag_id).get_task("buy").hook_params["max_attempts"]
        connections.inject_fault("c2m_purchase", apply=True, drop=True)
        connections.inject_fault("c2m_credit", status=500, times=attempts, after=1)
    else:
        connections.inject_fault("pb_fund", apply=True, drop=True)
    run = run_dag(dagbag, dag_id, conn_id=conn_id, value="20")

    buy = task_instance(run, "buy")
    assert (buy.state, buy.try_number) == ("success", 2)
    result = xcom(run, "buy")
    txn = pb.make_transaction_id(dag_id, run.run_id, "buy", -1)
    assert result == {
        "provider": "click2mail" if conn_id == C2M_CONN_ID else "pitney_bowes",
        "conn_id": conn_id,
        "status": "already_applied",
        "amount": amount,
        "currency": "USD",
        "balance_before": "5.00" if conn_id == C2M_CONN_ID else "12.50",
        "balance_after": after,
        "transaction_id": None if conn_id == C2M_CONN_ID else txn,
    }
    assert bought(connections, conn_id) == [amount]
    assert connections.request_count(PURCHASE_ENDPOINT[conn_id]) == 1
    if conn_id == PB_CONN_ID:
        assert [r.transaction_id for r in connections.refills] == [txn]
    assert journal_rows(run, txn) == 0  # cleared once the purchase was known


def journal_rows(run: Any, txn: str) -> int:
    """Open entries of the purchase journal left for ``run`` (a purchase whose outcome is unknown): task
    state store rows on 3.3 (a done entry, kept to stop a rerun from buying again, does not count), a
    Variable on 2.11."""
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        if AIRFLOW_V3:
            from airflow.models.task_state_store import TaskStateStoreModel

            values = session.scalars(select(TaskStateStoreModel.value).where(TaskStateStoreModel.run_id == run.run_id))
            return sum(1 for value in values if '"done"' not in value)
        else:
            from airflow.models import Variable

            query = select(func.count()).where(Variable.key == f"postage_purchase_intent__{txn}")
        return session.scalar(query)


def test_journal_is_kept_while_the_outcome_is_unknown(connections: SandboxState, dagbag: Any) -> None:
    """A Click2Mail purchase whose outcome nobody can tell: the retry refuses to buy and fails for good,
    leaving the journal entry for a person to check."""
    connections.inject_fault("c2m_purchase", status=500)  # not applied, and the reply says nothing
    run = dagbag.get_dag("postage_retry_amount").test(run_conf={"conn_id": C2M_CONN_ID, "value": "20"})
    assert run.state == "failed"
    buy = task_instance(run, "buy")
    assert (buy.state, buy.try_number) == ("failed", 2)
    assert connections.request_count("c2m_purchase") == 1 and connections.purchases == []
    assert journal_rows(run, pb.make_transaction_id("postage_retry_amount", run.run_id, "buy", -1)) == 1


# --- dynamic task mapping -------------------------------------------------------------------------


def test_mapped_fetch_and_purchase(connections: SandboxState, dagbag: Any) -> None:
    run = run_dag(dagbag, "postage_mapped")
    assert [(b["conn_id"], b["account_type"], b["available"]) for b in xcom(run, "fetch", 0)] == [
        (C2M_CONN_ID, "credit", "5.00")
    ]
    assert [(b["conn_id"], b["account_type"]) for b in xcom(run, "fetch", 1)] == [
        (PB_CONN_ID, "postage"),
        (PB_CONN_ID, "line_of_credit"),
        ("pb_sandbox_postage_only", "postage"),
    ]
    ids = [pb.make_transaction_id("postage_mapped", run.run_id, "buy", index) for index in (0, 1)]
    results = [xcom(run, "buy", index) for index in (0, 1)]
    assert [(r["status"], r["amount"], r["transaction_id"]) for r in results] == [
        ("purchased", "10.00", ids[0]),
        ("purchased", "20.00", ids[1]),
    ]
    assert ids[0] != ids[1]
    assert sorted((str(r.amount), r.transaction_id) for r in connections.refills) == sorted(
        [("10.00", ids[0]), ("20.00", ids[1])]
    )
    assert connections.request_count("c2m_credit") == 1 and connections.request_count("pb_fund") == 2


# --- reschedule mode ------------------------------------------------------------------------------


def test_sensor_in_reschedule_mode(connections: SandboxState, dagbag: Any, later: Any) -> None:
    later("c2m_credit", 1, lambda: set_balance(connections, C2M_CONN_ID, "75"))
    run = run_dag(dagbag, "postage_wait_reschedule", conn_id=C2M_CONN_ID, threshold="50")
    assert xcom(run, "wait")["available"] == "75.00"
    assert connections.request_count("c2m_credit") == 2  # one poke per run of the task
    assert reschedules(task_instance(run, "wait")) == 1


def reschedules(ti: Any) -> int:
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    if AIRFLOW_V3:
        where = [TaskReschedule.ti_id == ti.id]
    else:
        where = [TaskReschedule.run_id == ti.run_id, TaskReschedule.task_id == ti.task_id]
    with create_session() as session:
        return session.scalar(select(func.count()).where(*where))
