"""Pitney Bowes funding set-up over real HTTP against the sandbox: the auto-refill rule (read, replaced
whole, validated before any request, the operator sending nothing when it already matches), the
transaction report (paged, six months back at most, the token renewed on a 401), and a run of the
monthly spend report example DAG."""

from __future__ import annotations

import csv
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import AIRFLOW_V3, C2M_CONN_ID, PB_CONN_ID, FakeTaskInstance, task_context

from airflow_provider_postage.hooks.postage import PitneyBowesHook
from airflow_provider_postage.operators.postage import PitneyBowesAutoRefillRuleOperator
from airflow_provider_postage.protocol import pitney_bowes_funding as funding
from airflow_provider_postage.protocol.errors import PostageAPIError, PostageValidationError
from airflow_provider_postage.protocol.http import HttpResponse
from airflow_provider_postage.protocol.pitney_bowes import PitneyBowesSettings
from airflow_provider_postage.sandbox import SandboxState

FAST: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.02, "max_attempts": 2}
EXAMPLE_DAG = Path(__file__).parents[1] / "example_dags" / "postage_pb_spend_report.py"
PB_ENDPOINTS = ("pb_token", "pb_autorefill_get", "pb_autorefill_set", "pb_transactions")


def hook(account: str | None = None) -> PitneyBowesHook:
    return PitneyBowesHook(PB_CONN_ID, account=account, **FAST)


def requests_made(state: SandboxState) -> dict[str, int]:
    return {name: state.request_count(name) for name in PB_ENDPOINTS if state.request_count(name)}  # type: ignore[arg-type]


def stored(state: SandboxState, prn: str) -> tuple[Any, Any, bool]:
    rule = state.pb_autorefill_rule(prn)
    return rule.threshold, rule.add_amount, rule.enabled


def rule_operator(**kwargs: Any) -> PitneyBowesAutoRefillRuleOperator:
    return PitneyBowesAutoRefillRuleOperator(task_id="rule", postage_conn_id=PB_CONN_ID, hook_params=FAST, **kwargs)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# --- the auto-refill rule ---------------------------------------------------------------------------


def test_rule_never_set_reads_as_disabled_and_a_set_one_exactly(connections: SandboxState) -> None:
    assert hook().get_auto_refill_rule() == funding.AutoRefillRule("900001", None, None, False)
    connections.set_pb_autorefill_rule("900002", threshold="100.50", add_amount=400, enabled=True)
    rule = hook("900002").get_auto_refill_rule()
    assert rule == funding.AutoRefillRule("900002", Decimal("100.50"), Decimal("400"), True)
    assert rule.to_dict() == {"merchant_id": "900002", "threshold": "100.50", "add_amount": "400.00", "enabled": True}
    assert requests_made(connections) == {"pb_token": 1, "pb_autorefill_get": 2}


def test_set_rule_is_stored_as_sent(connections: SandboxState) -> None:
    rule = hook().set_auto_refill_rule("100.5", 400, True)
    assert rule == funding.AutoRefillRule("900001", Decimal("100.50"), Decimal("400"), True)
    assert stored(connections, "900001") == (Decimal("100.50"), 400, True)
    assert stored(connections, "900002") == (None, None, False)
    assert connections.refills == []  # setting a rule buys nothing
    assert requests_made(connections) == {"pb_token": 1, "pb_autorefill_set": 1}


def test_every_field_is_sent_even_to_turn_the_rule_off(connections: SandboxState) -> None:
    """A field left out would be stored as null: turning the rule off must keep its amounts."""
    hook().set_auto_refill_rule(Decimal("75"), "250", True)
    rule = hook().set_auto_refill_rule("0", Decimal("250.00"), enabled=False)
    assert rule == funding.AutoRefillRule("900001", Decimal("0"), Decimal("250"), False)
    assert stored(connections, "900001") == (Decimal("0.00"), 250, False)
    hook().set_auto_refill_rule("0", 250, True)
    assert stored(connections, "900001") == (Decimal("0.00"), 250, True)


def test_set_request_body_holds_all_four_fields_as_exact_numbers() -> None:
    settings = PitneyBowesSettings("key", "secret", "sandbox", "https://pb.example", "44440000", "900001")
    request = funding.build_set_rule_request(settings, "t0ken", Decimal("100.50"), Decimal("400"), False)
    assert request.url == "https://pb.example/shippingservices/v1/developers/44440000/merchants/900001/autorefillrule"
    assert json.loads(request.body or b"", parse_float=Decimal) == {
        "merchantID": "900001",
        "threshold": Decimal("100.50"),
        "addAmount": 400,
        "enabled": False,
    }
    assert "t0ken" not in repr(request)


