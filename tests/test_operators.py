"""FetchBalancesOperator and PurchaseCreditOperator, called directly against the sandbox over real HTTP.

A task's next try is simulated as Airflow runs it: a new operator instance with the same task instance
identity (dag id, run id, task id, map index), a higher try number and the same journal -- the task state
store on Airflow 3 (a fake one: the real one needs the task runner; test_dag_runs.py proves the real one),
a real Airflow Variable in the test database on 2.11."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from conftest import (
    AIRFLOW_V3,
    BILLING,
    C2M_CONN_ID,
    PB_CONN_ID,
    PB_NO_CREDIT_CONN_ID,
    FakeTaskInstance,
    FakeTaskStateStore,
    c2m_connection,
    conn_uri_env,
    task_context,
)

from airflow_provider_postage._journal import is_done, journal_location, purchase_journal
from airflow_provider_postage._tokens import TOKENS
from airflow_provider_postage.hooks.postage import PitneyBowesHook
from airflow_provider_postage.operators.postage import (
    DEFAULT_MAX_AMOUNT,
    FetchBalancesOperator,
    PurchaseCreditOperator,
)
from airflow_provider_postage.protocol import pitney_bowes as pb
from airflow_provider_postage.protocol.errors import (
    PostageAPIError,
    PostageTransportError,
    PostageValidationError,
    PurchaseOutcomeUnknownError,
)
from airflow_provider_postage.sandbox import SandboxServer, SandboxState
from airflow_provider_postage.sandbox import state as sandbox_defaults

#: Reads retry quickly; purchases are never retried by the hook anyway.
HOOK_READ_ATTEMPTS = 4
FAST: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.02, "max_attempts": HOOK_READ_ATTEMPTS}
RESULT_KEYS = {
    "provider",
    "conn_id",
    "status",
    "amount",
    "currency",
    "balance_before",
    "balance_after",
    "transaction_id",
}
BALANCE_KEYS = {"provider", "conn_id", "account_type", "account_number", "currency", "available", "as_of"}
PURCHASE_ENDPOINT = {C2M_CONN_ID: "c2m_purchase", PB_CONN_ID: "pb_fund"}


def requests_made(state: SandboxState) -> dict[str, int]:
    return {name: count for name, count in state.counters()["requests"].items() if count}


def bought(state: SandboxState, conn_id: str) -> list[str]:
    """Amounts the sandbox really charged (Click2Mail purchases or Pitney Bowes refills)."""
    records = state.purchases if conn_id == C2M_CONN_ID else state.refills
    return [str(record.amount) for record in records]


@pytest.fixture
def ti() -> FakeTaskInstance:
    """A task instance of its own per test, so that journals (Variables on 2.11) never meet."""
    return FakeTaskInstance(run_id=f"manual__{uuid.uuid4().hex}")


def next_try(ti: FakeTaskInstance) -> FakeTaskInstance:
    return FakeTaskInstance(ti.dag_id, ti.run_id, ti.task_id, ti.map_index, ti.try_number + 1)


def purchase(**kwargs: Any) -> PurchaseCreditOperator:
    kwargs.setdefault("task_id", "buy")
    kwargs.setdefault("hook_params", FAST)
    return PurchaseCreditOperator(**kwargs)


def txn_of(ti: FakeTaskInstance) -> str:
    return pb.make_transaction_id(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)


def journal_entry(ti: FakeTaskInstance, store: FakeTaskStateStore | None) -> dict[str, Any] | None:
    """The journal's *open* entry (a purchase whose outcome is unknown); a done entry counts as none."""
    entry = purchase_journal(task_context(ti, store), txn_of(ti)).get()
    return None if is_done(entry) else entry


# --- FetchBalancesOperator ------------------------------------------------------------------------


def test_fetch_one_click2mail_connection(connections: SandboxState) -> None:
    result = FetchBalancesOperator(task_id="fetch", postage_conn_ids=C2M_CONN_ID).execute({})
    assert [balance | {"as_of": None} for balance in result] == [
        {
            "provider": "click2mail",
            "conn_id": C2M_CONN_ID,
            "account_type": "credit",
            "account_number": None,
            "currency": "USD",
            "available": "5.00",
            "as_of": None,
            "allow_negative": False,
        }
    ]
    assert requests_made(connections) == {"c2m_credit": 1}


