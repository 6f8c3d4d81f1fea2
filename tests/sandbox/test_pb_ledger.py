"""Pitney Bowes auto-refill rule and transaction history in the sandbox: real HTTP, plus fake clocks for time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest
import requests

from airflow_provider_postage.sandbox import (
    DEFAULT_PB_API_KEY,
    DEFAULT_PB_API_SECRET,
    DEFAULT_PB_DEVELOPER_ID,
    DEFAULT_PB_PRN,
    DEFAULT_PB_PRN_2,
    AutoRefillRule,
    InvalidSettingError,
    PBCredentialSeed,
    PBMerchantSeed,
    SandboxServer,
    SandboxState,
    UnknownEntityError,
)
from airflow_provider_postage.sandbox.pitney_bowes.rules import (
    TRANSACTION_ID_RE,
    months_before,
    spring_page,
)
from airflow_provider_postage.sandbox.values import parse_instant

PB_AUTH = (DEFAULT_PB_API_KEY, DEFAULT_PB_API_SECRET)
UTC = timezone.utc


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer() as srv:
        yield srv


@pytest.fixture
def state(server: SandboxServer) -> SandboxState:
    server.state.reset()
    return server.state


@pytest.fixture
def url(server: SandboxServer, state: SandboxState) -> str:
    return server.url


@pytest.fixture
def token(url: str) -> str:
    r = requests.post(f"{url}/oauth/token", auth=PB_AUTH, data={"grant_type": "client_credentials"}, timeout=5)
    value: str = r.json()["access_token"]
    return value


def headers(token: str, unified: bool = True) -> dict[str, str]:
    result = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if unified:
        result["X-PB-UnifiedErrorStructure"] = "true"
    return result


def rule_url(url: str, prn: str = DEFAULT_PB_PRN, developer_id: str = DEFAULT_PB_DEVELOPER_ID) -> str:
    return f"{url}/shippingservices/v1/developers/{developer_id}/merchants/{prn}/autorefillrule"


def reports_url(url: str, developer_id: str = DEFAULT_PB_DEVELOPER_ID) -> str:
    return f"{url}/shippingservices/v4/ledger/developers/{developer_id}/transactions/reports"


def pb_json(response: requests.Response | httpx.Response) -> Any:
    return json.loads(response.text, parse_float=Decimal)


def code(response: requests.Response) -> str:
    error: dict[str, Any] = pb_json(response)["errors"][0]
    assert set(error) == {"errorCode", "errorDescription", "additionalInfo", "parameters"}
    return str(error["errorCode"])


def set_rule(url: str, token: str, body: Any, prn: str = DEFAULT_PB_PRN) -> requests.Response:
    return requests.post(rule_url(url, prn), headers=headers(token), data=json.dumps(body), timeout=5)


def zulu(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report(url: str, token: str, **params: Any) -> requests.Response:
    now = datetime.now(UTC)
    query = {"fromDate": zulu(now - timedelta(days=30)), "toDate": zulu(now + timedelta(minutes=5)), **params}
    return requests.get(reports_url(url), headers=headers(token), params=query, timeout=5)


class FakeClock:
    def __init__(self, ns: int = 1_000_000_000) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: int) -> None:
        self.ns += seconds * 1_000_000_000


# --------------------------------------------------------------------------------------------
# Auto-refill rule: the API
# --------------------------------------------------------------------------------------------
def test_rule_defaults_to_disabled_and_round_trips(url: str, state: SandboxState, token: str) -> None:
    r = requests.get(rule_url(url), headers=headers(token), timeout=5)
    assert r.status_code == 200
    assert r.text == '{"merchantID":"900001","threshold":null,"addAmount":null,"enabled":false}'
    r = set_rule(url, token, {"merchantID": DEFAULT_PB_PRN, "threshold": 100.5, "addAmount": 400, "enabled": True})
    assert r.status_code == 200
    assert r.text == '{"merchantID":"900001","threshold":100.5,"addAmount":400,"enabled":true}'
    assert requests.get(rule_url(url), headers=headers(token), timeout=5).text == r.text
    assert state.pb_autorefill_rule(DEFAULT_PB_PRN) == AutoRefillRule("900001", Decimal("100.50"), 400, True)
    assert state.request_count("pb_autorefill_get") == 2 and state.request_count("pb_autorefill_set") == 1
    assert state.snapshot()["pb"]["merchants"]["900001"]["auto_refill"] == {
        "threshold": "100.50",
        "add_amount": 400,
        "enabled": True,
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"merchantID": "900001", "threshold": 50, "enabled": True}, (Decimal(50), None, False)),
        ({"merchantID": "900001", "addAmount": 10, "enabled": True}, (None, 10, False)),
        ({"merchantID": "900001", "threshold": 50, "addAmount": 10}, (Decimal(50), 10, False)),
        ({"merchantID": "900001", "threshold": 0, "addAmount": 0, "enabled": True}, (Decimal(0), 0, True)),
        ({"merchantID": "900001", "threshold": None, "addAmount": 10, "enabled": True}, (None, 10, False)),
        ({"merchantID": "900001"}, (None, None, False)),
    ],
)
def test_a_field_left_out_is_null_and_disables(
    url: str, state: SandboxState, token: str, body: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    set_rule(url, token, {"merchantID": "900001", "threshold": 1, "addAmount": 1, "enabled": True})
    r = set_rule(url, token, body)
    assert r.status_code == 200, r.text
    reply = pb_json(r)
    assert (reply["threshold"], reply["addAmount"], reply["enabled"]) == expected


@pytest.mark.parametrize(
    ("body", "error_code"),
    [
        ({"merchantID": "900002", "threshold": 1, "addAmount": 1, "enabled": True}, "PB-INVALID-MERCHANT-ID"),
        ({"threshold": 1, "addAmount": 1, "enabled": True}, "PB-INVALID-MERCHANT-ID"),
        ({"merchantID": 900001, "threshold": 1, "addAmount": 1}, "1000050"),
        ({"merchantID": "900001", "threshold": -1, "addAmount": 1}, "1000050"),
        ({"merchantID": "900001", "threshold": 1.001, "addAmount": 1}, "1000050"),
        ({"merchantID": "900001", "threshold": "100", "addAmount": 1}, "1000050"),
        ({"merchantID": "900001", "threshold": True, "addAmount": 1}, "1000050"),
        ({"merchantID": "900001", "threshold": 1, "addAmount": 10.5}, "1000050"),
        ({"merchantID": "900001", "threshold": 1, "addAmount": 10.0}, "1000050"),
        ({"merchantID": "900001", "threshold": 1, "addAmount": -1}, "1000050"),
        ({"merchantID": "900001", "threshold": 1, "addAmount": "10"}, "1000050"),
        ({"merchantID": "900001", "threshold": 1, "addAmount": 1, "enabled": "yes"}, "1000050"),
        ([1, 2], "1000050"),
    ],
)
def test_rule_body_rules(url: str, state: SandboxState, token: str, body: Any, error_code: str) -> None:
    r = set_rule(url, token, body)
    assert r.status_code == 400 and code(r) == error_code, r.text
    assert state.pb_autorefill_rule(DEFAULT_PB_PRN) == AutoRefillRule(DEFAULT_PB_PRN)
    r = requests.post(rule_url(url), headers=headers(token), data="{not json", timeout=5)
    assert r.status_code == 400 and code(r) == "1000050"


def test_rule_auth_ownership_and_error_shapes(url: str, state: SandboxState, token: str) -> None:
    body = {"merchantID": "900001", "threshold": 1, "addAmount": 1, "enabled": True}
    r = requests.get(rule_url(url), timeout=5)
    assert r.status_code == 401 and code(r) == "PB-APIM-ERR-1002"
    r = requests.post(rule_url(url), headers=headers("sbxtok-unknown"), json=body, timeout=5)
    assert r.status_code == 401 and code(r) == "PB-APIM-ERR-1003"
    r = requests.get(rule_url(url, developer_id="55550000"), headers=headers(token), timeout=5)
    assert r.status_code == 403 and code(r) == "1000033"
    r = requests.get(rule_url(url, prn="999999"), headers=headers(token), timeout=5)
    assert r.status_code == 404 and code(r) == "PB-RESOURCE-NOT-FOUND"
    state.add_pb_merchant(PBMerchantSeed("700001", "****0001", Decimal("1.00"), developer_id="77770000"))
    assert requests.get(rule_url(url, prn="700001"), headers=headers(token), timeout=5).status_code == 404
    r = requests.post(rule_url(url), headers=headers(token, unified=False), json={"merchantID": "x"}, timeout=5)
    assert r.status_code == 400 and r.json()["status"] == "ERROR"
    assert r.json()["errors"][0]["errorCode"] == "PB-INVALID-MERCHANT-ID"
    state.set_pb_merchant(DEFAULT_PB_PRN, fund_enabled=False)
    r = set_rule(url, token, body)
    assert r.status_code == 403 and code(r) == "PB-ACCOUNT-NOT-ENABLED"
    assert requests.get(rule_url(url), headers=headers(token), timeout=5).status_code == 200


def test_rule_endpoints_take_faults(url: str, state: SandboxState, token: str) -> None:
    state.inject_fault("pb_autorefill_get", status=503)
    state.inject_fault("pb_autorefill_set", status=500, apply=True)
    r = requests.get(rule_url(url), headers=headers(token), timeout=5)
    assert r.status_code == 503 and code(r) == "PB-SERVICE-UNAVAILABLE"
    r = set_rule(url, token, {"merchantID": "900001", "threshold": 5, "addAmount": 50, "enabled": True})
    assert r.status_code == 500 and state.pb_autorefill_rule(DEFAULT_PB_PRN).enabled  # applied, then failed
    state.inject_fault("pb_autorefill_get", drop=True)
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        requests.get(rule_url(url), headers=headers(token), timeout=5)
    counters = requests.get(f"{url}/_sandbox/counters", timeout=5).json()["requests"]
    assert (counters["pb_autorefill_get"], counters["pb_autorefill_set"]) == (2, 1)


# --------------------------------------------------------------------------------------------
# Auto-refill rule: how the sandbox applies it
# --------------------------------------------------------------------------------------------
def test_a_balance_read_below_threshold_refills_once(url: str, state: SandboxState, token: str) -> None:
    set_rule(url, token, {"merchantID": "900001", "threshold": 100, "addAmount": 400, "enabled": True})
    assert state.refills == []  # setting the rule is not a read
    balance_url = f"{url}/shippingservices/v1/developers/{DEFAULT_PB_DEVELOPER_ID}/merchants/900001/account-balance"
    accounts = pb_json(requests.get(balance_url, headers=headers(token), timeout=5))["accounts"]
    assert accounts[0]["availableBalance"] == Decimal("412.5")
    assert (accounts[1]["availableCredit"], accounts[1]["balanceOwed"]) == (100, 400)
    [refill] = state.refills
    assert (refill.prn, refill.amount, refill.source) == ("900001", Decimal("400.00"), "auto_refill")
    assert refill.transaction_id.startswith("auto-") and TRANSACTION_ID_RE.match(refill.transaction_id)
    assert state.pb_balance() == Decimal("412.50") and len(state.refills) == 1  # above threshold now
    counters = requests.get(f"{url}/_sandbox/counters", timeout=5).json()
    assert counters["refills"][0]["source"] == "auto_refill"
    [entry] = state.pb_transactions(prn=DEFAULT_PB_PRN)
    assert (entry.transaction_id, entry.transaction_type, entry.amount) == (
        refill.transaction_id,
        "POSTAGE FUND",
        Decimal("400.00"),
    )


def test_auto_refill_draws_on_what_the_merchant_has() -> None:
    st = SandboxState()
    st.set_pb_autorefill_rule(DEFAULT_PB_PRN_2, threshold="500", add_amount=100, enabled=True)
    assert st.pb_balance(DEFAULT_PB_PRN_2) == Decimal("557.22")  # no line of credit: the payment method
    st.set_pb_autorefill_rule(DEFAULT_PB_PRN, threshold="100", add_amount=600, enabled=True)
    assert st.pb_balance() == Decimal("12.50")  # 600 > 500 of available credit: nothing happens
    st.set_pb_line_of_credit(DEFAULT_PB_PRN, available_credit="600")
    st.set_pb_merchant(DEFAULT_PB_PRN, fund_enabled=False)
    assert st.pb_balance() == Decimal("12.50")  # not enabled for funding
    st.set_pb_merchant(DEFAULT_PB_PRN, fund_enabled=True)
    st.set_pb_autorefill_rule(DEFAULT_PB_PRN, threshold="100", add_amount=0, enabled=True)
    assert st.pb_balance() == Decimal("12.50")  # nothing to add
    st.set_pb_autorefill_rule(DEFAULT_PB_PRN, threshold="100", add_amount=600, enabled=False)
    assert st.pb_balance() == Decimal("12.50")  # disabled
    assert [r.prn for r in st.refills] == [DEFAULT_PB_PRN_2]


def test_auto_refill_after_a_drain_and_while_settling() -> None:
    clock = FakeClock()
    st = SandboxState(clock=clock)
    st.set_pb_line_of_credit(DEFAULT_PB_PRN, available_credit="5000")  # credit never limits here
    st.set_pb_balance(DEFAULT_PB_PRN, "150")
    st.set_pb_autorefill_rule(DEFAULT_PB_PRN, threshold="100", add_amount=200, enabled=True)
    st.drain_pb(DEFAULT_PB_PRN, "10")
    clock.advance(4)
    assert st.pb_balance() == Decimal("110.00") and st.refills == []
    clock.advance(2)
    assert st.pb_balance() == Decimal("290.00")  # 90 is below 100: +200, and the drain goes on from there
    clock.advance(1)
    assert st.pb_balance() == Decimal("280.00") and len(st.refills) == 1
    st.drain_pb(DEFAULT_PB_PRN, "0")
    st.settle_seconds = 30
    st.set_pb_balance(DEFAULT_PB_PRN, "5")
    assert st.pb_balance() == Decimal("5.00") and len(st.refills) == 2  # refilled, not visible yet
    assert st.pb_balance() == Decimal("5.00") and len(st.refills) == 2  # in flight: no second refill
    clock.advance(30)
    assert st.pb_balance() == Decimal("205.00") and len(st.refills) == 2


def test_rule_validation_in_python() -> None:
    st = SandboxState()
    assert st.set_pb_autorefill_rule(DEFAULT_PB_PRN, threshold=10, enabled=True) == AutoRefillRule(
        "900001", Decimal(10)
    )
    for kwargs in (
        {"threshold": "-1"},
        {"threshold": "1.001"},
        {"add_amount": 1.5},
        {"add_amount": -1},
        {"enabled": 1},
    ):
        with pytest.raises(InvalidSettingError):
            st.set_pb_autorefill_rule(DEFAULT_PB_PRN, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(UnknownEntityError):
        st.pb_autorefill_rule("999999")


def test_reset_clears_rules_and_history_but_reset_counters_keeps_history() -> None:
    st = SandboxState()
    st.set_pb_autorefill_rule(DEFAULT_PB_PRN, threshold="100", add_amount=400, enabled=True)
    st.pb_balance()
    st.reset_counters()
    assert st.refills == [] and len(st.pb_transactions()) == 1
    st.reset()
    assert st.pb_autorefill_rule(DEFAULT_PB_PRN) == AutoRefillRule(DEFAULT_PB_PRN) and st.pb_transactions() == []


def test_control_route_sets_the_rule(url: str, state: SandboxState) -> None:
    r = requests.post(f"{url}/_sandbox/pb/merchants/900001/autorefill", json={"threshold": "20", "add_amount": 30})
    assert r.status_code == 200 and r.json()["auto_refill"] == {
        "threshold": "20.00",
        "add_amount": 30,
        "enabled": False,
    }
    r = requests.post(f"{url}/_sandbox/pb/merchants/900001/autorefill", json={"treshold": "20"}, timeout=5)
    assert r.status_code == 400 and "unknown field 'treshold'" in r.json()["error"]
    r = requests.post(f"{url}/_sandbox/pb/merchants/123/autorefill", json={}, timeout=5)
    assert r.status_code == 404


# --------------------------------------------------------------------------------------------
# Transaction history
# --------------------------------------------------------------------------------------------
def test_every_refill_is_a_postage_fund_transaction(url: str, state: SandboxState, token: str) -> None:
    fund_url = f"{url}/shippingservices/v1/developers/{DEFAULT_PB_DEVELOPER_ID}/merchants/900001/account/fund"
    before = datetime.now(UTC) - timedelta(seconds=1)
    r = requests.post(
        fund_url, headers={**headers(token), "X-PB-TransactionId": "txn-42"}, json={"amount": 50, "currencyCode": "USD"}
    )
    assert r.status_code == 200
    state.set_pb_autorefill_rule(DEFAULT_PB_PRN_2, threshold="1000", add_amount=600, enabled=True)
    state.pb_balance(DEFAULT_PB_PRN_2)
    r = report(url, token)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    page = pb_json(r)
    assert {k: v for k, v in page.items() if k != "content"} == {
        "totalElements": 2,
        "totalPages": 1,
        "number": 0,
        "size": 20,
        "numberOfElements": 2,
        "first": True,
        "last": True,
    }
    manual, auto = page["content"]
    assert set(manual) == {
        "transactionId",
        "transactionDateTime",
        "transactionType",
        "developerId",
        "merchantId",
        "postageDepositAmount",
        "creditCardFee",
        "description",
    }
    assert (manual["transactionId"], manual["merchantId"], manual["postageDepositAmount"]) == ("txn-42", "900001", 50)
    assert (manual["transactionType"], manual["developerId"], manual["creditCardFee"]) == (
        "POSTAGE FUND",
        "44440000",
        0,
    )
    assert manual["description"] == "Postage fund (from PB Line of Credit)"
    assert manual["transactionDateTime"].endswith("Z") and parse_instant(manual["transactionDateTime"]) >= before
    assert (auto["merchantId"], auto["postageDepositAmount"]) == ("900002", 600)
    assert auto["transactionId"] == state.refills[-1].transaction_id and "Auto refill" in auto["description"]
    # A replayed retry is not a second transaction.
    requests.post(
        fund_url, headers={**headers(token), "X-PB-TransactionId": "txn-42"}, json={"amount": 50, "currencyCode": "USD"}
    )
    assert pb_json(report(url, token))["totalElements"] == 2
    assert state.request_count("pb_transactions") == 2


def test_window_filters_and_paging(url: str, state: SandboxState, token: str) -> None:
    now = datetime.now(UTC)
    seeded = [{"amount": str(10 + i), "at": zulu(now - timedelta(days=40 - i))} for i in range(25)]
    seeded.append({"amount": "-3.25", "at": zulu(now - timedelta(days=2)), "type": "POSTAGE PRINT"})
    seeded.append({"amount": "7", "at": zulu(now - timedelta(days=300))})  # long ago: never in a report
    r = requests.post(f"{url}/_sandbox/pb/merchants/900001/transactions", json=seeded, timeout=5)
    assert r.status_code == 200 and len(r.json()["added"]) == 27
    requests.post(
        f"{url}/_sandbox/pb/merchants/900002/transactions",
        json={"transactions": [{"amount": "99", "at": zulu(now - timedelta(days=1)), "transaction_id": "B-1"}]},
        timeout=5,
    )
    everything = pb_json(report(url, token, fromDate=zulu(now - timedelta(days=60)), size=2000))
    assert everything["totalElements"] == 27
    times = [item["transactionDateTime"] for item in everything["content"]]
    assert times == sorted(times)  # oldest first
    page = pb_json(report(url, token, fromDate=zulu(now - timedelta(days=60)), merchantId="900001", size=10, page=2))
    assert (page["totalElements"], page["totalPages"], page["numberOfElements"]) == (26, 3, 6)
    assert (page["first"], page["last"], page["number"]) == (False, True, 2)
    beyond = pb_json(report(url, token, fromDate=zulu(now - timedelta(days=60)), page=9))
    assert beyond["content"] == [] and beyond["last"] is True
    window = pb_json(report(url, token, fromDate=zulu(now - timedelta(days=20)), toDate=zulu(now - timedelta(days=18))))
    assert [item["postageDepositAmount"] for item in window["content"]] == [30, 31, 32]  # both bounds included
    prints = pb_json(report(url, token, transactionType="postage print"))
    assert [(i["transactionType"], i["postageDepositAmount"]) for i in prints["content"]] == [
        ("POSTAGE PRINT", Decimal("-3.25"))
    ]
    funds = pb_json(report(url, token, transactionType="POSTAGE FUND", merchantId="900002"))
    assert [i["transactionId"] for i in funds["content"]] == ["B-1"]


@pytest.mark.parametrize(
    ("params", "error_code", "words"),
    [
        ({"fromDate": None}, "PB-INVALID-PARAMETER", "fromDate is required"),
        ({"toDate": "2026-11-01"}, "PB-INVALID-PARAMETER", "ISO 8601 date-time"),
        ({"fromDate": "yesterday"}, "PB-INVALID-PARAMETER", "ISO 8601 date-time"),
        ({"size": "0"}, "PB-INVALID-PARAMETER", "size must be an integer from 1 to 2000"),
        ({"size": "2001"}, "PB-INVALID-PARAMETER", "size"),
        ({"page": "-1"}, "PB-INVALID-PARAMETER", "page must be an integer 0 or more"),
        ({"page": "x"}, "PB-INVALID-PARAMETER", "page"),
        ({"toDate": "2020-01-01T00:00:00Z"}, "PB-INVALID-DATE-RANGE", "is after toDate"),
        ({"fromDate": "MONTHS_AGO_7"}, "PB-INVALID-DATE-RANGE", "more than 6 months ago"),
    ],
)
def test_report_query_rules(url: str, token: str, params: dict[str, str | None], error_code: str, words: str) -> None:
    if params.get("fromDate") == "MONTHS_AGO_7":
        params["fromDate"] = zulu(months_before(datetime.now(UTC), 7))
    r = report(url, token, **params)
    assert r.status_code == 400 and code(r) == error_code and words in pb_json(r)["errors"][0]["errorDescription"]


def test_report_reaches_back_six_months_and_checks_access(url: str, state: SandboxState, token: str) -> None:
    almost = months_before(datetime.now(UTC), 6) + timedelta(minutes=5)
    assert report(url, token, fromDate=zulu(almost)).status_code == 200
    assert report(url, token, merchantId="999999").status_code == 404
    state.add_pb_credentials(PBCredentialSeed("other-key", "other-secret", "77770000"))
    state.add_pb_merchant(PBMerchantSeed("700001", "****0001", Decimal("1.00"), developer_id="77770000"))
    state.add_pb_transaction("700001", "5", datetime.now(UTC) - timedelta(days=1))
    r = report(url, token, merchantId="700001")
    assert r.status_code == 404 and code(r) == "PB-RESOURCE-NOT-FOUND"
    assert pb_json(report(url, token))["totalElements"] == 0  # another developer's merchant is not listed
    r = requests.get(reports_url(url, "77770000"), headers=headers(token), params={"fromDate": "x"}, timeout=5)
    assert r.status_code == 403 and code(r) == "1000033"
    r = requests.get(reports_url(url), timeout=5)
    assert r.status_code == 401 and code(r) == "PB-APIM-ERR-1002"
    state.inject_fault("pb_transactions", status=429, headers={"Retry-After": "1"})
    r = report(url, token)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1" and code(r) == "PB-TOO-MANY-REQUESTS"


def test_seeding_history_over_http(url: str, state: SandboxState) -> None:
    base = f"{url}/_sandbox/pb/merchants/900001/transactions"
    r = requests.post(base, json=[{"amount": "5", "at": "2026-01-01T00:00:00Z"}, {"amount": "5", "at": "soon"}])
    assert r.status_code == 400 and "ISO 8601" in r.json()["error"]
    assert state.pb_transactions() == []  # all or nothing
    for body in (
        [{"amount": "5", "at": "2026-01-01T00:00:00Z", "colour": "red"}],
        {"transactions": [], "extra": 1},
        [{"amount": "5.001", "at": "2026-01-01T00:00:00Z"}],
        [{"amount": "0", "at": "2026-01-01T00:00:00Z"}],
        [{"amount": "5"}],
        "nope",
    ):
        r = requests.post(base, json=body, timeout=5)
        assert r.status_code == 400 and r.json()["error"], body
    r = requests.post(base, json=[{"amount": 12.5, "at": "2026-01-01T10:00:00+02:00", "description": "old"}])
    [entry] = r.json()["transactions"]
    assert (
        entry["amount"] == "12.50"
        and entry["at"] == "2026-01-01T08:00:00.000+00:00"
        and entry["type"] == "POSTAGE FUND"
    )
    assert entry["transaction_id"].startswith("hist-") and entry["description"] == "old"
    assert requests.get(base, timeout=5).json() == {"prn": "900001", "transactions": [entry]}
    assert requests.post(f"{url}/_sandbox/pb/merchants/123/transactions", json=[]).status_code == 404
    assert requests.get(f"{url}/_sandbox/pb/merchants/123/transactions", timeout=5).status_code == 404
    assert state.snapshot()["pb"]["merchants"]["900001"]["transactions"] == 1


def test_history_in_python_with_a_fake_wall_clock() -> None:
    wall = FakeClock(int(datetime(2026, 8, 31, 12, tzinfo=UTC).timestamp()) * 1_000_000_000)
    st = SandboxState(wall_clock=wall)
    assert st.now() == datetime(2026, 8, 31, 12, tzinfo=UTC)
    st.pb_fund(DEFAULT_PB_PRN, 20, "USD", "t-1")
    st.add_pb_transaction(DEFAULT_PB_PRN, "3", "2026-08-01T00:00:00", transaction_type="ADJUSTMENT")  # naive: UTC
    entries = st.pb_transactions(from_time=datetime(2026, 7, 1, tzinfo=UTC))
    assert [(e.transaction_type, e.amount) for e in entries] == [("ADJUSTMENT", Decimal("3.00")), ("POSTAGE FUND", 20)]
    assert entries[1].at == datetime(2026, 8, 31, 12, tzinfo=UTC)
    with pytest.raises(InvalidSettingError):
        st.add_pb_transaction(DEFAULT_PB_PRN, "3", datetime(2026, 8, 1))  # naive datetime
    with pytest.raises(UnknownEntityError):
        st.add_pb_transaction("999999", "3", "2026-08-01T00:00:00Z")
    with pytest.raises(UnknownEntityError):
        st.pb_transactions(prn="999999")


def test_report_rules_in_isolation() -> None:
    assert months_before(datetime(2026, 8, 31, 12, tzinfo=UTC), 6) == datetime(2026, 2, 28, 12, tzinfo=UTC)
    assert months_before(datetime(2028, 8, 31, tzinfo=UTC), 6) == datetime(2028, 2, 29, tzinfo=UTC)
    assert months_before(datetime(2026, 3, 15, tzinfo=UTC), 6) == datetime(2025, 9, 15, tzinfo=UTC)
    assert parse_instant("2026-11-01T00:00:00Z") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_instant("2026-11-01T02:00:00.250+02:00") == datetime(2026, 11, 1, 0, 0, 0, 250000, tzinfo=UTC)
    assert parse_instant("2026-11-01") is None and parse_instant("nope") is None
    assert spring_page([], 0, 20) == {
        "content": [],
        "totalElements": 0,
        "totalPages": 0,
        "number": 0,
        "size": 20,
        "numberOfElements": 0,
        "first": True,
        "last": True,
    }