@pytest.mark.parametrize(
    ("threshold", "add_amount", "enabled", "field"),
    [
        (100.5, 400, True, "threshold"),
        ("100", 400.0, True, "add_amount"),
        ("-1", 400, True, "threshold"),
        ("10.005", 400, True, "threshold"),
        (None, 400, True, "threshold"),
        ("10", None, True, "add_amount"),
        ("10", "10.50", True, "add_amount"),
        ("10", 0, True, "add_amount"),
        ("10", "-5", True, "add_amount"),
        ("10", 400, "yes", "enabled"),
        ("10", 400, None, "enabled"),
    ],
)
def test_bad_rule_is_refused_before_any_request(
    connections: SandboxState, threshold: Any, add_amount: Any, enabled: Any, field: str
) -> None:
    with pytest.raises(PostageValidationError) as caught:
        hook().set_auto_refill_rule(threshold, add_amount, enabled)
    assert caught.value.field == field
    with pytest.raises(PostageValidationError) as caught:
        rule_operator(threshold=threshold, add_amount=add_amount, enabled=enabled).execute(
            task_context(FakeTaskInstance())
        )
    assert caught.value.field == field
    assert requests_made(connections) == {}


def test_a_rule_the_api_stores_otherwise_is_an_error(connections: SandboxState) -> None:
    body = '{"merchantID": "900001", "threshold": 100.50, "addAmount": null, "enabled": false}'
    connections.inject_fault("pb_autorefill_set", status=200, body=body, content_type="application/json")
    with pytest.raises(PostageAPIError, match=r"after setting threshold 100\.50"):
        hook().set_auto_refill_rule("100.50", 400, True)


# --- the operator -------------------------------------------------------------------------------------


def test_operator_sends_nothing_when_the_rule_already_matches(connections: SandboxState) -> None:
    connections.set_pb_autorefill_rule("900001", threshold="100.50", add_amount=400, enabled=True)
    result = rule_operator(threshold="100.5", add_amount=Decimal("400")).execute(task_context(FakeTaskInstance()))
    assert result == {
        "conn_id": PB_CONN_ID,
        "merchant_id": "900001",
        "threshold": "100.50",
        "add_amount": "400.00",
        "enabled": True,
        "changed": False,
    }
    assert requests_made(connections) == {"pb_token": 1, "pb_autorefill_get": 1}


def test_operator_replaces_a_different_rule_of_another_merchant_once(connections: SandboxState) -> None:
    connections.set_pb_autorefill_rule("900002", threshold="20", add_amount=100, enabled=True)
    operator = rule_operator(threshold="50", add_amount="100", enabled="false", postal_reporting_number="900002")
    result = operator.execute(task_context(FakeTaskInstance()))
    assert (result["merchant_id"], result["threshold"], result["enabled"], result["changed"]) == (
        "900002",
        "50.00",
        False,
        True,
    )
    assert stored(connections, "900002") == (Decimal("50.00"), 100, False)
    assert stored(connections, "900001") == (None, None, False)
    assert operator.execute(task_context(FakeTaskInstance()))["changed"] is False  # the next run: a no-op
    assert requests_made(connections) == {"pb_token": 1, "pb_autorefill_get": 2, "pb_autorefill_set": 1}


@pytest.mark.parametrize(("threshold", "changed"), [("100.50", False), ("100.505", None)])
def test_operator_checks_templated_values_once_rendered(
    connections: SandboxState, threshold: str, changed: bool | None
) -> None:
    connections.set_pb_autorefill_rule("900001", threshold="100.50", add_amount=400, enabled=True)
    operator = rule_operator(threshold="{{ params.threshold }}", add_amount="400", enabled="{{ params.on }}")
    context = {**task_context(FakeTaskInstance()), "params": {"threshold": threshold, "on": "True"}}
    operator.render_template_fields(context)
    if changed is None:
        with pytest.raises(PostageValidationError, match="threshold: must have at most two decimal places"):
            operator.execute(context)
        assert requests_made(connections) == {}
    else:
        assert operator.execute(context)["changed"] is changed


def test_operator_refuses_a_click2mail_connection(connections: SandboxState) -> None:
    operator = PitneyBowesAutoRefillRuleOperator(
        task_id="rule", postage_conn_id=C2M_CONN_ID, threshold="10", add_amount="50"
    )
    with pytest.raises(PostageValidationError, match="postage_conn_id"):
        operator.execute(task_context(FakeTaskInstance()))
    assert requests_made(connections) == {}
    assert set(operator.template_fields) >= {"postage_conn_id", "threshold", "add_amount", "postal_reporting_number"}


# --- the transaction report ---------------------------------------------------------------------------