def test_fetch_a_list_of_connections_of_either_type(connections: SandboxState) -> None:
    connections.set_c2m_balance(sandbox_defaults.DEFAULT_C2M_USERNAME, "1234.5")
    result = FetchBalancesOperator(
        task_id="fetch", postage_conn_ids=[C2M_CONN_ID, PB_CONN_ID, PB_NO_CREDIT_CONN_ID]
    ).execute({})
    assert [(b["conn_id"], b["account_type"], b["available"], b["account_number"]) for b in result] == [
        (C2M_CONN_ID, "credit", "1234.50", None),
        (PB_CONN_ID, "postage", "12.50", "****6062"),
        (PB_CONN_ID, "line_of_credit", "500.00", "************8952"),
        (PB_NO_CREDIT_CONN_ID, "postage", "457.22", "****6051"),
    ]
    line_of_credit = result[2]
    assert (line_of_credit["balance_owed"], line_of_credit["credit_limit"]) == ("0.00", "5000.00")
    assert requests_made(connections) == {"c2m_credit": 1, "pb_token": 1, "pb_balance": 2}


def test_fetch_result_is_plain_json_without_secrets_or_raw_payload(connections: SandboxState) -> None:
    result = FetchBalancesOperator(task_id="fetch", postage_conn_ids=[C2M_CONN_ID, PB_CONN_ID]).execute({})
    assert json.loads(json.dumps(result)) == result  # JSON-native: no Decimal, no datetime
    for balance in result:
        assert (
            BALANCE_KEYS
            <= set(balance)
            <= BALANCE_KEYS
            | {
                "allow_negative",
                "balance_owed",
                "credit_limit",
                "minimum_amount_due",
                "minimum_due_date",
            }
        )
        assert all(isinstance(value, (str, bool, type(None))) for value in balance.values())
    token = TOKENS.get(PitneyBowesHook(PB_CONN_ID).settings.credential_key, lambda: pytest.fail("no cached token"))
    text = json.dumps(result)
    for secret in (
        sandbox_defaults.DEFAULT_C2M_PASSWORD,
        sandbox_defaults.DEFAULT_PB_API_SECRET,
        sandbox_defaults.DEFAULT_PB_API_KEY,
        BILLING["card_number_secret"],
        token,
    ):
        assert secret not in text
    for raw in ("<credit>", "availableBalance", "accountType", "currencyCode", "allowNegative"):
        assert raw not in text


def test_fetch_logs_a_readable_table(connections: SandboxState, task_log: Any) -> None:
    FetchBalancesOperator(task_id="fetch", postage_conn_ids=[C2M_CONN_ID, PB_CONN_ID]).execute({})
    table = (
        "connection   provider      account         number            available  currency\n"
        "-----------  ------------  --------------  ----------------  ---------  --------\n"
        "c2m_sandbox  click2mail    credit          -                      5.00  USD\n"
        "pb_sandbox   pitney_bowes  postage         ****6062              12.50  USD\n"
        "pb_sandbox   pitney_bowes  line_of_credit  ************8952     500.00  USD"
    )
    assert f"Balances:\n{table}" in task_log()


@pytest.mark.parametrize("conn_ids", [[], ()])
def test_fetch_refuses_no_connection(connections: SandboxState, conn_ids: Any) -> None:
    with pytest.raises(PostageValidationError, match="no connection ids given"):
        FetchBalancesOperator(task_id="fetch", postage_conn_ids=conn_ids).execute({})
    assert requests_made(connections) == {}


def test_fetch_connection_ids_are_templated(connections: SandboxState) -> None:
    operator = FetchBalancesOperator(task_id="fetch", postage_conn_ids="{{ params.conn }}")
    operator.render_template_fields({"params": {"conn": PB_NO_CREDIT_CONN_ID}})
    assert [b["available"] for b in operator.execute({})] == ["457.22"]


