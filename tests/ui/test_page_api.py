"""The Postage page's server side without a browser: the balance cache, the ledger reader, and (Airflow 3)
the plugin app mounted in Airflow's own API app, in this process, with SimpleAuthManager's real checks."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import time
import warnings
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from conftest import AIRFLOW_V3, BILLING, C2M_CONN_ID, PB_CONN_ID, PB_NO_CREDIT_CONN_ID

from airflow_provider_postage.plugins import balances, ledger
from airflow_provider_postage.protocol.errors import PostageAuthError
from airflow_provider_postage.protocol.records import Balance
from airflow_provider_postage.sandbox import state as sandbox_defaults

NOW = dt.datetime(2026, 11, 30, 10, 0, tzinfo=dt.timezone.utc)


def balance(conn_id: str = "c2m", available: str = "5.00", account_type: str = "credit") -> Balance:
    return Balance("click2mail", conn_id, account_type, None, "USD", Decimal(available), NOW)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the cache --------------------------------------------------------------------------------------


def test_many_viewers_at_once_share_one_read_per_interval() -> None:
    clock = Clock()
    cache = balances.BalanceCache(refresh_seconds=60, clock=clock)
    calls = []
    gate = threading.Event()

    def read() -> list[Balance]:
        calls.append(1)
        gate.wait(5)  # slow API: everyone else arrives while this read is under way
        return [balance()]

    threads = [threading.Thread(target=cache.get, args=("acct", read)) for _ in range(50)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    gate.set()
    for thread in threads:
        thread.join(5)
    assert len(calls) == 1
    clock.now += 59
    assert cache.get("acct", read).balances == [balance()] and len(calls) == 1
    clock.now += 1
    cache.get("acct", read)
    assert len(calls) == 2 and cache.reads == 2


def test_accounts_are_read_in_parallel_and_kept_for_the_chart() -> None:
    cache = balances.BalanceCache(refresh_seconds=0, history_points=3)
    started = time.monotonic()

    def slow(conn_id: str) -> Any:
        def read() -> list[Balance]:
            time.sleep(0.3)
            return [balance(conn_id)]

        return read

    readings = cache.get_many([(name, slow(name), ()) for name in ("a", "b", "c", "d")])
    assert time.monotonic() - started < 1.0
    assert [r.balances[0].conn_id for r in readings] == ["a", "b", "c", "d"]
    for value in ("1.00", "2.00", "3.00", "4.00"):
        cache.get("a", lambda value=value: [balance("a", value)])
    assert [p["available"] for p in cache.history()[("a", "credit")]] == ["2.00", "3.00", "4.00"]


def test_an_error_is_cached_too_and_shown_without_secrets() -> None:
    clock = Clock()
    cache = balances.BalanceCache(refresh_seconds=60, clock=clock)
    calls = []

    def failing() -> list[Balance]:
        calls.append(1)
        raise RuntimeError("refused key=Hunter2-secret-password by the server")

    reading = cache.get("acct", failing, ["Hunter2-secret-password"])
    assert reading.error == "RuntimeError: refused key=*** by the server"
    assert cache.get("acct", failing, ["Hunter2-secret-password"]) is reading and len(calls) == 1
    error = PostageAuthError("click2mail", 401, "refused", code="1000032")
    assert balances.describe_error(error, []) == str(error)  # our own errors are shown as they are


def test_the_secrets_of_a_connection_are_every_secret_field() -> None:
    conn = balances.PostageConnection(
        "c2m",
        "click2mail",
        "user",
        "pass-9876",
        None,
        {
            **BILLING,
            "card_number_secret": "4000056655665556",
            "card_cvv_secret": "739",
            "extra__click2mail__card_number": "5555555555554444",
            "billing_zip": "34567",
        },
        None,
        None,
        "environment variable",
    )
    secrets = balances.secrets_of(conn)
    assert {"pass-9876", "4000056655665556", "739", "5555555555554444"} <= set(secrets)
    assert "34567" not in secrets and "user" not in secrets
    assert balances.scrub("card 4000056655665556 cvv 739", secrets) == "card *** cvv ***"


def test_a_connection_keeps_its_hook_until_it_changes() -> None:
    conn = balances.PostageConnection(
        "c2m_memo", "click2mail", "user", "pw-1", "https://127.0.0.1:1", {"environment": "staging"}, None, None, "env"
    )
    first = balances.read_request(conn)
    assert balances.read_request(conn) is first  # one hook: its session reused, its warnings logged once
    second = balances.read_request(dataclasses.replace(conn, password="pw-2"))
    assert second is not first and second[0] != first[0]  # new credentials: read again at once
    refused = balances.read_request(dataclasses.replace(conn, extra={"environment": "nowhere"}))
    with pytest.raises(Exception, match="environment"):
        refused[1]()


# --- the ledger ---------------------------------------------------------------------------------------


def ledger_document(**overrides: Any) -> dict[str, Any]:
    document = {
        "version": 1,
        "provider": "click2mail",
        "account": "demo-user@127.0.0.1:8443",
        "conn_id": "postage_click2mail",
        "entries": [
            {
                "at": "2026-11-30T08:00:00+00:00",
                "conn_id": "postage_click2mail",
                "amount": "20.00",
                "currency": "USD",
                "status": "purchased",
                "transaction_id": None,
                "dag_id": "d",
                "run_id": "r",
                "task_id": "t",
                "map_index": -1,
                "balance_before": "5.00",
                "balance_after": "25.00",
                "card_number": "4000056655665556",
            },  # not a ledger field: never passed on
            {"at": "2026-11-30T09:00:00Z", "amount": 30, "status": "weird", "map_index": True},
            {"at": "not a time", "amount": "10.00", "status": "purchased"},
        ],
        "balances": [
            {"at": "2026-11-30T07:00:00+00:00", "account_type": "credit", "available": "5.00"},
            {"at": "2026-11-30T08:30:00+00:00", "account_type": "credit", "available": "25.00"},
            {"at": "2026-11-30T08:45:00+00:00", "account_type": "credit", "available": "NaN"},
        ],
    }
    document.update(overrides)
    return document


def test_a_ledger_passes_on_its_known_fields_only() -> None:
    parsed = ledger.parse_ledger("postage_ledger.click2mail.x", json.dumps(ledger_document()))
    assert [e["at"] for e in parsed.entries] == ["2026-11-30T08:00:00+00:00", "2026-11-30T09:00:00+00:00"]
    first, second = parsed.entries
    assert "card_number" not in first and "4000056655665556" not in json.dumps(parsed.entries)
    assert (second["status"], second["amount"], second["map_index"], second["conn_id"]) == (
        "unknown",
        "30",
        -1,
        "postage_click2mail",
    )
    assert [b["available"] for b in parsed.balances] == ["5.00", "25.00"]  # NaN dropped
    with pytest.raises(ValueError):
        ledger.parse_ledger("postage_ledger.x.y", "[1, 2]")


def test_the_chart_merges_the_ledger_with_the_page_reads() -> None:
    parsed = ledger.parse_ledger("postage_ledger.click2mail.x", json.dumps(ledger_document()))
    page = {
        ("postage_click2mail", "credit"): [{"at": "2026-11-30T10:00:00+00:00", "available": "25.00", "source": "page"}],
        ("pb", "postage"): [{"at": "2026-11-30T10:00:00+00:00", "available": "12.50", "source": "page"}],
    }
    series = {s["id"]: s for s in ledger.chart_series([parsed], page)}
    c2m = series["postage_click2mail/credit"]
    assert [(p["available"], p["source"]) for p in c2m["points"]] == [
        ("5.00", "ledger"),
        ("25.00", "ledger"),
        ("25.00", "page"),
    ]
    assert [(m["status"], m["balance"]) for m in c2m["purchases"]] == [("purchased", "25.00"), ("unknown", None)]
    assert series["pb/postage"]["purchases"] == []
    assert [p["status"] for p in ledger.purchases([parsed])] == ["unknown", "purchased"]  # newest first


# --- the app in Airflow's API app ----------------------------------------------------------------------

PASSWORDS = {"admin": "admin-pw-3141", "viewer": "viewer-pw-2718"}
ROUTES = (
    "/postage/ui",
    "/postage/static/postage.js",
    "/postage/static/chart.js",
    "/postage/static/postage.css",
    "/postage/api/balances",
    "/postage/api/history",
    "/postage/api/top-up?dag_id=postage_scheduled_top_up",
)


@pytest.fixture(scope="module")
def api(airflow_db: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Airflow's API app (plugins mounted as the API server mounts them) with an admin and a viewer."""
    if not AIRFLOW_V3:
        pytest.skip("the Postage page is Airflow 3 only")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette would rather have httpx2 there
        from fastapi.testclient import TestClient

    passwords = tmp_path_factory.mktemp("auth") / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    patch = pytest.MonkeyPatch()
    patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,viewer:viewer")
    patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
    patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "postage-page-tests-" + "x" * 64)
    from airflow.api_fastapi.app import create_app

    with TestClient(create_app()) as client:
        yield client
    patch.undo()