def seed_history(state: SandboxState, prn: str, start: dt.datetime, count: int) -> None:
    state.add_pb_transactions(
        prn,
        [
            {"amount": str(i + 1), "at": start + dt.timedelta(minutes=i), "transaction_id": f"t-{prn}-{i:03d}"}
            for i in range(count)
        ],
    )


def test_report_pages_through_every_page(connections: SandboxState) -> None:
    start = utc_now() - dt.timedelta(days=10)
    seed_history(connections, "900001", start, 45)
    seed_history(connections, "900002", start, 3)
    connections.add_pb_transactions(
        "900001", [{"amount": "-2.50", "at": start - dt.timedelta(minutes=1), "type": "POSTAGE PRINT"}]
    )

    found = hook().get_transactions(start - dt.timedelta(days=1), utc_now(), page_size=10)
    assert [t.transaction_id for t in found] == [f"t-900001-{i:03d}" for i in range(45)]
    assert [t.amount for t in found] == [Decimal(i + 1) for i in range(45)]
    assert {(t.merchant_id, t.transaction_type) for t in found} == {("900001", "POSTAGE FUND")}
    assert abs(found[7].at - (start + dt.timedelta(minutes=7))) < dt.timedelta(milliseconds=1)
    assert found[7].at.utcoffset() == dt.timedelta(0)
    assert connections.request_count("pb_transactions") == 5

    every_kind = hook().get_transactions((start - dt.timedelta(days=1)).isoformat(), utc_now(), None, page_size=2000)
    assert len(every_kind) == 46 and every_kind[0].transaction_type == "POSTAGE PRINT"
    assert every_kind[0].amount == Decimal("-2.50")
    assert connections.request_count("pb_transactions") == 6


def test_report_read_is_retried_through_a_transient_failure(connections: SandboxState) -> None:
    seed_history(connections, "900001", utc_now() - dt.timedelta(days=3), 5)
    connections.inject_fault("pb_transactions", status=503, after=1)
    found = hook().get_transactions(utc_now() - dt.timedelta(days=4), utc_now(), page_size=3)
    assert len(found) == 5
    assert connections.request_count("pb_transactions") == 3


@pytest.mark.parametrize(
    ("from_date", "to_date", "kwargs", "field", "words"),
    [
        (dt.timedelta(days=200), None, {}, "from_date", "more than 6 months ago"),
        ("2020-01-01T00:00:00Z", None, {}, "from_date", "more than 6 months ago"),
        (dt.timedelta(days=1), dt.timedelta(days=2), {}, "from_date", "after to_date"),
        (dt.datetime(2026, 11, 1), None, {}, "from_date", "timezone-aware"),
        ("2026-11-01T00:00:00", None, {}, "from_date", "with an offset"),
        (dt.timedelta(days=1), None, {"page_size": 2001}, "page_size", "1 to 2000"),
        (dt.timedelta(days=1), None, {"transaction_type": " "}, "transaction_type", "non-empty"),
    ],
)
def test_bad_report_query_is_refused_before_any_request(
    connections: SandboxState, from_date: Any, to_date: Any, kwargs: dict[str, Any], field: str, words: str
) -> None:
    now = utc_now()
    if isinstance(from_date, dt.timedelta):
        from_date = now - from_date
    to_date = now - to_date if isinstance(to_date, dt.timedelta) else now
    with pytest.raises(PostageValidationError, match=words) as caught:
        hook().get_transactions(from_date, to_date, **kwargs)
    assert caught.value.field == field
    assert requests_made(connections) == {}


def test_a_refused_token_is_renewed_once_for_the_rule_and_the_report(connections: SandboxState) -> None:
    pb = hook()
    pb.get_auto_refill_rule()
    connections.expire_tokens()
    pb.get_auto_refill_rule()
    connections.expire_tokens()
    assert pb.get_transactions(utc_now() - dt.timedelta(days=1), utc_now()) == []
    connections.inject_fault("pb_autorefill_set", status=401)
    assert pb.set_auto_refill_rule("10", "20").enabled is True
    assert requests_made(connections) == {
        "pb_token": 4,
        "pb_autorefill_get": 3,
        "pb_transactions": 2,
        "pb_autorefill_set": 2,
    }


def test_report_times_are_read_in_every_iso_form() -> None:
    def entry(stamp: str) -> dict[str, Any]:
        return {"transactionId": stamp, "transactionDateTime": stamp, "transactionType": "POSTAGE FUND",
                "merchantId": "900001", "postageDepositAmount": 50, "description": None}  # fmt: skip

    stamps = ["2026-11-01T10:20:30Z", "2026-11-01T10:20:30.1Z", "2026-11-01T12:20:30.123456789+02:00",
              "2026-11-01T10:20:30", "2026-11-01T05:20:30-0500"]  # fmt: skip
    body = json.dumps({"content": [entry(s) for s in stamps], "totalPages": 1, "number": 0}).encode()
    found, last = funding.parse_transactions_page(HttpResponse(200, {}, body), 0)
    base = dt.datetime(2026, 11, 1, 10, 20, 30, tzinfo=dt.timezone.utc)
    assert [t.at for t in found] == [
        base,
        base.replace(microsecond=100000),
        base.replace(microsecond=123456),
        base,
        base,
    ]
    assert last is True
    broken = json.dumps({"content": [{**entry(stamps[0]), "postageDepositAmount": None}]}).encode()
    with pytest.raises(PostageAPIError, match="has no postageDepositAmount"):
        funding.parse_transactions_page(HttpResponse(200, {}, broken), 0)