# --- PurchaseCreditOperator: arguments --------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"amount": "10", "top_up_to": "20"}])
def test_exactly_one_of_amount_or_top_up_to(kwargs: dict[str, Any]) -> None:
    with pytest.raises(PostageValidationError, match="exactly one of amount or top_up_to"):
        purchase(postage_conn_id=C2M_CONN_ID, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field", "problem"),
    [
        ({"amount": 12.5}, "amount", "floats are inexact"),
        ({"amount": True}, "amount", "not bool"),
        ({"amount": "ten"}, "amount", "is not a number"),
        ({"amount": "10.001"}, "amount", "at most two decimal places"),
        ({"amount": 0}, "amount", "greater than zero"),
        ({"amount": "-5"}, "amount", "greater than zero"),
        ({"top_up_to": 50.0}, "top_up_to", "floats are inexact"),
        ({"top_up_to": "-1"}, "top_up_to", "must not be negative"),
        ({"amount": "10", "max_amount": 100.0}, "max_amount", "floats are inexact"),
        ({"amount": "10", "max_amount": "0"}, "max_amount", "greater than zero"),
    ],
)
def test_bad_values_refused_when_the_dag_is_parsed(kwargs: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(PostageValidationError, match=problem) as caught:
        purchase(postage_conn_id=C2M_CONN_ID, **kwargs)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("field", "rendered"), [("amount", "ten"), ("amount", "10.001"), ("top_up_to", "-3"), ("max_amount", "1.5.0")]
)
def test_templated_values_are_checked_once_rendered_before_any_request(
    connections: SandboxState, ti: FakeTaskInstance, journal_store: Any, field: str, rendered: str
) -> None:
    kwargs = {"amount": "10", field: "{{ params.value }}"} if field != "top_up_to" else {field: "{{ params.value }}"}
    operator = purchase(postage_conn_id=C2M_CONN_ID, **kwargs)  # accepted: only a template yet
    operator.render_template_fields({"params": {"value": rendered}})
    assert getattr(operator, field) == rendered
    with pytest.raises(PostageValidationError) as caught:
        operator.execute(task_context(ti, journal_store))
    assert caught.value.field == field
    assert requests_made(connections) == {}


@pytest.mark.parametrize(
    ("conn_id", "amount", "field"),
    [
        (C2M_CONN_ID, "9.99", "amount"),  # below the Click2Mail minimum
        (PB_CONN_ID, "10.50", "amount"),  # Pitney Bowes refills whole dollars
        (C2M_CONN_ID, "500.01", "amount"),  # above the default cap
    ],
)
def test_amounts_the_api_would_refuse_fail_before_any_request(
    connections: SandboxState, ti: FakeTaskInstance, journal_store: Any, conn_id: str, amount: str, field: str
) -> None:
    with pytest.raises(PostageValidationError) as caught:
        purchase(postage_conn_id=conn_id, amount=amount).execute(task_context(ti, journal_store))
    assert caught.value.field == field
    assert requests_made(connections) == {}


# --- PurchaseCreditOperator: amount -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "expected"), [("25", "25.00"), (25, "25.00"), (Decimal("25.5"), "25.50"), (" 10.01 ", "10.01")]
)
def test_click2mail_purchase_of_an_amount(
    connections: SandboxState, ti: FakeTaskInstance, journal_store: Any, amount: object, expected: str
) -> None:
    result = purchase(postage_conn_id=C2M_CONN_ID, amount=amount).execute(task_context(ti, journal_store))
    after = str(Decimal("5.00") + Decimal(expected))
    assert result == {
        "provider": "click2mail",
        "conn_id": C2M_CONN_ID,
        "status": "purchased",
        "amount": expected,
        "currency": "USD",
        "balance_before": "5.00",
        "balance_after": after,
        "transaction_id": None,
    }
    assert bought(connections, C2M_CONN_ID) == [expected]
    assert requests_made(connections) == {"c2m_credit": 2, "c2m_purchase": 1}
    assert journal_entry(ti, journal_store) is None  # cleared once bought


def test_pitney_bowes_refill_carries_the_task_instance_transaction_id(
    connections: SandboxState, ti: FakeTaskInstance, journal_store: Any
) -> None:
    result = purchase(postage_conn_id=PB_CONN_ID, amount=100).execute(task_context(ti, journal_store))
    txn = pb.make_transaction_id(ti.dag_id, ti.run_id, ti.task_id, -1)
    assert result == {
        "provider": "pitney_bowes",
        "conn_id": PB_CONN_ID,
        "status": "purchased",
        "amount": "100.00",
        "currency": "USD",
        "balance_before": "12.50",
        "balance_after": "112.50",
        "transaction_id": txn,
    }
    assert [(r.amount, r.transaction_id, r.source) for r in connections.refills] == [
        (Decimal("100.00"), txn, "line_of_credit")
    ]
    assert requests_made(connections) == {"pb_token": 1, "pb_balance": 2, "pb_fund": 1}


def test_result_holds_no_card_data_password_or_token(
    connections: SandboxState, ti: FakeTaskInstance, journal_store: Any
) -> None:
    results = [
        purchase(postage_conn_id=C2M_CONN_ID, amount="10").execute(task_context(ti, journal_store)),
        purchase(postage_conn_id=PB_CONN_ID, amount="10").execute(task_context(ti, journal_store)),
    ]
    token = TOKENS.get(PitneyBowesHook(PB_CONN_ID).settings.credential_key, lambda: pytest.fail("no cached token"))
    for result in results:
        assert set(result) == RESULT_KEYS
        assert json.loads(json.dumps(result)) == result
        text = json.dumps(result)
        for secret in (
            BILLING["card_number_secret"],
            BILLING["card_number_secret"][-4:],
            sandbox_defaults.DEFAULT_C2M_PASSWORD,
            sandbox_defaults.DEFAULT_PB_API_SECRET,
            token,
        ):
            assert secret not in text
        assert "card" not in text and "billing" not in text


