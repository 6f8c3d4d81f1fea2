"""Both hooks against the sandbox over real HTTP: reads, purchases, tokens, faults, validation."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from conftest import C2M_CONN_ID, PB_CONN_ID, PB_NO_CREDIT_CONN_ID, c2m_connection, conn_uri_env, pb_connection

from airflow_provider_postage._tokens import TOKENS
from airflow_provider_postage.hooks.postage import Click2MailHook, PitneyBowesHook, PostageHook, get_postage_hook
from airflow_provider_postage.protocol.errors import (
    PostageAPIError,
    PostageAuthError,
    PostageConfigError,
    PostageResponseError,
    PostageTransportError,
    PostageValidationError,
    PurchaseOutcomeUnknownError,
)
from airflow_provider_postage.sandbox import SandboxServer, SandboxState

FAST: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.02}


def hook(conn_id: str, **kwargs: Any) -> PostageHook:
    return get_postage_hook(conn_id, **{**FAST, **kwargs})


def requests_made(state: SandboxState) -> dict[str, int]:
    return {name: count for name, count in state.counters()["requests"].items() if count}


def test_hook_chosen_by_connection_type(connections: SandboxState, monkeypatch: pytest.MonkeyPatch) -> None:
    assert type(hook(C2M_CONN_ID)) is Click2MailHook
    assert type(hook(PB_CONN_ID)) is PitneyBowesHook
    monkeypatch.setenv(*conn_uri_env("other", conn_type="http", host="example.com"))
    with pytest.raises(PostageConfigError, match="expected one of click2mail, pitney_bowes"):
        get_postage_hook("other")


def test_airflow_connection_get_hook_gives_the_same_hook(connections: SandboxState) -> None:
    from airflow.providers.common.compat.sdk import BaseHook

    conn = BaseHook.get_connection(PB_CONN_ID)
    assert type(conn.get_hook()) is PitneyBowesHook


def test_click2mail_balance(connections: SandboxState) -> None:
    [balance] = hook(C2M_CONN_ID).get_balances()
    assert balance.to_dict() | {"as_of": None} == {
        "provider": "click2mail",
        "conn_id": C2M_CONN_ID,
        "account_type": "credit",
        "account_number": None,
        "currency": "USD",
        "available": "5.00",
        "as_of": None,
        "allow_negative": False,
    }


def test_click2mail_negative_balance(connections: SandboxState) -> None:
    connections.set_c2m_account("demo-user", balance="-12.34", allow_negative=True)
    balance = hook(C2M_CONN_ID).get_balance()
    assert (balance.available, balance.allow_negative) == (Decimal("-12.34"), True)


def test_pitney_bowes_balances_with_and_without_line_of_credit(connections: SandboxState) -> None:
    postage, credit = hook(PB_CONN_ID).get_balances()
    assert (postage.account_type, postage.available, postage.account_number) == (
        "postage",
        Decimal("12.50"),
        "****6062",
    )
    assert (credit.account_type, credit.available, credit.credit_limit) == (
        "line_of_credit",
        Decimal("500"),
        Decimal("5000"),
    )
    assert hook(PB_CONN_ID).get_balance("line_of_credit").balance_owed == Decimal("0")
    assert [b.account_type for b in hook(PB_NO_CREDIT_CONN_ID).get_balances()] == ["postage"]
    with pytest.raises(PostageConfigError, match="no line_of_credit account"):
        hook(PB_NO_CREDIT_CONN_ID).get_balance("line_of_credit")


def test_twenty_reads_make_one_token_request(connections: SandboxState) -> None:
    pb = hook(PB_CONN_ID)
    for _ in range(20):
        pb.get_balances()
    assert connections.tokens_issued == 1
    assert requests_made(connections) == {"pb_token": 1, "pb_balance": 20}


def test_token_shared_by_hooks_and_threads(connections: SandboxState) -> None:
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(5):
                hook(PB_CONN_ID).get_balances()
                hook(PB_NO_CREDIT_CONN_ID).get_balances()
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert connections.tokens_issued == 1
    assert connections.request_count("pb_balance") == 80


def test_expired_token_is_fetched_again_once(connections: SandboxState) -> None:
    pb = hook(PB_CONN_ID)
    pb.get_balances()
    connections.expire_tokens()
    pb.get_balances()
    assert connections.tokens_issued == 2
    assert requests_made(connections) == {"pb_token": 2, "pb_balance": 3}


def test_short_token_lifetime_is_renewed_before_expiry(connections: SandboxState) -> None:
    connections.token_ttl = 1
    pb = hook(PB_CONN_ID)
    pb.get_balances()
    pb.get_balances()
    time.sleep(1.0)  # past the lifetime less its refresh margin (a tenth of a second here)
    pb.get_balances()
    assert connections.tokens_issued == 2
    assert connections.request_count("pb_balance") == 3  # renewed before use: no 401 round trip


def test_401_that_persists_after_refresh_fails_bounded(connections: SandboxState) -> None:
    connections.inject_fault("pb_balance", status=401, times=10)
    with pytest.raises(PostageAuthError) as caught:
        hook(PB_CONN_ID).get_balances()
    assert caught.value.status == 401
    assert requests_made(connections) == {"pb_token": 2, "pb_balance": 2}


def test_bad_api_secret(connections: SandboxState, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> None:
    fields = pb_connection(sandbox.url)
    monkeypatch.setenv(*conn_uri_env("pb_bad", **{**fields, "password": "wrong-secret-value"}))
    with pytest.raises(PostageAuthError, match="1000032") as caught:
        hook("pb_bad").get_balances()
    assert "wrong-secret-value" not in str(caught.value)
    assert requests_made(connections) == {"pb_token": 1}


def test_wrong_developer_is_a_403_with_the_api_message(
    connections: SandboxState, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(*conn_uri_env("pb_dev", **pb_connection(sandbox.url, developer_id="99999999")))
    with pytest.raises(PostageAuthError, match="HTTP 403") as caught:
        hook("pb_dev").get_balances()
    assert caught.value.code == "1000033"


def test_unknown_merchant_is_a_404(
    connections: SandboxState, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(*conn_uri_env("pb_prn", **pb_connection(sandbox.url, prn="123456")))
    with pytest.raises(PostageAPIError, match="HTTP 404"):
        hook("pb_prn").get_balances()
    assert connections.request_count("pb_balance") == 1


def test_bad_click2mail_password(
    connections: SandboxState, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(*conn_uri_env("c2m_bad", **{**c2m_connection(sandbox.url), "password": "not-the-password"}))
    with pytest.raises(PostageAuthError, match="username or password refused"):
        hook("c2m_bad").get_balances()
    assert requests_made(connections) == {"c2m_credit": 1}


@pytest.mark.parametrize("status", [500, 502, 503, 504, 524])
@pytest.mark.parametrize(
    ("conn_id", "endpoint"), [(C2M_CONN_ID, "c2m_credit"), (PB_CONN_ID, "pb_balance"), (PB_CONN_ID, "pb_token")]
)
def test_transient_read_errors_are_retried(connections: SandboxState, conn_id: str, endpoint: str, status: int) -> None:
    connections.inject_fault(endpoint, status=status, times=2)
    assert hook(conn_id).get_balances()
    assert connections.request_count(endpoint) == 3


@pytest.mark.parametrize(("conn_id", "endpoint"), [(C2M_CONN_ID, "c2m_credit"), (PB_CONN_ID, "pb_balance")])
def test_persistent_transient_errors_give_up_after_max_attempts(
    connections: SandboxState, conn_id: str, endpoint: str
) -> None:
    connections.inject_fault(endpoint, status=503, times=10)
    with pytest.raises(PostageAPIError, match="HTTP 503"):
        hook(conn_id, max_attempts=3).get_balances()
    assert connections.request_count(endpoint) == 3


def test_read_timeout_is_retried(connections: SandboxState) -> None:
    connections.inject_fault("c2m_credit", delay=1.0)
    assert hook(C2M_CONN_ID, timeout=(2.0, 0.3)).get_balances()
    assert connections.request_count("c2m_credit") == 2


def test_connection_refused(monkeypatch: pytest.MonkeyPatch, sandbox_state: SandboxState) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    monkeypatch.setenv(*conn_uri_env("nowhere", **c2m_connection(f"http://127.0.0.1:{port}")))
    with pytest.raises(PostageTransportError, match="connection refused") as caught:
        hook("nowhere", max_attempts=2).get_balances()
    assert caught.value.request_sent is False


@pytest.mark.parametrize(
    ("endpoint", "conn_id", "body", "content_type"),
    [
        ("c2m_credit", C2M_CONN_ID, "<html><body>Maintenance</body></html>", "text/html"),
        ("c2m_credit", C2M_CONN_ID, "", "application/xml"),
        ("c2m_credit", C2M_CONN_ID, "<credit><balance>12,50</balance></credit>", "application/xml"),
        ("c2m_credit", C2M_CONN_ID, "<credit><balance>1", "application/xml"),
        ("pb_balance", PB_CONN_ID, '{"accounts": [', "application/json"),
        ("pb_balance", PB_CONN_ID, "", "application/json"),
        ("pb_balance", PB_CONN_ID, "<html>hi</html>", "text/html"),
        (
            "pb_balance",
            PB_CONN_ID,
            '{"accounts":[{"accountType":"Postage Account","availableBalance":"n/a"}]}',
            "application/json",
        ),
        ("pb_token", PB_CONN_ID, '{"tokenType":"BearerToken"}', "application/json"),
    ],
)
def test_unreadable_replies_are_clear_errors_not_retried(
    connections: SandboxState, endpoint: str, conn_id: str, body: str, content_type: str
) -> None:
    connections.inject_fault(endpoint, status=200, body=body, content_type=content_type)
    with pytest.raises(PostageResponseError):
        hook(conn_id).get_balances()
    assert connections.request_count(endpoint) == 1


def test_token_reply_without_expiry_is_used_then_replaced_on_401(connections: SandboxState) -> None:
    body = '{"access_token":"x-token-without-expiry"}'
    connections.inject_fault("pb_token", status=200, body=body, content_type="application/json")
    assert hook(PB_CONN_ID).get_balances()  # the odd token is refused once, a real one is fetched
    assert requests_made(connections) == {"pb_token": 2, "pb_balance": 2}


def test_redirects_are_not_followed(connections: SandboxState) -> None:
    connections.inject_fault("c2m_credit", status=302, body="", headers={"Location": "http://127.0.0.2:9/steal"})
    with pytest.raises(PostageAPIError, match="HTTP 302"):
        hook(C2M_CONN_ID).get_balances()
    assert connections.request_count("c2m_credit") == 1


# --- Click2Mail purchases -------------------------------------------------------------------------


@pytest.mark.parametrize("reply", ["full", "description", "declaration_only"])
def test_click2mail_purchase_for_every_reply_shape(connections: SandboxState, reply: str) -> None:
    connections.c2m_purchase_reply = reply  # type: ignore[assignment]
    result = hook(C2M_CONN_ID).purchase_credit("25.50")
    assert result.to_dict()["amount"] == "25.50" and result.provider == "click2mail"
    assert [p.amount for p in connections.purchases] == [Decimal("25.50")]
    assert connections.c2m_balance() == Decimal("30.50")
    assert connections.request_count("c2m_purchase") == 1


@pytest.mark.parametrize(
    ("amount", "extra", "field"),
    [
        ("9.99", {}, "amount"),
        ("10.001", {}, "amount"),
        (12.5, {}, "amount"),
        ("10", {"card_number_secret": "4111111111111112"}, "card_number_secret"),
        ("10", {"card_exp_year": "2019"}, "card_exp_year"),
        ("10", {"card_cvv_secret": "12"}, "card_cvv_secret"),
        ("10", {"billing_zip": ""}, "billing_zip"),
        ("10", {"environment": "production"}, "card_number_secret"),
    ],
)
def test_click2mail_purchase_validation_sends_nothing(
    connections: SandboxState,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    amount: object,
    extra: dict,
    field: str,
) -> None:
    fields = c2m_connection(sandbox.url)
    fields["extra"] = {**fields["extra"], **extra}  # type: ignore[dict-item]
    monkeypatch.setenv(*conn_uri_env("c2m_bad_input", **fields))
    with pytest.raises(PostageValidationError) as caught:
        hook("c2m_bad_input").purchase_credit(amount)
    assert caught.value.field == field
    assert requests_made(connections) == {}


def test_click2mail_refusal_is_an_api_error_and_charges_nothing(connections: SandboxState) -> None:
    connections.inject_fault("c2m_purchase", status=400)
    with pytest.raises(PostageAPIError) as caught:
        hook(C2M_CONN_ID).purchase_credit("10")
    assert caught.value.status == 400 and caught.value.code == "9"
    assert connections.purchases == []


def test_click2mail_reply_lost_after_charge_is_confirmed_by_balance(connections: SandboxState) -> None:
    connections.inject_fault("c2m_purchase", apply=True, drop=True)
    result = hook(C2M_CONN_ID).purchase_credit("10")
    assert result.description == "Confirmed by balance"
    assert len(connections.purchases) == 1 and connections.request_count("c2m_purchase") == 1


def test_click2mail_timeout_after_charge_is_confirmed_by_balance(connections: SandboxState) -> None:
    connections.inject_fault("c2m_purchase", apply=True, delay=1.0)
    result = hook(C2M_CONN_ID, timeout=(2.0, 0.3)).purchase_credit("10")
    assert result.description == "Confirmed by balance"
    assert len(connections.purchases) == 1 and connections.request_count("c2m_purchase") == 1


@pytest.mark.parametrize("fault", [{"status": 500}, {"status": 502}, {"status": 524}, {"drop": True}])
def test_click2mail_unknown_outcome_is_never_repeated(connections: SandboxState, fault: dict) -> None:
    connections.inject_fault("c2m_purchase", **fault)
    with pytest.raises(PurchaseOutcomeUnknownError, match="check the account before buying again"):
        hook(C2M_CONN_ID).purchase_credit("10")
    assert connections.purchases == [] and connections.request_count("c2m_purchase") == 1


def test_click2mail_purchase_resent_only_when_never_sent(connections: SandboxState) -> None:
    connections.inject_fault(
        "c2m_purchase", status=200, body="<credit><status>0</status><description>Success</description></credit>"
    )
    hook(C2M_CONN_ID).purchase_credit("10")
    assert connections.request_count("c2m_purchase") == 1


# --- Pitney Bowes refills -------------------------------------------------------------------------


def test_pitney_bowes_refill_from_line_of_credit(connections: SandboxState) -> None:
    result = hook(PB_CONN_ID).purchase_credit(100, transaction_id="txn-one")
    assert result.to_dict() == {
        "provider": "pitney_bowes",
        "conn_id": PB_CONN_ID,
        "amount": "100.00",
        "currency": "USD",
        "transaction_id": "txn-one",
        "description": "Success",
    }
    assert connections.pb_balance() == Decimal("112.50")
    credit = hook(PB_CONN_ID).get_balance("line_of_credit")
    assert (credit.available, credit.balance_owed) == (Decimal("400"), Decimal("100"))


def test_pitney_bowes_same_transaction_id_refills_once(connections: SandboxState) -> None:
    pb = hook(PB_CONN_ID)
    pb.purchase_credit(50, transaction_id="txn-same")
    pb.purchase_credit(50, transaction_id="txn-same")
    assert [r.transaction_id for r in connections.refills] == ["txn-same"]
    assert connections.pb_balance() == Decimal("62.50")


def test_pitney_bowes_lost_reply_then_retry_with_same_id_refills_once(connections: SandboxState) -> None:
    connections.inject_fault("pb_fund", apply=True, drop=True)
    pb = hook(PB_CONN_ID)
    with pytest.raises(PurchaseOutcomeUnknownError, match="may have gone through"):
        pb.purchase_credit(50, transaction_id="txn-lost")
    assert connections.request_count("pb_fund") == 1
    pb.purchase_credit(50, transaction_id="txn-lost")
    assert len(connections.refills) == 1 and connections.pb_balance() == Decimal("62.50")


@pytest.mark.parametrize("status", [500, 502, 503, 504, 524])
def test_pitney_bowes_refill_server_error_is_unknown_and_not_resent(connections: SandboxState, status: int) -> None:
    connections.inject_fault("pb_fund", status=status)
    with pytest.raises(PurchaseOutcomeUnknownError):
        hook(PB_CONN_ID).purchase_credit(50, transaction_id="txn-5xx")
    assert connections.request_count("pb_fund") == 1 and connections.refills == []


def test_pitney_bowes_refill_after_token_expiry(connections: SandboxState) -> None:
    pb = hook(PB_CONN_ID)
    pb.get_balances()
    connections.expire_tokens()
    pb.purchase_credit(20, transaction_id="txn-401")
    assert connections.request_count("pb_fund") == 2 and len(connections.refills) == 1


def test_pitney_bowes_refill_refused_by_api(connections: SandboxState) -> None:
    with pytest.raises(PostageAPIError, match="HTTP 400"):
        hook(PB_CONN_ID).purchase_credit(600, transaction_id="txn-too-much")  # above the available credit
    assert connections.refills == []


@pytest.mark.parametrize(("amount", "txn"), [("10.50", "t1"), (0, "t2"), ("-5", "t3"), (5.0, "t4"), ("20", "bad id!")])
def test_pitney_bowes_refill_validation_sends_nothing(connections: SandboxState, amount: object, txn: str) -> None:
    with pytest.raises(PostageValidationError):
        hook(PB_CONN_ID).purchase_credit(amount, transaction_id=txn)
    assert requests_made(connections) == {}


@pytest.mark.parametrize(
    ("extra", "field"), [({"developer_id": ""}, "developer_id"), ({"environment": "qa"}, "environment")]
)
def test_bad_pitney_bowes_connection_sends_nothing(
    connections: SandboxState, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, extra: dict, field: str
) -> None:
    fields = pb_connection(sandbox.url)
    fields["extra"] = {**fields["extra"], **extra}  # type: ignore[dict-item]
    monkeypatch.setenv(*conn_uri_env("pb_bad_conn", **fields))
    with pytest.raises(PostageConfigError) as caught:
        hook("pb_bad_conn").get_balances()
    assert caught.value.field == field
    assert requests_made(connections) == {}


# --- test_connection and secrets ------------------------------------------------------------------


def test_test_connection(connections: SandboxState, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, message = hook(PB_CONN_ID).test_connection()
    assert ok and "postage 12.50 USD" in message
    monkeypatch.setenv(*conn_uri_env("c2m_wrong", **{**c2m_connection(sandbox.url), "password": "nope-nope"}))
    ok, message = hook("c2m_wrong").test_connection()
    assert not ok and "401" in message and "nope-nope" not in message


def test_secrets_are_registered_with_the_masker(connections: SandboxState) -> None:
    from airflow.providers.common.compat.sdk import redact

    c2m = hook(C2M_CONN_ID)
    c2m.validate_purchase(None)
    pb = hook(PB_CONN_ID)
    pb.get_balances()
    token = TOKENS.get(pb.settings.credential_key, lambda: pytest.fail("the token should be cached"))
    secrets = [c2m.settings.password, c2m.settings.billing_extras["card_number_secret"], pb.settings.api_secret, token]
    for secret in secrets:
        assert secret not in str(redact(f"value={secret}"))
