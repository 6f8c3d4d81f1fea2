"""The real-wire findings (issue 9), one test or more each, over real sockets against the sandbox: what a
polite sandbox could not show. Each test fails on the code before the fix."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from conftest import (
    C2M_CONN_ID,
    PB_CONN_ID,
    FakeTaskInstance,
    c2m_connection,
    conn_uri_env,
    pb_connection,
    task_context,
)

from airflow_provider_postage.hooks.postage import get_postage_hook
from airflow_provider_postage.operators.postage import PurchaseCreditOperator
from airflow_provider_postage.protocol import click2mail as c2m
from airflow_provider_postage.protocol import pitney_bowes as pb
from airflow_provider_postage.protocol.errors import (
    PostageError,
    PostageValidationError,
    PurchaseOutcomeUnknownError,
    TransactionReplayedError,
)
from airflow_provider_postage.protocol.http import HttpResponse
from airflow_provider_postage.protocol.money import format_money
from airflow_provider_postage.sandbox import SandboxServer, SandboxState

FAST: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.02, "max_attempts": 2}


@pytest.fixture
def ti() -> FakeTaskInstance:
    return FakeTaskInstance(run_id=f"manual__{uuid.uuid4().hex}")


def next_try(ti: FakeTaskInstance) -> FakeTaskInstance:
    return FakeTaskInstance(ti.dag_id, ti.run_id, ti.task_id, ti.map_index, ti.try_number + 1)


def buy(**kwargs: Any) -> PurchaseCreditOperator:
    return PurchaseCreditOperator(task_id="buy", hook_params=FAST, **kwargs)


# --- 3. a retry resumes only its own purchase -----------------------------------------------------------


def test_a_retry_pointed_at_another_connection_does_not_resume_the_first_ones_refill(
    connections: SandboxState, sandbox: SandboxServer, ti: FakeTaskInstance, journal_store: Any, monkeypatch: Any
) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    connections.inject_fault("pb_fund", status=500)  # not applied; outcome unknown to the task
    with pytest.raises(PurchaseOutcomeUnknownError):
        buy(postage_conn_id=PB_CONN_ID, amount="400").execute(task_context(ti, journal_store))
    monkeypatch.setenv(*conn_uri_env("pb_other", **pb_connection(sandbox.url, prn="900002")))

    with pytest.raises(AirflowFailException) as caught:
        buy(postage_conn_id="pb_other", amount="20", max_amount="50").execute(task_context(next_try(ti), journal_store))
    message = str(caught.value)
    assert "purchase of 400.00 on 'pb_sandbox' whose outcome is unknown" in message
    assert "this try is for 'pb_other'" in message
    assert connections.refills == []
    assert connections.request_count("pb_fund") == 1


def test_a_retry_does_not_resume_a_purchase_above_its_own_max_amount(
    connections: SandboxState, ti: FakeTaskInstance, journal_store: Any
) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    connections.inject_fault("pb_fund", status=500)
    with pytest.raises(PurchaseOutcomeUnknownError):
        buy(postage_conn_id=PB_CONN_ID, amount="400").execute(task_context(ti, journal_store))
    with pytest.raises(AirflowFailException, match=r"above this try's max_amount 50\.00"):
        buy(postage_conn_id=PB_CONN_ID, amount="20", max_amount="50").execute(task_context(next_try(ti), journal_store))
    assert connections.refills == [] and connections.request_count("pb_fund") == 1


# --- 6. odd replies stay in the error family ------------------------------------------------------------

NOW = pytest.importorskip("pendulum").datetime(2026, 11, 30, tz="UTC")


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"accounts": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"accounts": [{"accountType": "Postage Account", "availableBalance": 1e26}]}',
        b'{"accounts": [{"accountType": "Postage Account", "availableBalance": 1e400}]}',
        b'{"accounts": [{"accountType": "Postage Account", "availableBalance": NaN}]}',
        b'{"accounts": [{"accountType": "Postage Account", "availableBalance": "99999999999999999999999999"}]}',
    ],
)
def test_pitney_bowes_balance_parser_turns_odd_replies_into_postage_errors(body: bytes) -> None:
    reply = HttpResponse(200, {"content-type": "application/json"}, body)
    with pytest.raises(PostageError):
        pb.parse_balance_response(reply, conn_id="c", received_at=NOW)


@pytest.mark.parametrize(
    "body",
    [
        b"<a>" * 60_000 + b"</a>" * 60_000,
        b"<credit><balance>1e26</balance></credit>",
        b"<credit><balance>100000000000000000000000000</balance></credit>",
        b"<credit><balance>NaN</balance></credit>",
    ],
)
def test_click2mail_balance_parser_turns_odd_replies_into_postage_errors(body: bytes) -> None:
    reply = HttpResponse(200, {"content-type": "application/xml"}, body)
    with pytest.raises(PostageError):
        c2m.parse_balance_response(reply, conn_id="c", received_at=NOW)


@pytest.mark.parametrize("expires", ["1e400", "-1e400", "1e30", '"Infinity"', "NaN"])
def test_an_absurd_token_lifetime_is_bounded(expires: str) -> None:
    reply = HttpResponse(200, {}, b'{"access_token": "t0k3n-abcdef", "expiresIn": ' + expires.encode() + b"}")
    try:
        token = pb.parse_token_response(reply)
    except PostageError:
        return
    assert 0 < token.expires_in <= pb.MAX_TOKEN_LIFETIME
    from airflow_provider_postage._tokens import TokenCache

    assert TokenCache().get("k", lambda: token) == "t0k3n-abcdef"  # no OverflowError in the cache either


def test_format_money_never_raises_on_a_large_amount() -> None:
    assert format_money(Decimal("1e26")) == "1E+26"
    assert format_money(Decimal("12.5")) == "12.50"


def test_the_low_balance_watcher_survives_a_garbage_reply(connections: SandboxState) -> None:
    import asyncio

    from airflow_provider_postage.triggers.postage import LowBalanceEventTrigger

    connections.set_c2m_balance("demo-user", "3.00")
    connections.inject_fault("c2m_credit", body="<a>" * 60_000 + "</a>" * 60_000, content_type="application/xml")
    trigger = LowBalanceEventTrigger(C2M_CONN_ID, threshold="10", poke_interval=0.05)

    async def first_event() -> Any:
        runner = trigger.run()
        try:
            return await asyncio.wait_for(runner.__anext__(), 20)
        finally:
            await runner.aclose()

    event = asyncio.run(first_event())
    assert event.payload["status"] == "below"
    assert connections.request_count("c2m_credit") == 2  # the garbage reply, then the next poll


# --- 8. a transaction id that requests would refuse is refused before anything is sent ------------------


@pytest.mark.parametrize("transaction_id", ["refill-2026-11-29\n", "a\nb", "x" * 26, "", "bad id"])
def test_a_transaction_id_requests_would_refuse_is_a_validation_error(
    connections: SandboxState, transaction_id: str
) -> None:
    with pytest.raises(PostageValidationError) as caught:
        get_postage_hook(PB_CONN_ID, **FAST).purchase_credit(20, transaction_id=transaction_id)
    assert caught.value.field == "transaction_id"
    assert {k: v for k, v in connections.counters()["requests"].items() if v} == {}


# --- 9. the connection's port ---------------------------------------------------------------------------


@pytest.mark.parametrize("conn_type", ["click2mail", "pitney_bowes"])
def test_the_connections_port_is_used(
    connections: SandboxState, sandbox: SandboxServer, monkeypatch: Any, conn_type: str
) -> None:
    fields = c2m_connection(sandbox.url) if conn_type == "click2mail" else pb_connection(sandbox.url)
    fields.update(host="127.0.0.1", port=sandbox.port, schema="https")
    monkeypatch.setenv(*conn_uri_env("with_port", **fields))
    hook = get_postage_hook("with_port", **FAST)
    assert f"https://127.0.0.1:{sandbox.port}" in hook.settings.base_url
    assert hook.get_balances()[0].available in (Decimal("5.00"), Decimal("12.50"))


def test_a_port_that_contradicts_the_host_is_refused(sandbox: SandboxServer, monkeypatch: Any) -> None:
    fields = c2m_connection(f"http://127.0.0.1:{sandbox.port}")
    fields["port"] = 1234
    monkeypatch.setenv(*conn_uri_env("two_ports", **fields))
    with pytest.raises(PostageValidationError) as caught:
        get_postage_hook("two_ports").get_balances()
    assert caught.value.field == "port"


# --- 10. a replayed refill is not a new purchase --------------------------------------------------------


def test_a_refill_replayed_by_its_transaction_id_is_an_error_not_a_purchase(connections: SandboxState) -> None:
    hook = get_postage_hook(PB_CONN_ID, **FAST)
    first = hook.purchase_credit(50, transaction_id="refill-2026-11-29")
    assert first.amount == Decimal("50.00")
    with pytest.raises(TransactionReplayedError, match="transaction id refill-2026-11-29 was used before") as caught:
        hook.purchase_credit(60, transaction_id="refill-2026-11-29")
    assert (caught.value.requested, caught.value.confirmed) == (Decimal("60.00"), Decimal("50.00"))
    assert [r.amount for r in connections.refills] == [Decimal("50.00")]
    assert connections.pb_balance() == Decimal("62.50")


def test_the_same_refill_resent_is_confirmed_with_the_amount_the_api_echoed(connections: SandboxState) -> None:
    hook = get_postage_hook(PB_CONN_ID, **FAST)
    hook.purchase_credit(50, transaction_id="same-refill")
    again = hook.purchase_credit(50, transaction_id="same-refill")
    assert again.amount == Decimal("50.00") and len(connections.refills) == 1


def test_plain_http_is_refused_for_production_before_anything_is_sent(
    connections: SandboxState, sandbox: SandboxServer, monkeypatch: Any
) -> None:
    fields = pb_connection(sandbox.url, environment="production")
    fields["host"] = f"http://127.0.0.1:{sandbox.port}"
    monkeypatch.setenv(*conn_uri_env("pb_prod_http", **fields))
    with pytest.raises(PostageValidationError, match="plain http:// is refused for production") as caught:
        get_postage_hook("pb_prod_http").get_balances()
    assert caught.value.field == "host"
    assert connections.request_count("pb_token") == 0


# --- 2. the card under extras Airflow hides; the old names still work, with a warning -------------------


def test_card_extras_under_the_old_names_still_buy_with_a_deprecation_warning(
    connections: SandboxState, sandbox: SandboxServer, monkeypatch: Any, task_log: Any
) -> None:
    from airflow.exceptions import AirflowProviderDeprecationWarning

    fields = c2m_connection(sandbox.url)
    extra = dict(fields["extra"])  # type: ignore[call-overload]
    extra["card_number"] = extra.pop("card_number_secret")
    extra["card_cvv"] = extra.pop("card_cvv_secret")
    monkeypatch.setenv(*conn_uri_env("c2m_old_names", **{**fields, "extra": extra}))
    with pytest.warns(AirflowProviderDeprecationWarning, match="rename them to card_number_secret, card_cvv_secret"):
        result = get_postage_hook("c2m_old_names", **FAST).purchase_credit("20")
    assert result.amount == Decimal("20.00") and len(connections.purchases) == 1
    assert "card_number, card_cvv are deprecated" in task_log()
    assert extra["card_number"] not in task_log()


# --- messages that say what to do ------------------------------------------------------------------------


def test_a_refused_token_says_to_check_the_api_key_and_secret(
    connections: SandboxState, sandbox: SandboxServer, monkeypatch: Any
) -> None:
    monkeypatch.setenv(*conn_uri_env("pb_wrong", **{**pb_connection(sandbox.url), "password": "wrong-secret-1"}))
    with pytest.raises(PostageError) as caught:
        get_postage_hook("pb_wrong", **FAST).get_balances()
    message = str(caught.value)
    assert "check the connection's API key (login) and API secret (password)" in message
    assert "wrong-secret-1" not in message


def test_a_scheme_less_host_on_a_plain_http_server_suggests_http(
    connections: SandboxState, sandbox: SandboxServer, monkeypatch: Any
) -> None:
    from airflow_provider_postage.protocol.errors import PostageTransportError

    with SandboxServer() as plain:  # a local sandbox that speaks plain HTTP
        fields = c2m_connection(plain.url)
        fields["host"] = f"127.0.0.1:{plain.port}"  # no scheme: https is assumed
        monkeypatch.setenv(*conn_uri_env("c2m_no_scheme", **fields))
        with pytest.raises(PostageTransportError, match="needs http:// in the host") as caught:
            get_postage_hook("c2m_no_scheme", max_attempts=1).get_balances()
    assert caught.value.request_sent is False


def test_a_purchase_that_has_not_settled_says_so(
    connections: SandboxState, ti: FakeTaskInstance, journal_store: Any, task_log: Any
) -> None:
    connections.settle_seconds = 30
    result = buy(postage_conn_id=C2M_CONN_ID, amount="20").execute(task_context(ti, journal_store))
    assert (result["status"], result["balance_before"], result["balance_after"]) == ("purchased", "5.00", "5.00")
    assert "Bought 20.00 USD on c2m_sandbox; balance 5.00 before; the purchase is settling" in task_log()


def test_calling_execute_without_a_task_runner_says_what_to_do(connections: SandboxState, ti: FakeTaskInstance) -> None:
    from conftest import AIRFLOW_V3

    if not AIRFLOW_V3:
        pytest.skip("Airflow 2.11 keeps the journal in a Variable, which needs no task runner")
    from airflow.providers.common.compat.sdk import AirflowFailException

    with pytest.raises(AirflowFailException, match=r"run it in a DAG run \(dag.test\(\) in a unit test\)"):
        buy(postage_conn_id=C2M_CONN_ID, amount="20").execute(task_context(ti))  # no task state store
    assert connections.purchases == []