def test_max_amount_caps_an_amount_before_any_request(
    connections: SandboxState, ti: FakeTaskInstance, journal_store: Any
) -> None:
    assert Decimal("500.00") == DEFAULT_MAX_AMOUNT
    with pytest.raises(PostageValidationError, match=r"25\.00 is above max_amount 20\.00; nothing was bought"):
        purchase(postage_conn_id=C2M_CONN_ID, amount="25", max_amount="20").execute(task_context(ti, journal_store))
    with pytest.raises(PostageValidationError, match=r"600\.00 is above max_amount 500\.00"):
        purchase(postage_conn_id=PB_CONN_ID, amount=600).execute(task_context(ti, journal_store))
    templated = purchase(postage_conn_id=PB_CONN_ID, amount="30", max_amount="{{ params.cap }}")
    templated.render_template_fields({"params": {"cap": "29"}})
    with pytest.raises(PostageValidationError, match=r"above max_amount 29\.00"):
        templated.execute(task_context(ti, journal_store))
    assert requests_made(connections) == {}


def test_max_amount_is_inclusive(connections: SandboxState, ti: FakeTaskInstance, journal_store: Any) -> None:
    result = purchase(postage_conn_id=PB_CONN_ID, amount="500").execute(task_context(ti, journal_store))
    assert (result["status"], result["amount"]) == ("purchased", "500.00")
    assert bought(connections, PB_CONN_ID) == ["500.00"]


def test_click2mail_lost_reply_confirmed_by_the_balance_within_the_try(
    connections: SandboxState, ti: FakeTaskInstance, journal_store: Any
) -> None:
    connections.inject_fault("c2m_purchase", apply=True, drop=True)
    result = purchase(postage_conn_id=C2M_CONN_ID, amount="20").execute(task_context(ti, journal_store))
    assert (result["status"], result["amount"], result["balance_after"]) == ("purchased", "20.00", "25.00")
    assert bought(connections, C2M_CONN_ID) == ["20.00"]
    # before, the hook's confirming read, after
    assert requests_made(connections) == {"c2m_credit": 3, "c2m_purchase": 1}
    assert journal_entry(ti, journal_store) is None


def test_balance_unreadable_after_buying_does_not_fail_the_task(
    connections: SandboxState, ti: FakeTaskInstance, journal_store: Any
) -> None:
    """A failed task would be retried, and a retry must never follow a purchase that went through."""
    connections.inject_fault("c2m_credit", status=500, times=HOOK_READ_ATTEMPTS, after=1)
    result = purchase(postage_conn_id=C2M_CONN_ID, amount="20").execute(task_context(ti, journal_store))
    assert (result["status"], result["amount"], result["balance_before"], result["balance_after"]) == (
        "purchased",
        "20.00",
        "5.00",
        None,
    )
    assert bought(connections, C2M_CONN_ID) == ["20.00"]
    assert requests_made(connections) == {"c2m_credit": 1 + HOOK_READ_ATTEMPTS, "c2m_purchase": 1}


@pytest.mark.parametrize("mode", [{"amount": "20"}, {"top_up_to": "50"}, {"top_up_to": "1"}])
def test_click2mail_card_is_checked_before_any_request(
    connections: SandboxState,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    ti: FakeTaskInstance,
    journal_store: Any,
    mode: dict[str, str],
) -> None:
    fields = c2m_connection(sandbox.url)
    fields["extra"] = {**fields["extra"], "card_exp_year": "2019"}  # type: ignore[dict-item]
    monkeypatch.setenv(*conn_uri_env("c2m_expired", **fields))
    with pytest.raises(PostageValidationError) as caught:
        purchase(postage_conn_id="c2m_expired", **mode).execute(task_context(ti, journal_store))
    assert caught.value.field == "card_exp_year"
    assert requests_made(connections) == {}


# --- PurchaseCreditOperator: top_up_to ------------------------------------------------------------


