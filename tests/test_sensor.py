"""BalanceThresholdSensor called directly against the sandbox in poke, reschedule and deferrable modes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from conftest import (
    AIRFLOW_V3,
    C2M_CONN_ID,
    PB_CONN_ID,
    PB_NO_CREDIT_CONN_ID,
    FakeTaskInstance,
    c2m_connection,
    conn_uri_env,
    pb_connection,
    task_context,
)

from airflow_provider_postage.protocol.errors import PostageAPIError, PostageAuthError, PostageValidationError
from airflow_provider_postage.sandbox import SandboxServer, SandboxState
from airflow_provider_postage.sandbox import state as sandbox_defaults
from airflow_provider_postage.sensors.postage import BalanceThresholdSensor
from airflow_provider_postage.triggers.postage import BalanceThresholdTrigger

C2M_USER = sandbox_defaults.DEFAULT_C2M_USERNAME


def requests_made(state: SandboxState) -> dict[str, int]:
    return {name: count for name, count in state.counters()["requests"].items() if count}


def sensor(**kwargs: Any) -> BalanceThresholdSensor:
    kwargs.setdefault("task_id", "wait")
    kwargs.setdefault("postage_conn_id", C2M_CONN_ID)
    kwargs.setdefault("poke_interval", 0.2)
    kwargs.setdefault("timeout", 10)
    return BalanceThresholdSensor(**kwargs)


def context() -> Any:
    return task_context(FakeTaskInstance(task_id="wait"))


# --- poke mode ------------------------------------------------------------------------------------


def test_poke_mode_returns_the_balance_when_met_at_once(connections: SandboxState) -> None:
    result = sensor(threshold="5").execute(context())
    assert (result["provider"], result["conn_id"], result["account_type"], result["available"]) == (
        "click2mail",
        C2M_CONN_ID,
        "credit",
        "5.00",
    )
    assert requests_made(connections) == {"c2m_credit": 1}


def test_poke_mode_waits_until_the_balance_rises(connections: SandboxState, later: Any) -> None:
    later("c2m_credit", 1, lambda: connections.set_c2m_balance(C2M_USER, "75"))
    result = sensor(threshold="50").execute(context())
    assert result["available"] == "75.00"
    assert connections.request_count("c2m_credit") >= 2
    assert connections.purchases == []


def test_poke_mode_times_out(connections: SandboxState) -> None:
    from airflow.providers.common.compat.sdk import AirflowSensorTimeout

    with pytest.raises(AirflowSensorTimeout, match="Sensor has timed out"):
        sensor(threshold="50", timeout=0.6, poke_interval=0.2).execute(context())
    # It poked more than once and slept poke_interval in between: about timeout / poke_interval + 1 pokes.
    assert 2 <= connections.request_count("c2m_credit") <= 6


def test_poke_mode_timeout_with_soft_fail_skips(connections: SandboxState) -> None:
    from airflow.providers.common.compat.sdk import AirflowSkipException

    with pytest.raises(AirflowSkipException):
        sensor(threshold="50", timeout=0.3, poke_interval=0.2, soft_fail=True).execute(context())
    assert connections.request_count("c2m_credit") >= 2


# --- reschedule mode ------------------------------------------------------------------------------


@pytest.fixture
def reschedule_context(request: pytest.FixtureRequest) -> dict[str, Any]:
    if not AIRFLOW_V3:
        request.getfixturevalue("airflow_db")  # Airflow 2.11 reads the first try's start date from it
    return context()


def test_reschedule_mode_asks_to_be_rescheduled_then_returns(
    connections: SandboxState, reschedule_context: dict[str, Any]
) -> None:
    try:
        from airflow.sdk.exceptions import AirflowRescheduleException
    except ImportError:  # Airflow 2.11
        from airflow.exceptions import AirflowRescheduleException  # type: ignore[no-redef,attr-defined]

    wait = sensor(threshold="50", mode="reschedule", poke_interval=30)
    started = dt.datetime.now(dt.timezone.utc)
    with pytest.raises(AirflowRescheduleException) as caught:
        wait.execute(reschedule_context)
    assert started + dt.timedelta(seconds=29) <= caught.value.reschedule_date
    assert caught.value.reschedule_date <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=31)
    assert requests_made(connections) == {"c2m_credit": 1}

    connections.set_c2m_balance(C2M_USER, "50")
    assert wait.execute(reschedule_context)["available"] == "50.00"
    assert requests_made(connections) == {"c2m_credit": 2}


# --- deferrable mode ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "trigger_kwargs", "reads"),
    [
        (
            {"postage_conn_id": C2M_CONN_ID, "threshold": "50", "poke_interval": 0.5, "timeout": 120},
            {"postage_conn_id": C2M_CONN_ID, "threshold": "50.00", "account_type": None, "condition": "at_least"},
            {"c2m_credit": 1},
        ),
        (
            {
                "postage_conn_id": PB_CONN_ID,
                "threshold": 400,
                "account_type": "line_of_credit",
                "condition": "below",
                "poke_interval": 7,
                "timeout": 3600,
            },
            {
                "postage_conn_id": PB_CONN_ID,
                "threshold": "400.00",
                "account_type": "line_of_credit",
                "condition": "below",
            },
            {"pb_token": 1, "pb_balance": 1},
        ),
    ],
)
def test_deferrable_mode_pokes_once_then_defers(
    connections: SandboxState, kwargs: dict[str, Any], trigger_kwargs: dict[str, Any], reads: dict[str, int]
) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    wait = sensor(deferrable=True, **kwargs)
    with pytest.raises(TaskDeferred) as caught:
        wait.execute(context())
    deferred = caught.value
    assert isinstance(deferred.trigger, BalanceThresholdTrigger)
    assert deferred.trigger.serialize() == (
        "airflow_provider_postage.triggers.postage.BalanceThresholdTrigger",
        {**trigger_kwargs, "poke_interval": float(kwargs["poke_interval"]), "timeout": [10.0, 30.0]},
    )
    assert deferred.method_name == "execute_complete"
    assert deferred.timeout == dt.timedelta(seconds=kwargs["timeout"])
    assert requests_made(connections) == reads


def test_deferrable_mode_returns_without_deferring_when_met_at_once(connections: SandboxState) -> None:
    result = sensor(threshold="5.00", deferrable=True).execute(context())
    assert result["available"] == "5.00"
    assert requests_made(connections) == {"c2m_credit": 1}


def test_deferrable_mode_defers_through_a_transient_error(connections: SandboxState) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    connections.inject_fault("c2m_credit", status=200, body="<html>maintenance</html>", content_type="text/html")
    with pytest.raises(TaskDeferred):
        sensor(threshold="1", deferrable=True).execute(context())
    assert requests_made(connections) == {"c2m_credit": 1}


def test_deferrable_mode_fails_at_once_on_a_permanent_error(
    connections: SandboxState, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(*conn_uri_env("c2m_wrong", **{**c2m_connection(sandbox.url), "password": "nope-nope"}))
    with pytest.raises(PostageAuthError, match="username or password refused"):
        sensor(postage_conn_id="c2m_wrong", threshold="1", deferrable=True).execute(context())
    assert requests_made(connections) == {"c2m_credit": 1}


def test_execute_complete_with_a_success_event_returns_the_balance(connections: SandboxState) -> None:
    balance = {"provider": "click2mail", "conn_id": C2M_CONN_ID, "account_type": "credit", "available": "60.00"}
    wait = sensor(threshold="50", deferrable=True)
    assert wait.execute_complete(context(), {"status": "success", "balance": balance}) == balance
    resumed = wait.resume_execution("execute_complete", {"event": {"status": "success", "balance": balance}}, context())
    assert resumed == balance
    assert requests_made(connections) == {}


@pytest.mark.parametrize("soft_fail", [False, True])
def test_execute_complete_with_an_error_event_fails(connections: SandboxState, soft_fail: bool) -> None:
    from airflow.providers.common.compat.sdk import AirflowException, AirflowSkipException

    event = {"status": "error", "message": "pitney_bowes API error (HTTP 403) [1000033]: Forbidden"}
    wait = sensor(threshold="50", deferrable=True, soft_fail=soft_fail)
    with pytest.raises(AirflowException, match=r"^c2m_sandbox: pitney_bowes API error \(HTTP 403\)"):
        wait.execute_complete(context(), event)
    # As Airflow resumes it: soft_fail turns the failure into a skip.
    expected = AirflowSkipException if soft_fail else AirflowException
    with pytest.raises(expected):
        wait.resume_execution("execute_complete", {"event": event}, context())
    assert requests_made(connections) == {}


@pytest.mark.parametrize("soft_fail", [False, True])
def test_deferred_wait_that_times_out(connections: SandboxState, soft_fail: bool) -> None:
    from airflow.providers.common.compat.sdk import AirflowSensorTimeout, AirflowSkipException

    if AIRFLOW_V3:
        expected: type[BaseException] = AirflowSensorTimeout
        reason = "Trigger timeout"
    else:
        from airflow.exceptions import TaskDeferralError

        expected, reason = TaskDeferralError, "Trigger/execution timeout"
    wait = sensor(threshold="50", deferrable=True, soft_fail=soft_fail)
    with pytest.raises(AirflowSkipException if soft_fail else expected):
        wait.resume_execution("__fail__", {"error": reason}, context())
    assert requests_made(connections) == {}


# --- conditions and accounts ----------------------------------------------------------------------


def test_condition_below_is_met_at_once_under_the_threshold(connections: SandboxState) -> None:
    from airflow.providers.common.compat.sdk import AirflowSensorTimeout

    result = sensor(threshold="10", condition="below").execute(context())
    assert result["available"] == "5.00"
    with pytest.raises(AirflowSensorTimeout):  # 5.00 is not below 5.00
        sensor(threshold="5", condition="below", timeout=0.3).execute(context())


def test_condition_below_waits_for_the_balance_to_fall(connections: SandboxState) -> None:
    connections.drain_c2m(C2M_USER, "5")  # 5.00 falls by 5.00 a second
    result = sensor(threshold="3", condition="below").execute(context())
    assert Decimal("0.00") <= Decimal(result["available"]) < Decimal("3.00")
    assert connections.request_count("c2m_credit") >= 2


@pytest.mark.parametrize(("threshold", "condition"), [("500", "at_least"), ("500.01", "below")])
def test_line_of_credit_account(connections: SandboxState, threshold: str, condition: str) -> None:
    result = sensor(
        postage_conn_id=PB_CONN_ID, threshold=threshold, condition=condition, account_type="line_of_credit"
    ).execute(context())
    assert (result["account_type"], result["available"], result["credit_limit"]) == (
        "line_of_credit",
        "500.00",
        "5000.00",
    )
    assert requests_made(connections) == {"pb_token": 1, "pb_balance": 1}


def test_pitney_bowes_default_account_is_postage(connections: SandboxState) -> None:
    result = sensor(postage_conn_id=PB_CONN_ID, threshold="12.50").execute(context())
    assert (result["account_type"], result["available"], result["account_number"]) == ("postage", "12.50", "****6062")


def test_missing_line_of_credit_fails(connections: SandboxState) -> None:
    with pytest.raises(PostageValidationError, match="'pb_sandbox_postage_only' has no line_of_credit account"):
        sensor(postage_conn_id=PB_NO_CREDIT_CONN_ID, threshold="1", account_type="line_of_credit").execute(context())
    assert requests_made(connections) == {"pb_token": 1, "pb_balance": 1}


# --- API trouble ----------------------------------------------------------------------------------


def test_transient_errors_are_waited_out(connections: SandboxState) -> None:
    # Four 503s exhaust the hook's own retries (with its real backoff): the poke is not done, not failed.
    connections.inject_fault("c2m_credit", status=503, times=4)
    wait = sensor(threshold="5")
    first = wait.poke(context())
    assert (first.is_done, first.xcom_value) == (False, None)
    assert requests_made(connections) == {"c2m_credit": 4}
    second = wait.poke(context())
    assert second.is_done and second.xcom_value["available"] == "5.00"
    assert requests_made(connections) == {"c2m_credit": 5}


@pytest.mark.parametrize(
    ("endpoint", "fault"),
    [
        ("c2m_credit", {"status": 200, "body": "<html>maintenance</html>", "content_type": "text/html"}),
        ("c2m_credit", {"status": 200, "body": "<credit><balance>1", "content_type": "application/xml"}),
    ],
)
def test_unreadable_replies_are_waited_out_in_poke_mode(
    connections: SandboxState, endpoint: Any, fault: dict[str, Any]
) -> None:
    connections.inject_fault(endpoint, times=2, **fault)
    result = sensor(threshold="5").execute(context())
    assert result["available"] == "5.00"
    assert requests_made(connections) == {"c2m_credit": 3}


@pytest.mark.parametrize(
    ("conn", "fault", "error", "message", "reads"),
    [
        (
            ("pb_dev", "pb", {"developer_id": "99999999"}, {}),
            None,
            PostageAuthError,
            r"HTTP 403\) \[1000033\]",
            {"pb_token": 1, "pb_balance": 1},
        ),
        (
            ("pb_any", "pb", {}, {}),
            ("pb_balance", {"status": 403}),
            PostageAuthError,
            r"HTTP 403",
            {"pb_token": 1, "pb_balance": 1},
        ),
        (
            ("pb_secret", "pb", {}, {"password": "wrong-secret-value"}),
            None,
            PostageAuthError,
            r"HTTP 401\) \[1000032\]",
            {"pb_token": 1},
        ),
        (
            ("pb_prn", "pb", {"postal_reporting_number": "123456"}, {}),
            None,
            PostageAPIError,
            r"HTTP 404",
            {"pb_token": 1, "pb_balance": 1},
        ),
        (
            ("c2m_pw", "c2m", {}, {"password": "nope-nope"}),
            None,
            PostageAuthError,
            r"HTTP 401\).*username or password refused",
            {"c2m_credit": 1},
        ),
    ],
    ids=["403-developer", "403-injected", "bad-secret", "unknown-merchant", "bad-password"],
)
def test_permanent_errors_fail_with_the_api_message(
    connections: SandboxState,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    conn: tuple[str, str, dict[str, Any], dict[str, Any]],
    fault: tuple[str, dict[str, Any]] | None,
    error: type[Exception],
    message: str,
    reads: dict[str, int],
) -> None:
    conn_id, kind, extra, fields = conn
    base = pb_connection(sandbox.url) if kind == "pb" else c2m_connection(sandbox.url)
    base["extra"] = {**base["extra"], **extra}  # type: ignore[dict-item]
    monkeypatch.setenv(*conn_uri_env(conn_id, **{**base, **fields}))
    if fault is not None:
        connections.inject_fault(fault[0], **fault[1])  # type: ignore[arg-type]
    with pytest.raises(error, match=message) as caught:
        sensor(postage_conn_id=conn_id, threshold="1", timeout=30).execute(context())  # fails, no timeout
    assert "wrong-secret-value" not in str(caught.value) and "nope-nope" not in str(caught.value)
    assert requests_made(connections) == reads


# --- arguments ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"threshold": 12.5}, "threshold"),
        ({"threshold": "twelve"}, "threshold"),
        ({"threshold": "-1"}, "threshold"),
        ({"threshold": "1.234"}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"threshold": "1", "condition": "above"}, "condition"),
        ({"threshold": "1", "account_type": "savings"}, "account_type"),
    ],
)
def test_bad_arguments_refused_when_the_dag_is_parsed(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(PostageValidationError) as caught:
        sensor(**kwargs)
    assert caught.value.field == field


@pytest.mark.parametrize("deferrable", [False, True])
@pytest.mark.parametrize(
    ("field", "rendered"), [("threshold", "1.234"), ("threshold", "-5"), ("account_type", "savings")]
)
def test_templated_arguments_are_checked_once_rendered_before_any_request(
    connections: SandboxState, deferrable: bool, field: str, rendered: str
) -> None:
    wait = sensor(**{"threshold": "5", field: "{{ params.value }}"}, deferrable=deferrable)  # a template: accepted
    wait.render_template_fields({"params": {"value": rendered}})
    with pytest.raises(PostageValidationError) as caught:
        wait.execute(context())
    assert caught.value.field == field
    assert requests_made(connections) == {}


def test_templated_threshold_rendered_right_is_used(connections: SandboxState) -> None:
    wait = sensor(threshold="{{ params.threshold }}", postage_conn_id="{{ params.conn }}")
    wait.render_template_fields({"params": {"threshold": "457.22", "conn": PB_NO_CREDIT_CONN_ID}})
    assert wait.execute(context())["available"] == "457.22"
