"""The bad-input corpus: every invalid input across the operators, the sensor and the connections is
refused before any request (the sandbox counted nothing), with a message that names the problem and
holds no secret."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from conftest import (
    BILLING,
    C2M_CONN_ID,
    PB_CONN_ID,
    FakeTaskInstance,
    c2m_connection,
    conn_uri_env,
    pb_connection,
    task_context,
)

from airflow_provider_postage.operators.postage import PurchaseCreditOperator
from airflow_provider_postage.protocol.errors import PostageValidationError
from airflow_provider_postage.sandbox import SandboxServer, SandboxState
from airflow_provider_postage.sensors.postage import BalanceThresholdSensor

SECRETS = ("demo-pass-C2M", "demo-api-secret-PB", BILLING["card_number_secret"], "4111111111111112")
FAST = {"backoff_initial": 0.01, "backoff_max": 0.02}

#: (case id, operator arguments, connection changes or None, field named in the error, words in it)
PURCHASES: list[tuple[str, dict[str, Any], dict[str, Any] | None, str, str]] = [
    ("negative amount", {"amount": "-10"}, None, "amount", "greater than zero"),
    ("zero amount", {"amount": "0"}, None, "amount", "greater than zero"),
    ("below the Click2Mail minimum", {"amount": "9.99"}, None, "amount", "at least 10.00"),
    ("fractional dollars for Pitney Bowes", {"amount": "10.50", "conn": PB_CONN_ID}, None, "amount", "whole number"),
    ("more than two decimals", {"amount": "10.001"}, None, "amount", "two decimal places"),
    ("NaN", {"amount": "NaN"}, None, "amount", "finite"),
    ("infinity", {"amount": "Infinity"}, None, "amount", "finite"),
    ("a float", {"amount": 10.5}, None, "amount", "floats are inexact"),
    ("non-numeric", {"amount": "ten dollars"}, None, "amount", "not a number"),
    ("above max_amount", {"amount": "600"}, None, "amount", "above max_amount"),
    ("above a custom max_amount", {"amount": "60", "max_amount": "50"}, None, "amount", "above max_amount"),
    ("negative top_up_to", {"top_up_to": "-1"}, None, "top_up_to", "negative"),
    ("bad max_amount", {"amount": "20", "max_amount": "lots"}, None, "max_amount", "not a number"),
    ("card fails Luhn", {"amount": "20"}, {"card_number_secret": "4111111111111112"}, "card_number_secret", "Luhn"),
    ("expired card", {"amount": "20"}, {"card_exp_year": "2020"}, "card_exp_year", "expired"),
    ("month 13", {"amount": "20"}, {"card_exp_month": "13"}, "card_exp_month", "01 to 12"),
    ("2-digit CVV", {"amount": "20"}, {"card_cvv_secret": "12"}, "card_cvv_secret", "3 digits"),
    ("3-digit CVV for AE", {"amount": "20"}, {"card_type": "AE"}, "card_cvv_secret", "4 digits"),
    ("unknown card type", {"amount": "20"}, {"card_type": "JC"}, "card_type", "one of VI, MC, DI, AE"),
    (
        "test card in production",
        {"amount": "20"},
        {"environment": "production"},
        "card_number_secret",
        "staging test card",
    ),
    (
        "plain http in production",
        {"amount": "20"},
        {"environment": "production", "host": "http://127.0.0.1:9"},
        "host",
        "plain http:// is refused",
    ),
    ("missing billing name", {"amount": "20"}, {"billing_name": ""}, "billing_name", "missing"),
    ("bad ZIP", {"amount": "20"}, {"billing_zip": "ABCDE"}, "billing_zip", "5 digits"),
    ("unknown environment", {"amount": "20"}, {"environment": "qa"}, "environment", "one of staging, production"),
    ("bad verify_ssl", {"amount": "20"}, {"verify_ssl": "maybe"}, "verify_ssl", "true, false or the path"),
]

#: connection-level problems: (case id, connection type, field changes, field, words)
CONNECTIONS: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("missing login", "click2mail", {"login": None}, "login", "username is missing"),
    ("missing password", "click2mail", {"password": None}, "password", "password is missing"),
    ("malformed host", "click2mail", {"host": "ftp://example.com"}, "host", "http(s) URL"),
    ("host with credentials", "click2mail", {"host": "http://user:pw@example.com"}, "host", "credentials"),
    ("missing API key", "pitney_bowes", {"login": None}, "login", "API key is missing"),
    (
        "missing developer id",
        "pitney_bowes",
        {"extra": {"postal_reporting_number": "900001"}},
        "developer_id",
        "missing",
    ),
    ("missing merchant", "pitney_bowes", {"extra": {"developer_id": "44440000"}}, "postal_reporting_number", "missing"),
    (
        "path in developer id",
        "pitney_bowes",
        {"extra": {"developer_id": "../x", "postal_reporting_number": "1"}},
        "developer_id",
        "letters, digits",
    ),
    (
        "unknown PB environment",
        "pitney_bowes",
        {"extra": {"developer_id": "1", "postal_reporting_number": "1", "environment": "staging"}},
        "environment",
        "one of sandbox, production",
    ),
    ("malformed PB host", "pitney_bowes", {"host": "http://:8080"}, "host", "http(s) URL"),
]

#: sensor arguments: (case id, arguments, field, words)
SENSORS: list[tuple[str, dict[str, Any], str, str]] = [
    ("negative threshold", {"threshold": "-5"}, "threshold", "negative"),
    ("float threshold", {"threshold": 50.0}, "threshold", "floats are inexact"),
    ("threshold with three decimals", {"threshold": "1.001"}, "threshold", "two decimal places"),
    ("unknown account type", {"threshold": "5", "account_type": "savings"}, "account_type", "one of credit"),
    ("unknown condition", {"threshold": "5", "condition": "above"}, "condition", "one of at_least, below"),
]


def assert_clean(error: BaseException, field: str, words: str) -> None:
    message = str(error)
    assert isinstance(error, PostageValidationError), type(error)
    assert error.field == field and words in message, message
    for secret in SECRETS:
        assert secret not in message


def nothing_sent(state: SandboxState) -> None:
    assert {k: v for k, v in state.counters()["requests"].items() if v} == {}


@pytest.mark.parametrize(
    ("args", "changes", "field", "words"), [c[1:] for c in PURCHASES], ids=[c[0] for c in PURCHASES]
)
def test_bad_purchase_input(
    connections: SandboxState,
    sandbox: SandboxServer,
    journal_store: Any,
    monkeypatch: pytest.MonkeyPatch,
    args: dict[str, Any],
    changes: dict[str, Any] | None,
    field: str,
    words: str,
) -> None:
    args = dict(args)
    conn_id = args.pop("conn", C2M_CONN_ID)
    if changes is not None:
        changes = dict(changes)
        fields = c2m_connection(sandbox.url)
        fields["host"] = changes.pop("host", fields["host"])
        fields["extra"] = {**fields["extra"], **changes}  # type: ignore[dict-item]
        conn_id = "c2m_bad_input"
        monkeypatch.setenv(*conn_uri_env(conn_id, **fields))
    ti = FakeTaskInstance(run_id=f"manual__{uuid.uuid4().hex}")
    with pytest.raises(PostageValidationError) as caught:
        operator = PurchaseCreditOperator(task_id="buy", postage_conn_id=conn_id, hook_params=FAST, **args)
        operator.execute(task_context(ti, journal_store))
    assert_clean(caught.value, field, words)
    nothing_sent(connections)


@pytest.mark.parametrize(
    ("conn_type", "changes", "field", "words"), [c[1:] for c in CONNECTIONS], ids=[c[0] for c in CONNECTIONS]
)
def test_bad_connection(
    connections: SandboxState,
    sandbox: SandboxServer,
    journal_store: Any,
    monkeypatch: pytest.MonkeyPatch,
    conn_type: str,
    changes: dict[str, Any],
    field: str,
    words: str,
) -> None:
    fields = c2m_connection(sandbox.url) if conn_type == "click2mail" else pb_connection(sandbox.url)
    fields.update(changes)
    monkeypatch.setenv(*conn_uri_env("bad_conn", **fields))
    ti = FakeTaskInstance(run_id=f"manual__{uuid.uuid4().hex}")
    with pytest.raises(PostageValidationError) as caught:
        PurchaseCreditOperator(task_id="buy", postage_conn_id="bad_conn", amount="20", hook_params=FAST).execute(
            task_context(ti, journal_store)
        )
    assert_clean(caught.value, field, words)
    with pytest.raises(PostageValidationError):
        BalanceThresholdSensor(task_id="wait", postage_conn_id="bad_conn", threshold="5").poke({})
    nothing_sent(connections)


@pytest.mark.parametrize(("args", "field", "words"), [c[1:] for c in SENSORS], ids=[c[0] for c in SENSORS])
def test_bad_sensor_input_fails_when_the_dag_is_parsed(
    connections: SandboxState, args: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(PostageValidationError) as caught:
        BalanceThresholdSensor(task_id="wait", postage_conn_id=C2M_CONN_ID, **args)
    assert_clean(caught.value, field, words)
    nothing_sent(connections)


def test_templated_bad_threshold_fails_once_rendered_before_any_request(connections: SandboxState) -> None:
    sensor = BalanceThresholdSensor(task_id="wait", postage_conn_id=C2M_CONN_ID, threshold="{{ params.t }}")
    sensor.threshold = "-3"  # as rendered
    with pytest.raises(PostageValidationError) as caught:
        sensor.poke({})
    assert_clean(caught.value, "threshold", "negative")
    nothing_sent(connections)


def test_the_corpus_is_at_least_thirty_inputs() -> None:
    assert len(PURCHASES) + len(CONNECTIONS) + len(SENSORS) >= 30