@pytest.mark.parametrize(
    ("conn_id", "start", "target", "amount", "after"),
    [
        (C2M_CONN_ID, None, "12", "10.00", "15.00"),  # 7.00 missing: the Click2Mail minimum is 10.00
        (C2M_CONN_ID, None, "30.01", "25.01", "30.01"),  # cents are fine for Click2Mail
        (C2M_CONN_ID, None, Decimal("105.5"), "100.50", "105.50"),
        (C2M_CONN_ID, "-12.34", 0, "12.34", "0.00"),  # an account allowed to go negative
        (PB_CONN_ID, None, "50", "38.00", "50.50"),  # 37.50 missing: whole dollars, rounded up
        (PB_CONN_ID, None, 13, "1.00", "13.50"),
        (PB_CONN_ID, "0", "{{ params.target }}", "77.00", "77.00"),
    ],
)
def test_top_up_to_buys_the_difference_rounded_up_to_what_the_api_accepts(
    connections: SandboxState,
    ti: FakeTaskInstance,
    journal_store: Any,
    conn_id: str,
    start: str | None,
    target: object,
    amount: str,
    after: str,
) -> None:
    if start is not None and conn_id == C2M_CONN_ID:
        connections.set_c2m_balance(sandbox_defaults.DEFAULT_C2M_USERNAME, start, allow_negative=True)
    elif start is not None:
        connections.set_pb_balance(sandbox_defaults.DEFAULT_PB_PRN, start)
    operator = purchase(postage_conn_id=conn_id, top_up_to=target)
    operator.render_template_fields({"params": {"target": "77"}})
    result = operator.execute(task_context(ti, journal_store))
    assert (result["status"], result["amount"], result["balance_after"]) == ("purchased", amount, after)
    assert bought(connections, conn_id) == [amount]
    assert connections.request_count(PURCHASE_ENDPOINT[conn_id]) == 1


@pytest.mark.parametrize(
    ("conn_id", "target", "balance"),
    [
        (C2M_CONN_ID, "5", "5.00"),
        (C2M_CONN_ID, "4.99", "5.00"),
        (PB_CONN_ID, "12.50", "12.50"),
        (PB_CONN_ID, 0, "12.50"),
    ],
)
def test_top_up_to_skips_at_or_above_the_target(
    connections: SandboxState, ti: FakeTaskInstance, journal_store: Any, conn_id: str, target: object, balance: str
) -> None:
    result = purchase(postage_conn_id=conn_id, top_up_to=target).execute(task_context(ti, journal_store))
    assert result == {
        "provider": "click2mail" if conn_id == C2M_CONN_ID else "pitney_bowes",
        "conn_id": conn_id,
        "status": "skipped",
        "amount": None,
        "currency": "USD",
        "balance_before": balance,
        "balance_after": balance,
        "transaction_id": None,
    }
    assert bought(connections, conn_id) == []
    reads = {"c2m_credit": 1} if conn_id == C2M_CONN_ID else {"pb_token": 1, "pb_balance": 1}
    assert requests_made(connections) == reads
    assert journal_entry(ti, journal_store) is None


def test_top_up_above_max_amount_fails_before_any_purchase_request(
    connections: SandboxState, ti: FakeTaskInstance, journal_store: Any
) -> None:
    with pytest.raises(PostageValidationError, match=r"995\.00 is above max_amount 500\.00"):
        purchase(postage_conn_id=C2M_CONN_ID, top_up_to="1000").execute(task_context(ti, journal_store))
    with pytest.raises(PostageValidationError, match=r"38\.00 is above max_amount 37\.99"):
        purchase(postage_conn_id=PB_CONN_ID, top_up_to="50", max_amount="37.99").execute(
            task_context(ti, journal_store)
        )
    assert requests_made(connections) == {"c2m_credit": 1, "pb_token": 1, "pb_balance": 1}
    assert journal_entry(ti, journal_store) is None


# --- PurchaseCreditOperator: dry run --------------------------------------------------------------


def test_dry_run_buys_nothing(connections: SandboxState, ti: FakeTaskInstance, journal_store: Any) -> None:
    c2m = purchase(postage_conn_id=C2M_CONN_ID, amount="25", dry_run=True).execute(task_context(ti, journal_store))
    refill = purchase(postage_conn_id=PB_CONN_ID, top_up_to="50", dry_run=True).execute(task_context(ti, journal_store))
    assert c2m == {
        "provider": "click2mail",
        "conn_id": C2M_CONN_ID,
        "status": "dry_run",
        "amount": "25.00",
        "currency": "USD",
        "balance_before": "5.00",
        "balance_after": None,
        "transaction_id": None,
    }
    assert (refill["status"], refill["amount"], refill["transaction_id"]) == ("dry_run", "38.00", txn_of(ti))
    assert requests_made(connections) == {"c2m_credit": 1, "pb_token": 1, "pb_balance": 1}
    assert connections.purchases == [] and connections.refills == []
    assert journal_entry(ti, journal_store) is None
    if journal_store is not None:
        assert [call for call in journal_store.calls if call[0] != "get"] == []