def token(api: Any, user: str) -> dict[str, str]:
    reply = api.post("/auth/token", json={"username": user, "password": PASSWORDS[user]})
    assert reply.status_code == 201, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


def test_every_route_wants_a_login_and_its_permission(api: Any) -> None:
    api.cookies.clear()
    for route in ROUTES:
        assert api.get(route).status_code == 401, route
    viewer, admin = token(api, "viewer"), token(api, "admin")
    for route in ROUTES:
        assert api.get(route, headers=viewer).status_code == (200 if "top-up" in route else 403), route
        assert api.get(route, headers=admin).status_code == 200, route
    assert api.get("/postage/static/app.py", headers=admin).status_code == 404
    assert api.get(ROUTES[-1], headers=viewer).json()["may_trigger"] is False
    api.cookies.set("_token", admin["Authorization"].split()[1])  # the UI's cookie does as well as a bearer
    try:
        assert api.get("/postage/api/balances").status_code == 200
    finally:
        api.cookies.clear()


def test_balances_of_every_postage_connection_without_secrets(api: Any, connections: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_NOT_POSTAGE", json.dumps({"conn_type": "http", "host": "example.invalid"}))
    monkeypatch.setenv(
        "AIRFLOW_CONN_C2M_BROKEN",
        json.dumps(
            {
                "conn_type": "click2mail",
                "login": "x",
                "password": "Broken-pw-5521",
                "host": "https://127.0.0.1:1",
                "extra": {"environment": "staging"},
            }
        ),
    )
    admin = token(api, "admin")
    reply = api.get("/postage/api/balances", headers=admin)
    rows = {row["conn_id"]: row for row in reply.json()["connections"]}
    assert set(rows) == {C2M_CONN_ID, PB_CONN_ID, PB_NO_CREDIT_CONN_ID, "c2m_broken"}
    assert [a["available"] for a in rows[C2M_CONN_ID]["accounts"]] == ["5.00"]
    assert {a["account_type"]: a["available"] for a in rows[PB_CONN_ID]["accounts"]} == {
        "postage": "12.50",
        "line_of_credit": "500.00",
    }
    assert rows["c2m_broken"]["accounts"] == [] and rows["c2m_broken"]["error"]
    text = reply.text + api.get("/postage/api/history", headers=admin).text + api.get("/postage/ui", headers=admin).text
    for secret in (
        "Broken-pw-5521",
        sandbox_defaults.DEFAULT_C2M_PASSWORD,
        sandbox_defaults.DEFAULT_PB_API_SECRET,
        BILLING["card_number_secret"],
    ):
        assert secret not in text
    assert f'"{BILLING["card_cvv_secret"]}"' not in text


def test_the_history_reads_the_ledger_variables(api: Any, connections: Any) -> None:
    from airflow.models.variable import Variable

    key = "postage_ledger.click2mail.demo-user@127.0.0.1:8443"
    Variable.set(key, json.dumps(ledger_document(conn_id=C2M_CONN_ID)))
    Variable.set("postage_ledger.click2mail.broken", "{not json")
    try:
        admin = token(api, "admin")
        api.get("/postage/api/balances", headers=admin)
        history = api.get("/postage/api/history", headers=admin).json()
    finally:
        Variable.delete(key)
        Variable.delete("postage_ledger.click2mail.broken")
    assert [p["amount"] for p in history["purchases"]] == ["30", "20.00"]
    assert history["ledger_errors"] == [
        {"key": "postage_ledger.click2mail.broken", "error": "not a ledger: JSONDecodeError"}
    ]
    series = {s["id"]: s for s in history["series"]}
    sources = [p["source"] for p in series[f"{C2M_CONN_ID}/credit"]["points"]]
    assert sources[:2] == ["ledger", "ledger"] and sources[-1] == "page"


# --- registration ---------------------------------------------------------------------------------------


def test_the_plugin_is_registered_both_ways() -> None:
    from importlib.metadata import entry_points

    from airflow_provider_postage.get_provider_info import get_provider_info
    from airflow_provider_postage.plugins import PostagePlugin

    [declared] = get_provider_info()["plugins"]
    module, _, name = declared["plugin-class"].rpartition(".")
    assert getattr(__import__(module, fromlist=[name]), name) is PostagePlugin
    [entry] = [e for e in entry_points(group="airflow.plugins") if e.name == declared["name"]]
    assert entry.load() is PostagePlugin and PostagePlugin.name == declared["name"]
    if AIRFLOW_V3:
        assert [app["url_prefix"] for app in PostagePlugin.fastapi_apps] == ["/postage"]
        [view] = PostagePlugin.external_views
        assert (view["name"], view["href"], view["url_route"], view["destination"]) == (
            "Postage",
            "/postage/ui",
            "postage",
            "nav",
        )
    else:
        assert not getattr(PostagePlugin, "fastapi_apps", []) and not getattr(PostagePlugin, "external_views", [])
