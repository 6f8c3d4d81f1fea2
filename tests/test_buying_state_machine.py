"""A stateful property test of buying (Hypothesis ``RuleBasedStateMachine``) against the sandbox: random
interleavings of top-ups and fixed purchases on both services, from new task instances and from later
tries of earlier ones, with faults before and after the purchase is applied, lost replies, settlement
delays and spending -- checking after every step that money was never bought twice or beyond a cap.

Hypothesis prints the seed and the steps of any failure, so it can be replayed."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from conftest import AIRFLOW_V3, C2M_CONN_ID, PB_CONN_ID, FakeTaskInstance, FakeTaskStateStore, task_context
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from airflow_provider_postage import _ledger
from airflow_provider_postage.operators.postage import PurchaseCreditOperator
from airflow_provider_postage.protocol.errors import PostageError
from airflow_provider_postage.sandbox import SandboxState
from airflow_provider_postage.sandbox import state as defaults

HOOK: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.02, "max_attempts": 2, "timeout": (0.5, 0.5)}
MAX_AMOUNT = Decimal("200")
DAILY_CAP = Decimal("600")
ENDPOINT = {C2M_CONN_ID: "c2m_purchase", PB_CONN_ID: "pb_fund"}
FAULTS = [
    {},
    {"status": 500},
    {"status": 400},
    {"apply": True, "drop": True},
    {"apply": True, "wire": "tls_alert"},
    {"apply": True, "wire": "reset"},
    {"wire": "corrupt_record"},
]


def make_machine(state: SandboxState) -> type[RuleBasedStateMachine]:
    class Buying(RuleBasedStateMachine):
        tasks = Bundle("tasks")

        @initialize()
        def fresh(self) -> None:
            state.reset()
            state.settle_seconds = 0
            _ledger.STORE[0] = _ledger.MemoryStore()
            self.attempted: dict[str, set[str]] = {C2M_CONN_ID: set(), PB_CONN_ID: set()}
            self.journals: dict[str, FakeTaskStateStore | None] = {}

        def _run(self, ti: FakeTaskInstance, kwargs: dict[str, Any]) -> None:
            key = f"{ti.dag_id}|{ti.run_id}|{ti.task_id}"
            store = self.journals.setdefault(key, FakeTaskStateStore() if AIRFLOW_V3 else None)
            operator = PurchaseCreditOperator(
                task_id=ti.task_id, hook_params=HOOK, max_amount=str(MAX_AMOUNT), wait_for_other_purchases=0, **kwargs
            )
            self.attempted[kwargs["postage_conn_id"]].add(key)
            try:
                operator.execute(task_context(ti, store))
            except PostageError:
                pass
            except Exception as error:  # AirflowFailException: the policy or the journal refused, by design
                if type(error).__name__ != "AirflowFailException":
                    raise

        @rule(
            target=tasks,
            conn_id=st.sampled_from([C2M_CONN_ID, PB_CONN_ID]),
            mode=st.sampled_from(["top_up_to", "amount"]),
            value=st.integers(min_value=10, max_value=180),
            fault=st.sampled_from(FAULTS),
        )
        def buy(self, conn_id: str, mode: str, value: int, fault: dict[str, Any]) -> Any:
            if fault:
                state.inject_fault(ENDPOINT[conn_id], **fault)
            ti = FakeTaskInstance(run_id=f"run-{uuid.uuid4().hex[:8]}")
            kwargs = {"postage_conn_id": conn_id, mode: str(value), "max_daily_amount": str(DAILY_CAP)}
            self._run(ti, kwargs)
            state.clear_faults()
            return (ti, kwargs)

        @rule(task=tasks, fault=st.sampled_from(FAULTS))
        def retry(self, task: Any, fault: dict[str, Any]) -> None:
            """A later try of an earlier task instance (Airflow's retry, or a cleared task)."""
            ti, kwargs = task
            if fault:
                state.inject_fault(ENDPOINT[kwargs["postage_conn_id"]], **fault)
            self._run(FakeTaskInstance(ti.dag_id, ti.run_id, ti.task_id, ti.map_index, ti.try_number + 1), kwargs)
            state.clear_faults()

        @rule(conn_id=st.sampled_from([C2M_CONN_ID, PB_CONN_ID]), spent=st.integers(min_value=0, max_value=100))
        def spend(self, conn_id: str, spent: int) -> None:
            """Mail sent, labels printed: the balance goes down outside the provider."""
            if conn_id == C2M_CONN_ID:
                balance = state.c2m_balance(defaults.DEFAULT_C2M_USERNAME)
                state.set_c2m_balance(defaults.DEFAULT_C2M_USERNAME, max(Decimal(0), balance - spent))
            else:
                state.set_pb_balance(defaults.DEFAULT_PB_PRN, max(Decimal(0), state.pb_balance() - spent))

        @rule(seconds=st.sampled_from([0, 30]))
        def settlement(self, seconds: int) -> None:
            state.settle_seconds = seconds

        @invariant()
        def at_most_one_charge_per_task_instance(self) -> None:
            if not hasattr(self, "attempted"):
                return
            refill_ids = [refill.transaction_id for refill in state.refills]
            assert len(refill_ids) == len(set(refill_ids)), refill_ids
            assert len(state.refills) <= len(self.attempted[PB_CONN_ID])
            assert len(state.purchases) <= len(self.attempted[C2M_CONN_ID])

        @invariant()
        def never_above_a_cap(self) -> None:
            for charges in (state.purchases, state.refills):
                assert all(charge.amount <= MAX_AMOUNT for charge in charges)
                assert sum((charge.amount for charge in charges), Decimal(0)) <= DAILY_CAP

        @invariant()
        def every_charge_is_in_the_ledger(self) -> None:
            if not hasattr(self, "attempted"):
                return
            store = _ledger.STORE[0]
            assert isinstance(store, _ledger.MemoryStore)
            for provider, charges in (("click2mail", state.purchases), ("pitney_bowes", state.refills)):
                entries = [
                    entry
                    for key, raw in store.values.items()
                    if key.startswith(f"postage_ledger.{provider}.")
                    for entry in json.loads(raw)["entries"]
                ]
                maybe_charged = [
                    e for e in entries if e["status"] in ("pending", "purchased", "unknown", "already_applied")
                ]
                assert len(charges) <= len(maybe_charged), (provider, charges, entries)

    return Buying


def test_buying_holds_its_invariants(connections: SandboxState, airflow_db: None) -> None:
    machine = make_machine(connections)
    machine.TestCase.settings = settings(
        max_examples=12,
        stateful_step_count=8,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    try:
        machine.TestCase().runTest()
    finally:
        _ledger.STORE[0] = _ledger.MemoryStore()


pytestmark = pytest.mark.timeout(600)