def test_dry_run_still_checks_the_cap(connections: SandboxState, ti: FakeTaskInstance, journal_store: Any) -> None:
    with pytest.raises(PostageValidationError, match="above max_amount"):
        purchase(postage_conn_id=C2M_CONN_ID, amount="501", dry_run=True).execute(task_context(ti, journal_store))
    assert requests_made(connections) == {}


# --- transaction ids --------------------------------------------------------------------------------


def test_transaction_id_is_the_same_on_every_try_and_differs_per_map_index(
    connections: SandboxState, ti: FakeTaskInstance
) -> None:
    stores = {0: FakeTaskStateStore(), 1: FakeTaskStateStore()} if AIRFLOW_V3 else {0: None, 1: None}
    first = FakeTaskInstance(ti.dag_id, ti.run_id, "buy", map_index=0)
    second = FakeTaskInstance(ti.dag_id, ti.run_id, "buy", map_index=1)
    ids = [
        purchase(postage_conn_id=PB_CONN_ID, amount=10).execute(task_context(first, stores[0]))["transaction_id"],
        purchase(postage_conn_id=PB_CONN_ID, amount=10).execute(task_context(second, stores[1]))["transaction_id"],
    ]
    assert ids == [txn_of(first), txn_of(second)] and ids[0] != ids[1]
    # Map index 0 again, as a later try whose first one had finished buying (e.g. the worker died before
    # reporting success). Airflow 3.3: the done entry in the task state store answers; Airflow 2.11 (whose
    # Variable journal is deleted on success): the account's ledger does. Nothing is sent either way.
    again = purchase(postage_conn_id=PB_CONN_ID, amount=10).execute(task_context(next_try(first), stores[0]))
    assert again["transaction_id"] == ids[0]
    assert again["status"] == "already_applied"
    assert [r.transaction_id for r in connections.refills] == ids
    assert connections.counters()["pb_duplicate_transactions"] == 0
    assert connections.pb_balance() == Decimal("32.50")
    other_run = FakeTaskInstance(ti.dag_id, f"{ti.run_id}_b", "buy", map_index=0)
    assert txn_of(other_run) not in ids
    assert pb.validate_transaction_id(ids[0]) == ids[0]


# --- retries: the journal -------------------------------------------------------------------------


def lose_the_purchase_reply(state: SandboxState, conn_id: str) -> None:
    """The API applies the purchase and the reply never arrives. Click2Mail: the hook would confirm the
    purchase by reading the balance again within the same try, so that read fails too (all its attempts
    after the one read the operator makes before buying), and the try fails not knowing."""
    if conn_id == C2M_CONN_ID:
        state.inject_fault("c2m_purchase", apply=True, drop=True)
        state.inject_fault("c2m_credit", status=500, times=HOOK_READ_ATTEMPTS, after=1)
    else:
        state.inject_fault("pb_fund", apply=True, drop=True)


@pytest.mark.parametrize(
    ("conn_id", "mode", "amount", "after"),
    [
        (C2M_CONN_ID, {"amount": "20"}, "20.00", "25.00"),
        (C2M_CONN_ID, {"top_up_to": "25"}, "20.00", "25.00"),
        (PB_CONN_ID, {"amount": "20"}, "20.00", "32.50"),
        (PB_CONN_ID, {"top_up_to": "25"}, "13.00", "25.50"),
    ],
)
def test_lost_reply_then_next_try_buys_nothing_more(
    connections: SandboxState,
    ti: FakeTaskInstance,
    journal_store: Any,
    conn_id: str,
    mode: dict[str, str],
    amount: str,
    after: str,
) -> None:
    lose_the_purchase_reply(connections, conn_id)
    with pytest.raises(PurchaseOutcomeUnknownError):
        purchase(postage_conn_id=conn_id, **mode).execute(task_context(ti, journal_store))
    before = "5.00" if conn_id == C2M_CONN_ID else "12.50"
    assert journal_entry(ti, journal_store) == {
        "conn_id": conn_id,
        "amount": amount,
        "balance_before": before,
        "transaction_id": txn_of(ti),
    }
    assert bought(connections, conn_id) == [amount]  # applied by the API, unknown to the task

    result = purchase(postage_conn_id=conn_id, **mode).execute(task_context(next_try(ti), journal_store))
    assert result == {
        "provider": "click2mail" if conn_id == C2M_CONN_ID else "pitney_bowes",
        "conn_id": conn_id,
        "status": "already_applied",
        "amount": amount,
        "currency": "USD",
        "balance_before": before,
        "balance_after": after,
        "transaction_id": None if conn_id == C2M_CONN_ID else txn_of(ti),
    }
    assert bought(connections, conn_id) == [amount]
    assert connections.request_count(PURCHASE_ENDPOINT[conn_id]) == 1
    assert journal_entry(ti, journal_store) is None