# --- the example DAG ----------------------------------------------------------------------------------


def last_month(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    end = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (end - dt.timedelta(days=1)).replace(day=1), end


def xcom(run: Any, task_id: str) -> Any:
    from airflow.utils.session import create_session

    if AIRFLOW_V3:
        from airflow.models.xcom import XComModel

        query = XComModel.get_many(run_id=run.run_id, dag_ids=run.dag_id, task_ids=task_id, key="return_value")
        with create_session() as session:
            [row] = list(session.scalars(query))
            return XComModel.deserialize_value(row)
    from airflow.models.xcom import XCom

    return XCom.get_one(run_id=run.run_id, dag_id=run.dag_id, task_id=task_id)


@pytest.fixture
def spend_report(airflow_db: None, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The example DAG, loaded from its file. Airflow 3's ``dag.test()`` runs a DAG only once a bundle
    has written it to the database, so its file is also a bundle of its own for the test's duration."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2.11
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    if AIRFLOW_V3:
        folder = tmp_path_factory.mktemp("example_bundle")
        (folder / EXAMPLE_DAG.name).symlink_to(EXAMPLE_DAG)
        local = "airflow.dag_processing.bundles.local.LocalDagBundle"
        bundles = [
            {"name": "dags-folder", "classpath": local, "kwargs": {}},
            {"name": "postage-pb-spend-report", "classpath": local, "kwargs": {"path": str(folder)}},
        ]
        monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    bag = DagBag(dag_folder=str(EXAMPLE_DAG))
    assert bag.import_errors == {}
    return bag.get_dag("postage_pb_spend_report")


def test_spend_report_dag_writes_last_months_refills_per_merchant(
    connections: SandboxState, spend_report: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start, end = last_month(utc_now())
    for prn, amounts in (("900001", ["50", "25.50", "100"]), ("900002", ["10", "5"])):
        connections.add_pb_transactions(
            prn, [{"amount": amount, "at": start + dt.timedelta(days=i, hours=3)} for i, amount in enumerate(amounts)]
        )
    connections.add_pb_transactions(
        "900001",
        [
            {"amount": "999", "at": end},  # this month's: the report's end is exclusive
            {"amount": "999", "at": start - dt.timedelta(seconds=1)},  # the month before
            {"amount": "-7", "at": start + dt.timedelta(days=2), "type": "POSTAGE PRINT"},
        ],
    )
    conf = {"postage_conn_id": PB_CONN_ID, "merchants": ["900001", "900002"], "output_folder": str(tmp_path)}
    run = spend_report.test(run_conf=conf)
    assert run.state == "success", [(ti.task_id, ti.map_index, ti.state) for ti in run.get_task_instances()]

    month = f"{start:%Y-%m}"
    summary = xcom(run, "report")
    assert summary == {
        "month": month,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "merchants": [
            {"merchant_id": "900001", "count": 3, "total": "175.50"},
            {"merchant_id": "900002", "count": 2, "total": "15.00"},
        ],
        "count": 5,
        "total": "190.50",
        "csv": str(tmp_path / f"pb_spend_{month}.csv"),
        "markdown": str(tmp_path / f"pb_spend_{month}.md"),
    }
    with open(summary["csv"], newline="") as rows:
        assert list(csv.reader(rows)) == [
            ["merchant_id", "count", "total_usd"],
            ["900001", "3", "175.50"],
            ["900002", "2", "15.00"],
        ]
    markdown = Path(summary["markdown"]).read_text()
    assert "| 900001 | 3 | 175.50 |" in markdown and "| **all** | **5** | **190.50** |" in markdown
    assert connections.tokens_issued == 1  # one connection, one token, both merchants

    # No merchants given: the Variable's; and a month named in the run's conf.
    monkeypatch.setenv("AIRFLOW_VAR_POSTAGE_PB_MERCHANTS", '["900002"]')
    run = spend_report.test(run_conf={**conf, "merchants": [], "month": month})
    assert run.state == "success"
    assert xcom(run, "report")["merchants"] == [{"merchant_id": "900002", "count": 2, "total": "15.00"}]