def test_click2mail_next_try_that_cannot_tell_fails_without_buying(
    connections: SandboxState, ti: FakeTaskInstance, journal_store: Any
) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    connections.inject_fault("c2m_purchase", status=500)  # not applied; the reply says nothing
    with pytest.raises(PurchaseOutcomeUnknownError):
        purchase(postage_conn_id=C2M_CONN_ID, amount="20").execute(task_context(ti, journal_store))
    assert requests_made(connections) == {"c2m_credit": 2, "c2m_purchase": 1}

    for retry in (next_try(ti), next_try(next_try(ti))):  # and any later try alike
        context = task_context(retry, journal_store)
        with pytest.raises(AirflowFailException) as caught:
            purchase(postage_conn_id=C2M_CONN_ID, amount="20").execute(context)
        message = str(caught.value)
        assert "earlier try of this task started a Click2Mail purchase of 20.00 on 'c2m_sandbox'" in message
        assert "outcome is unknown: the balance was 5.00 before it and is 5.00 now. Not buying again." in message
        assert journal_location(context, txn_of(ti)) in message
    assert connections.request_count("c2m_purchase") == 1 and connections.purchases == []
    assert journal_entry(ti, journal_store) is not None  # kept for a person to look at


def test_pitney_bowes_next_try_resends_with_the_same_transaction_id(
    connections: SandboxState, ti: FakeTaskInstance, journal_store: Any
) -> None:
    connections.inject_fault("pb_fund", status=503)  # not applied
    with pytest.raises(PurchaseOutcomeUnknownError, match="Retry with the same transaction id only"):
        purchase(postage_conn_id=PB_CONN_ID, amount="20").execute(task_context(ti, journal_store))
    assert connections.refills == []

    result = purchase(postage_conn_id=PB_CONN_ID, amount="20").execute(task_context(next_try(ti), journal_store))
    assert (result["status"], result["amount"], result["balance_before"], result["balance_after"]) == (
        "purchased",
        "20.00",
        "12.50",
        "32.50",
    )
    assert [r.transaction_id for r in connections.refills] == [txn_of(ti)]
    assert connections.request_count("pb_fund") == 2
    assert journal_entry(ti, journal_store) is None


@pytest.mark.parametrize(("policy", "status"), [("replay", "purchased"), ("reject", "already_applied")])
def test_pitney_bowes_resend_of_an_applied_refill_is_deduplicated(
    connections: SandboxState, ti: FakeTaskInstance, journal_store: Any, policy: Any, status: str
) -> None:
    connections.pb_duplicate_transaction = policy
    connections.inject_fault("pb_fund", apply=True, drop=True)
    with pytest.raises(PurchaseOutcomeUnknownError):
        purchase(postage_conn_id=PB_CONN_ID, top_up_to="40").execute(task_context(ti, journal_store))
    # The balance does not show the refill (postage spent in between), so the next try cannot tell from it.
    connections.set_pb_balance(sandbox_defaults.DEFAULT_PB_PRN, "12.50")

    result = purchase(postage_conn_id=PB_CONN_ID, top_up_to="40").execute(task_context(next_try(ti), journal_store))
    assert (result["status"], result["amount"], result["transaction_id"]) == (status, "28.00", txn_of(ti))
    assert [(str(r.amount), r.transaction_id) for r in connections.refills] == [("28.00", txn_of(ti))]
    assert connections.counters()["pb_duplicate_transactions"] == 1
    assert connections.request_count("pb_fund") == 2
    assert connections.pb_balance() == Decimal("12.50")
    assert journal_entry(ti, journal_store) is None


def test_refused_purchase_clears_the_journal_so_a_retry_buys_afresh(
    connections: SandboxState, ti: FakeTaskInstance, journal_store: Any
) -> None:
    connections.inject_fault("c2m_purchase", status=400)  # card declined: nothing charged
    with pytest.raises(PostageAPIError, match="HTTP 400"):
        purchase(postage_conn_id=C2M_CONN_ID, amount="20").execute(task_context(ti, journal_store))
    assert journal_entry(ti, journal_store) is None

    result = purchase(postage_conn_id=C2M_CONN_ID, amount="20").execute(task_context(next_try(ti), journal_store))
    assert result["status"] == "purchased"
    assert bought(connections, C2M_CONN_ID) == ["20.00"]


@pytest.mark.skipif(not AIRFLOW_V3, reason="the task state store came with Airflow 3.3")
def test_journal_lives_in_the_task_state_store_on_airflow_3(connections: SandboxState, ti: FakeTaskInstance) -> None:
    from airflow.sdk.execution_time.context import NEVER_EXPIRE

    store = FakeTaskStateStore()
    retentions: list[Any] = []
    original_set = store.set

    def set_and_note(key: str, value: Any, *, retention: Any = None) -> None:
        retentions.append(retention)
        original_set(key, value, retention=retention)

    store.set = set_and_note  # type: ignore[method-assign]
    lose_the_purchase_reply(connections, PB_CONN_ID)
    with pytest.raises(PurchaseOutcomeUnknownError):
        purchase(postage_conn_id=PB_CONN_ID, amount="20").execute(task_context(ti, store))
    assert list(store.values) == ["postage_purchase_intent"]
    assert retentions == [NEVER_EXPIRE]
    assert "task state store" in journal_location(task_context(ti, store), txn_of(ti))


@pytest.mark.skipif(AIRFLOW_V3, reason="Airflow 3.3 keeps the journal in the task state store")
def test_journal_is_a_variable_on_airflow_2(connections: SandboxState, ti: FakeTaskInstance, airflow_db: None) -> None:
    from airflow.models import Variable

    name = f"postage_purchase_intent__{txn_of(ti)}"
    lose_the_purchase_reply(connections, PB_CONN_ID)
    with pytest.raises(PurchaseOutcomeUnknownError):
        purchase(postage_conn_id=PB_CONN_ID, amount="20").execute(task_context(ti))
    assert json.loads(Variable.get(name))["amount"] == "20.00"
    assert name in journal_location(task_context(ti), txn_of(ti))
    purchase(postage_conn_id=PB_CONN_ID, amount="20").execute(task_context(next_try(ti)))
    assert Variable.get(name, None) is None


def test_a_try_after_a_finished_purchase_never_buys_again(
    connections: SandboxState, ti: FakeTaskInstance, journal_store: Any
) -> None:
    """The worker died after buying and before Airflow recorded success, or the task was cleared: the
    next try finds the done entry (Airflow 3.3) and reports the purchase instead of buying again."""
    if journal_store is None:
        pytest.skip("Airflow 2.11's Variable journal is deleted on success (see docs/faults.md)")
    first = purchase(postage_conn_id=C2M_CONN_ID, amount="20").execute(task_context(ti, journal_store))
    again = purchase(postage_conn_id=C2M_CONN_ID, amount="20").execute(task_context(next_try(ti), journal_store))
    assert first["status"] == "purchased" and again == {**first, "status": "already_applied"}
    assert bought(connections, C2M_CONN_ID) == ["20.00"]
    assert connections.request_count("c2m_purchase") == 1


def test_a_purchase_that_never_left_the_machine_leaves_no_open_entry(
    connections: SandboxState,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    ti: FakeTaskInstance,
    journal_store: Any,
) -> None:
    """Connection refused on the purchase itself: nothing was charged, so the next try may buy."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    state = connections
    # the balance read before the purchase goes to the sandbox; the purchase goes nowhere
    fields = c2m_connection(sandbox.url)
    monkeypatch.setenv(*conn_uri_env("c2m_flaky", **fields))
    from airflow_provider_postage.hooks.base import PostageHook

    real_send = PostageHook._send

    def refused(self: Any, request: Any) -> Any:
        if not request.moves_money:
            return real_send(self, request)
        return real_send(
            self,
            type(request)(
                request.method,
                f"http://127.0.0.1:{port}/molpro/credit/purchase",
                request.headers,
                request.body,
                request.moves_money,
            ),
        )

    monkeypatch.setattr(PostageHook, "_send", refused)
    with pytest.raises(PostageTransportError):
        purchase(postage_conn_id="c2m_flaky", amount="20").execute(task_context(ti, journal_store))
    assert journal_entry(ti, journal_store) is None
    monkeypatch.setattr(PostageHook, "_send", real_send)
    result = purchase(postage_conn_id="c2m_flaky", amount="20").execute(task_context(next_try(ti), journal_store))
    assert result["status"] == "purchased" and bought(state, C2M_CONN_ID) == ["20.00"]
