"""Tests of the local sandbox: real HTTP (requests and httpx) against a SandboxServer on an ephemeral port."""

from __future__ import annotations

import ast
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from airflow_provider_postage import sandbox as sandbox_pkg
from airflow_provider_postage.sandbox import (
    DEFAULT_C2M_PASSWORD,
    DEFAULT_C2M_USERNAME,
    DEFAULT_PB_API_KEY,
    DEFAULT_PB_API_SECRET,
    DEFAULT_PB_DEVELOPER_ID,
    DEFAULT_PB_PRN,
    DEFAULT_PB_PRN_2,
    C2MAccountSeed,
    Fault,
    InvalidSettingError,
    SandboxServer,
    SandboxState,
    Seed,
    UnknownEntityError,
    create_app,
)
from airflow_provider_postage.sandbox.__main__ import main as cli_main
from airflow_provider_postage.sandbox.rules import c2m_balance_text, dumps, json_number, luhn_ok

REPO_ROOT = Path(__file__).resolve().parents[2]
SANDBOX_DIR = REPO_ROOT / "airflow_provider_postage" / "sandbox"

C2M_AUTH = (DEFAULT_C2M_USERNAME, DEFAULT_C2M_PASSWORD)
PB_AUTH = (DEFAULT_PB_API_KEY, DEFAULT_PB_API_SECRET)
XML_DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'

TODAY = date.today()
BILLING = {
    "billingName": "Awesome User",
    "billingAddress1": "221B Baker St",
    "billingCity": "Springfield",
    "billingState": "MO",
    "billingZip": "34567",
    "billingAmount": "10",
    "billingNumber": "4111111111111111",
    "billingMonth": "12",
    "billingYear": str(TODAY.year + 4),
    "billingCvv": "123",
    "billingCcType": "VI",
}


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------
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


def credit_url(url: str) -> str:
    return f"{url}/molpro/credit"


def purchase_url(url: str) -> str:
    return f"{url}/molpro/credit/purchase"


def balance_url(url: str, prn: str = DEFAULT_PB_PRN, developer_id: str = DEFAULT_PB_DEVELOPER_ID) -> str:
    return f"{url}/shippingservices/v1/developers/{developer_id}/merchants/{prn}/account-balance"


def fund_url(url: str, prn: str = DEFAULT_PB_PRN, developer_id: str = DEFAULT_PB_DEVELOPER_ID) -> str:
    return f"{url}/shippingservices/v1/developers/{developer_id}/merchants/{prn}/account/fund"


def xml_fields(text: str) -> dict[str, str]:
    root = ET.fromstring(text.encode())
    assert root.tag == "credit"
    return {child.tag: (child.text or "") for child in root}


def get_token(url: str) -> str:
    r = requests.post(f"{url}/oauth/token", auth=PB_AUTH, data={"grant_type": "client_credentials"}, timeout=5)
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


def pb_headers(token: str, unified: bool = True, txn: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if unified:
        headers["X-PB-UnifiedErrorStructure"] = "true"
    if txn is not None:
        headers["X-PB-TransactionId"] = txn
    return headers


def pb_json(response: requests.Response | httpx.Response) -> Any:
    return json.loads(response.text, parse_float=Decimal)


def fund(url: str, token: str, amount: Any = 100, txn: str = "txn-1", prn: str = DEFAULT_PB_PRN) -> requests.Response:
    return requests.post(
        fund_url(url, prn),
        headers={**pb_headers(token, txn=txn), "Content-Type": "application/json"},
        data=json.dumps({"amount": amount, "currencyCode": "USD"}),
        timeout=5,
    )


def purchase(url: str, **overrides: str | None) -> requests.Response:
    data = {k: v for k, v in {**BILLING, **overrides}.items() if v is not None}
    return requests.post(purchase_url(url), auth=C2M_AUTH, data=data, timeout=5)


def unified_code(response: requests.Response | httpx.Response) -> str:
    body = pb_json(response)
    assert set(body) == {"errors"}
    error = body["errors"][0]
    assert set(error) == {"errorCode", "errorDescription", "additionalInfo", "parameters"}
    code: str = error["errorCode"]
    return code


# --------------------------------------------------------------------------------------------
# Package shape, formats, server
# --------------------------------------------------------------------------------------------
def test_sandbox_imports_nothing_from_the_provider_or_airflow() -> None:
    for path in SANDBOX_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in {"airflow", "airflow_provider_postage"}, f"{path.name} imports {name}"


def test_package_exports() -> None:
    for name in ("SandboxState", "create_app", "SandboxServer", "DEFAULT_SEED", "DEFAULT_C2M_USERNAME"):
        assert hasattr(sandbox_pkg, name)
    assert type(create_app(SandboxState())).__name__ == "FastAPI"


@pytest.mark.parametrize(
    ("value", "text"),
    [("5", "5.0"), ("5.00", "5.0"), ("12.50", "12.5"), ("10.25", "10.25"), ("-3", "-3.0"), ("0.00", "0.0")],
)
def test_c2m_balance_text(value: str, text: str) -> None:
    assert c2m_balance_text(Decimal(value)) == text


def test_json_numbers_never_go_through_float() -> None:
    assert json_number(Decimal("457.22")) == "457.22"
    assert json_number(Decimal("500.00")) == "500"
    assert json_number(Decimal("0.00")) == "0"
    assert dumps({"a": Decimal("0.10"), "b": [1, None, True, "x"]}) == '{"a":0.1,"b":[1,null,true,"x"]}'
    assert dumps({"big": Decimal("12345678901234567890.01")}) == '{"big":12345678901234567890.01}'
    with pytest.raises(TypeError):
        dumps({"a": 1.5})


def test_luhn() -> None:
    assert luhn_ok("4111111111111111")
    assert luhn_ok("378282246310005")
    assert not luhn_ok("4111111111111112")
    assert not luhn_ok("41111111111a1111")


def test_startup_time_and_context_manager() -> None:
    srv = SandboxServer()
    started = time.perf_counter()
    srv.start()
    elapsed = time.perf_counter() - started
    try:
        assert elapsed < 2.0, f"start took {elapsed:.3f} s"
        assert srv.url == f"http://127.0.0.1:{srv.port}" and srv.port > 0
        r = requests.get(credit_url(srv.url), auth=C2M_AUTH, timeout=5)
        assert r.status_code == 200
    finally:
        srv.stop()
    assert not srv.running
    with SandboxServer(SandboxState()) as other:
        assert httpx.get(credit_url(other.url), auth=C2M_AUTH).status_code == 200
        # A call held by a long delay fault does not hold up stop().
        other.state.inject_fault("c2m_credit", delay=30)
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(credit_url(other.url), auth=C2M_AUTH, timeout=0.1)
        stopping = time.perf_counter()
    assert time.perf_counter() - stopping < 1.5
    with pytest.raises(requests.ConnectionError):
        requests.get(credit_url(other.url), auth=C2M_AUTH, timeout=2)


# --------------------------------------------------------------------------------------------
# Click2Mail: credit
# --------------------------------------------------------------------------------------------
def test_c2m_credit_requests_and_httpx(url: str) -> None:
    r = requests.get(credit_url(url), auth=C2M_AUTH, headers={"Accept": "application/xml"}, timeout=5)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/xml")
    assert r.text.startswith(XML_DECL)
    assert xml_fields(r.text) == {"balance": "5.0", "allowNegative": "false"}
    h = httpx.get(credit_url(url), auth=C2M_AUTH)
    assert h.status_code == 200 and xml_fields(h.text)["balance"] == "5.0"


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic " + base64.b64encode(b"demo-user:wrong").decode(),
        "Basic " + base64.b64encode(b"nobody:demo-pass-C2M").decode(),
        "Basic !!!not-base64!!!",
        "Bearer something",
    ],
)
def test_c2m_bad_credentials_give_401_html(url: str, state: SandboxState, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    for r in (
        requests.get(credit_url(url), headers=headers, timeout=5),
        requests.post(purchase_url(url), headers=headers, data=BILLING, timeout=5),
    ):
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("text/html")
        assert not r.text.startswith("<?xml")
        assert "401" in r.text
    assert state.purchases == []
    assert state.c2m_balance() == Decimal("5.00")


@pytest.mark.parametrize(
    ("balance", "allow_negative", "text"),
    [("12.50", False, "12.5"), ("10.25", False, "10.25"), ("-3", True, "-3.0"), ("0", False, "0.0")],
)
def test_c2m_balance_format(url: str, state: SandboxState, balance: str, allow_negative: bool, text: str) -> None:
    state.set_c2m_balance(DEFAULT_C2M_USERNAME, balance, allow_negative=allow_negative)
    fields = xml_fields(requests.get(credit_url(url), auth=C2M_AUTH, timeout=5).text)
    assert fields == {"balance": text, "allowNegative": "true" if allow_negative else "false"}


# --------------------------------------------------------------------------------------------
# Click2Mail: purchase
# --------------------------------------------------------------------------------------------
def test_c2m_purchase_success_adds_credit_and_is_recorded(url: str, state: SandboxState) -> None:
    r = purchase(url, billingAmount="10.50")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    assert r.text.startswith(XML_DECL)
    assert xml_fields(r.text)["status"] == "0"
    assert xml_fields(requests.get(credit_url(url), auth=C2M_AUTH, timeout=5).text)["balance"] == "15.5"
    assert state.c2m_balance() == Decimal("15.50")
    [p] = state.purchases
    assert (p.username, p.amount, p.card_last4, p.environment) == (
        "demo-user",
        Decimal("10.50"),
        "1111",
        "staging",
    )
    counters = requests.get(f"{url}/_sandbox/counters", timeout=5).json()
    assert counters["purchases"][0]["amount"] == "10.50"
    assert counters["requests"]["c2m_purchase"] == 1


def test_c2m_purchase_with_httpx_and_two_digit_year_and_zip4(url: str, state: SandboxState) -> None:
    data = {**BILLING, "billingYear": f"{(TODAY.year + 1) % 100:02d}", "billingZip": "20852-4868"}
    r = httpx.post(purchase_url(url), auth=C2M_AUTH, data=data)
    assert r.status_code == 200
    assert state.c2m_balance() == Decimal("15.00")


def _past_expiry() -> dict[str, str]:
    if TODAY.month > 1:
        return {"billingMonth": f"{TODAY.month - 1:02d}", "billingYear": str(TODAY.year)}
    return {"billingMonth": "12", "billingYear": str(TODAY.year - 1)}


MISSING = "One of the required parameters is missing."
INVALID = "Invalid input data"
EXPIRED = "Authorization failed: card expired"


@pytest.mark.parametrize(
    ("overrides", "description"),
    [
        ({"billingCvv": None}, MISSING),
        ({"billingName": ""}, MISSING),
        ({"billingZip": "   "}, MISSING),
        ({"billingCcType": None}, MISSING),
        ({"billingAmount": "9.99"}, "Minimum purchase amount is $10.00"),
        ({"billingAmount": "10.001"}, INVALID),
        ({"billingAmount": "ten"}, INVALID),
        ({"billingAmount": "-10"}, INVALID),
        ({"billingAmount": "1e3"}, INVALID),
        ({"billingMonth": "13"}, EXPIRED),
        ({"billingMonth": "00"}, EXPIRED),
        ({"billingYear": str(TODAY.year - 1)}, EXPIRED),
        ({"billingYear": f"{(TODAY.year - 1) % 100:02d}"}, EXPIRED),
        (_past_expiry(), EXPIRED),
        ({"billingYear": "123"}, INVALID),
        ({"billingNumber": "4111111111111112"}, "Authorization failed"),
        ({"billingNumber": "1234"}, "Authorization failed"),
        ({"billingCvv": "12"}, INVALID),
        ({"billingCvv": "1234"}, INVALID),
        ({"billingCvv": "12a"}, INVALID),
        ({"billingCcType": "AE", "billingNumber": "378282246310005", "billingCvv": "123"}, INVALID),
        ({"billingCcType": "VISA"}, INVALID),
    ],
)
def test_c2m_purchase_rules(url: str, state: SandboxState, overrides: dict[str, str | None], description: str) -> None:
    r = purchase(url, **overrides)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/xml")
    assert xml_fields(r.text) == {"status": "9", "description": description}
    assert state.purchases == []
    assert state.c2m_balance() == Decimal("5.00")


def test_c2m_purchase_accepts_amex_with_four_digit_cvv_and_current_month(url: str, state: SandboxState) -> None:
    r = purchase(
        url,
        billingCcType="AE",
        billingNumber="378282246310005",
        billingCvv="1234",
        billingMonth=f"{TODAY.month:02d}",
        billingYear=str(TODAY.year),
    )
    assert r.status_code == 200, r.text
    assert len(state.purchases) == 1


def test_c2m_purchase_params_must_be_a_form_body(url: str, state: SandboxState) -> None:
    r = requests.post(purchase_url(url), auth=C2M_AUTH, json=BILLING, timeout=5)
    assert r.status_code == 400 and xml_fields(r.text)["description"] == MISSING
    r = requests.post(purchase_url(url), auth=C2M_AUTH, params=BILLING, timeout=5)
    assert r.status_code == 400 and xml_fields(r.text)["description"] == MISSING
    assert state.purchases == []


def test_c2m_production_refuses_the_test_card(url: str, state: SandboxState) -> None:
    state.set_c2m_account(DEFAULT_C2M_USERNAME, environment="production")
    r = purchase(url)
    assert r.status_code == 400
    assert xml_fields(r.text)["description"] == "Authorization failed: test card not accepted in production"
    r = purchase(url, billingNumber="5555555555554444", billingCcType="MC")
    assert r.status_code == 200
    [p] = state.purchases
    assert p.environment == "production" and p.card_last4 == "4444"


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        (
            "full",
            {
                "status": "0",
                "description": "Success",
                "statusUrl": "",
                "balance": "",
                "allowNegative": "false",
            },
        ),
        ("description", {"description": "Success"}),
        ("declaration_only", None),
    ],
)
def test_c2m_purchase_reply_shapes(url: str, state: SandboxState, shape: str, expected: dict[str, str] | None) -> None:
    r = requests.post(f"{url}/_sandbox/settings", json={"c2m_purchase_reply": shape}, timeout=5)
    assert r.json()["c2m_purchase_reply"] == shape
    assert state.c2m_purchase_reply == shape
    r = purchase(url)
    assert r.status_code == 200
    assert r.text.startswith(XML_DECL)
    if expected is None:
        assert r.text == XML_DECL
    else:
        assert xml_fields(r.text) == expected
    assert state.c2m_balance() == Decimal("15.00")


def test_c2m_purchase_reply_attribute_validates(state: SandboxState) -> None:
    state.c2m_purchase_reply = "description"
    assert state.settings()["c2m_purchase_reply"] == "description"
    with pytest.raises(InvalidSettingError):
        state.c2m_purchase_reply = "nope"  # type: ignore[assignment]


# --------------------------------------------------------------------------------------------
# Pitney Bowes: token
# --------------------------------------------------------------------------------------------
def test_pb_token(url: str, state: SandboxState) -> None:
    before_ms = time.time_ns() // 1_000_000
    r = requests.post(
        f"{url}/oauth/token",
        auth=PB_AUTH,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        data="grant_type=client_credentials",
        timeout=5,
    )
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"access_token", "tokenType", "issuedAt", "expiresIn", "clientID", "org"}
    assert body["access_token"].startswith("sbxtok-") and len(body["access_token"]) == 7 + 24
    assert body["tokenType"] == "BearerToken"
    assert isinstance(body["issuedAt"], str) and abs(int(body["issuedAt"]) - before_ms) < 5_000
    assert body["expiresIn"] == "35999"
    assert body["clientID"] == DEFAULT_PB_API_KEY and body["org"] == "sandbox"
    second = httpx.post(f"{url}/oauth/token", auth=PB_AUTH, data={"grant_type": "client_credentials"})
    assert second.json()["access_token"] != body["access_token"]
    assert state.tokens_issued == 2
    assert state.request_count("pb_token") == 2


@pytest.mark.parametrize("auth", [None, (DEFAULT_PB_API_KEY, "wrong"), ("other-key", DEFAULT_PB_API_SECRET)])
def test_pb_token_bad_credentials(url: str, state: SandboxState, auth: tuple[str, str] | None) -> None:
    r = requests.post(f"{url}/oauth/token", auth=auth, data={"grant_type": "client_credentials"}, timeout=5)
    assert r.status_code == 401
    assert r.json() == [{"errorCode": "1000032", "message": "Authentication error", "additionalInfo": None}]
    assert state.tokens_issued == 0


def test_pb_token_wrong_grant_type(url: str, state: SandboxState) -> None:
    kwargs_list: list[dict[str, Any]] = [
        {"data": {"grant_type": "password"}},
        {"data": {}},
        {"json": {"grant_type": "client_credentials"}},
    ]
    for kwargs in kwargs_list:
        r = requests.post(f"{url}/oauth/token", auth=PB_AUTH, timeout=5, **kwargs)
        assert r.status_code == 400
        assert isinstance(r.json(), list)
    assert state.tokens_issued == 0


def test_pb_token_ttl_setting_and_expiry(url: str, state: SandboxState) -> None:
    r = requests.post(f"{url}/_sandbox/settings", json={"token_ttl": 120}, timeout=5)
    assert r.json()["token_ttl"] == 120
    r = requests.post(f"{url}/oauth/token", auth=PB_AUTH, data={"grant_type": "client_credentials"}, timeout=5)
    assert r.json()["expiresIn"] == "120"
    state.token_ttl = 0  # issued already expired
    token = get_token(url)
    r = requests.get(balance_url(url), headers=pb_headers(token), timeout=5)
    assert r.status_code == 401 and unified_code(r) == "PB-APIM-ERR-1003"


def test_pb_expire_tokens_then_refetch(url: str, state: SandboxState) -> None:
    token = get_token(url)
    assert requests.get(balance_url(url), headers=pb_headers(token), timeout=5).status_code == 200
    r = requests.post(f"{url}/_sandbox/tokens/expire", timeout=5)
    assert r.json() == {"expired": 1}
    r = requests.get(balance_url(url), headers=pb_headers(token), timeout=5)
    assert r.status_code == 401 and unified_code(r) == "PB-APIM-ERR-1003"
    fresh = get_token(url)
    assert fresh != token
    assert requests.get(balance_url(url), headers=pb_headers(fresh), timeout=5).status_code == 200
    assert state.expire_tokens() == 1
    assert state.tokens_issued == 2


# --------------------------------------------------------------------------------------------
# Pitney Bowes: balances
# --------------------------------------------------------------------------------------------
def test_pb_balance_with_line_of_credit(url: str, state: SandboxState) -> None:
    token = get_token(url)
    r = requests.get(balance_url(url), headers=pb_headers(token), timeout=5)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert '"availableBalance":12.5' in r.text and '"availableCredit":500,' in r.text
    assert pb_json(r) == {
        "accounts": [
            {
                "accountType": "Postage Account",
                "accountNumber": "****6062",
                "currencyCode": "USD",
                "availableBalance": Decimal("12.5"),
            },
            {
                "accountType": "PB Line of Credit",
                "accountNumber": "************8952",
                "currencyCode": "USD",
                "balanceOwed": 0,
                "availableCredit": 500,
                "creditLimit": 5000,
                "minimumAmountDue": 0,
                "minimumDueDate": "2026-12-31",
            },
        ]
    }


def test_pb_balance_postage_only_with_httpx(url: str) -> None:
    token = get_token(url)
    r = httpx.get(balance_url(url, DEFAULT_PB_PRN_2), headers=pb_headers(token))
    assert r.status_code == 200
    assert r.text == (
        '{"accounts":[{"accountType":"Postage Account","accountNumber":"****6051",'
        '"currencyCode":"USD","availableBalance":457.22}]}'
    )


def test_pb_balance_errors(url: str, state: SandboxState) -> None:
    token = get_token(url)
    r = requests.get(balance_url(url), timeout=5)
    assert r.status_code == 401 and unified_code(r).startswith("PB-APIM-ERR-")
    r = requests.get(balance_url(url), headers=pb_headers("sbxtok-unknown"), timeout=5)
    assert r.status_code == 401 and unified_code(r) == "PB-APIM-ERR-1003"
    assert pb_json(r)["errors"][0]["errorDescription"] == "Invalid or expired token"
    r = requests.get(balance_url(url, developer_id="55550000"), headers=pb_headers(token), timeout=5)
    assert r.status_code == 403 and unified_code(r) == "1000033"
    r = requests.get(balance_url(url, prn="999999"), headers=pb_headers(token), timeout=5)
    assert r.status_code == 404 and unified_code(r)
    # Without X-PB-UnifiedErrorStructure: legacy shape 2.
    r = requests.get(balance_url(url, prn="999999"), headers=pb_headers(token, unified=False), timeout=5)
    assert r.status_code == 404
    body = r.json()
    assert body["status"] == "ERROR" and set(body["errors"][0]) == {"errorCode", "errorDescription"}
    assert state.request_count("pb_balance") == 5


def test_pb_token_is_bound_to_its_developer(url: str, state: SandboxState) -> None:
    from airflow_provider_postage.sandbox import PBCredentialSeed, PBMerchantSeed

    state.add_pb_credentials(PBCredentialSeed("other-key", "other-secret", "77770000"))
    state.add_pb_merchant(PBMerchantSeed("700001", "****0001", Decimal("1.00"), developer_id="77770000"))
    r = requests.post(
        f"{url}/oauth/token", auth=("other-key", "other-secret"), data={"grant_type": "client_credentials"}
    )
    other = r.json()["access_token"]
    assert requests.get(balance_url(url, "700001", "77770000"), headers=pb_headers(other)).status_code == 200
    # Its token cannot read the default developer's merchants, and vice versa.
    assert requests.get(balance_url(url), headers=pb_headers(other)).status_code == 403
    r = requests.get(balance_url(url, "700001", "44440000"), headers=pb_headers(get_token(url)))
    assert r.status_code == 404


# --------------------------------------------------------------------------------------------
# Pitney Bowes: refill
# --------------------------------------------------------------------------------------------
def test_pb_fund_from_line_of_credit(url: str, state: SandboxState) -> None:
    token = get_token(url)
    r = fund(url, token, 500)
    assert r.status_code == 200
    assert r.text == '{"amount":500,"currencyCode":"USD"}'
    accounts = pb_json(requests.get(balance_url(url), headers=pb_headers(token), timeout=5))["accounts"]
    assert accounts[0]["availableBalance"] == Decimal("512.5")
    assert (accounts[1]["availableCredit"], accounts[1]["balanceOwed"]) == (0, 500)
    [refill] = state.refills
    assert (refill.prn, refill.amount, refill.transaction_id, refill.source) == (
        DEFAULT_PB_PRN,
        Decimal("500"),
        "txn-1",
        "line_of_credit",
    )


def test_pb_fund_without_line_of_credit(url: str, state: SandboxState) -> None:
    token = get_token(url)
    r = httpx.post(
        fund_url(url, DEFAULT_PB_PRN_2),
        headers=pb_headers(token, txn="A_b-9"),
        json={"amount": 1000, "currencyCode": "USD"},
    )
    assert r.status_code == 200 and r.json() == {"amount": 1000, "currencyCode": "USD"}
    assert state.pb_balance(DEFAULT_PB_PRN_2) == Decimal("1457.22")
    assert state.refills[0].source == "payment_method"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ('{"amount": 500.5, "currencyCode": "USD"}', "1000050"),
        ('{"amount": 500.0, "currencyCode": "USD"}', "1000050"),
        ('{"amount": 5e2, "currencyCode": "USD"}', "1000050"),
        ('{"amount": "500", "currencyCode": "USD"}', "1000050"),
        ('{"amount": 0, "currencyCode": "USD"}', "1000050"),
        ('{"amount": -5, "currencyCode": "USD"}', "1000050"),
        ('{"amount": true, "currencyCode": "USD"}', "1000050"),
        ('{"amount": 500}', "1000050"),
        ('{"amount": 500, "currencyCode": "EUR"}', "PB-INVALID-CURRENCY"),
        ("[500]", "1000050"),
        ("{not json", "1000050"),
        ("", "1000050"),
    ],
)
def test_pb_fund_body_rules(url: str, state: SandboxState, body: str, code: str) -> None:
    token = get_token(url)
    r = requests.post(
        fund_url(url),
        headers={**pb_headers(token, txn="t-1"), "Content-Type": "application/json"},
        data=body,
        timeout=5,
    )
    assert r.status_code == 400 and unified_code(r) == code
    assert state.refills == [] and state.pb_balance() == Decimal("12.50")


@pytest.mark.parametrize("txn", [None, "", "x" * 26, "has space", "semi;colon", "a.b"])
def test_pb_fund_transaction_id_rules(url: str, state: SandboxState, txn: str | None) -> None:
    token = get_token(url)
    headers = pb_headers(token)
    if txn is not None:
        headers["X-PB-TransactionId"] = txn
    r = httpx.post(fund_url(url), headers=headers, json={"amount": 10, "currencyCode": "USD"})
    assert r.status_code == 400 and unified_code(r) == "PB-INVALID-TRANSACTION-ID"
    assert state.refills == []


def test_pb_fund_insufficient_credit_and_not_enabled(url: str, state: SandboxState) -> None:
    token = get_token(url)
    r = fund(url, token, 501)
    assert r.status_code == 400 and unified_code(r) == "PB-INSUFFICIENT-CREDIT"
    state.set_pb_line_of_credit(DEFAULT_PB_PRN, available_credit="1000")
    assert fund(url, token, 501).status_code == 200
    state.set_pb_merchant(DEFAULT_PB_PRN_2, fund_enabled=False)
    r = fund(url, token, 10, txn="t-2", prn=DEFAULT_PB_PRN_2)
    assert r.status_code == 403 and unified_code(r) == "PB-ACCOUNT-NOT-ENABLED"
    assert [r.amount for r in state.refills] == [Decimal("501")]


def test_pb_fund_legacy_error_shape(url: str) -> None:
    token = get_token(url)
    r = requests.post(
        fund_url(url),
        headers=pb_headers(token, unified=False, txn="t"),
        json={"amount": 9999, "currencyCode": "USD"},
        timeout=5,
    )
    body = r.json()
    assert r.status_code == 400 and body["status"] == "ERROR"
    assert body["errors"][0]["errorCode"] == "PB-INSUFFICIENT-CREDIT"


def test_pb_duplicate_transaction_replay(url: str, state: SandboxState) -> None:
    assert state.pb_duplicate_transaction == "replay"
    token = get_token(url)
    first = fund(url, token, 100, txn="same")
    second = fund(url, token, 100, txn="same")
    assert first.status_code == second.status_code == 200 and first.text == second.text
    assert len(state.refills) == 1 and state.pb_balance() == Decimal("112.50")
    # Same id for another merchant is another transaction.
    assert fund(url, token, 100, txn="same", prn=DEFAULT_PB_PRN_2).status_code == 200
    assert len(state.refills) == 2
    assert state.counters()["pb_duplicate_transactions"] == 1


def test_pb_duplicate_transaction_reject(url: str, state: SandboxState) -> None:
    requests.post(f"{url}/_sandbox/settings", json={"pb_duplicate_transaction": "reject"}, timeout=5)
    token = get_token(url)
    assert fund(url, token, 100, txn="same").status_code == 200
    r = fund(url, token, 100, txn="same")
    assert r.status_code == 400 and unified_code(r) == "PB-DUPLICATE-TRANSACTION"
    assert len(state.refills) == 1


def test_pb_duplicate_transaction_apply(url: str, state: SandboxState) -> None:
    state.pb_duplicate_transaction = "apply"
    token = get_token(url)
    assert fund(url, token, 100, txn="same").status_code == 200
    assert fund(url, token, 100, txn="same").status_code == 200
    assert len(state.refills) == 2 and state.pb_balance() == Decimal("212.50")


def test_pb_concurrent_retries_apply_once(url: str, state: SandboxState) -> None:
    token = get_token(url)
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda _: fund(url, token, 50, txn="race"), range(8)))
    assert {r.status_code for r in replies} == {200}
    assert len(state.refills) == 1 and state.pb_balance() == Decimal("62.50")


# --------------------------------------------------------------------------------------------
# Drain
# --------------------------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.ns = 1_000_000_000

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: str) -> None:
        self.ns += int(Decimal(seconds) * 1_000_000_000)


def test_drain_arithmetic_with_a_fake_clock() -> None:
    clock = FakeClock()
    st = SandboxState(clock=clock)
    st.drain_c2m(DEFAULT_C2M_USERNAME, "0.333")
    clock.advance("1")
    assert st.c2m_balance() == Decimal("4.67")  # 0.333 drained, kept to cents (rounded down)
    clock.advance("2")
    assert st.c2m_balance() == Decimal("4.01")
    st.c2m_apply_purchase(DEFAULT_C2M_USERNAME, Decimal("10"))  # restarts from the current value
    assert st.c2m_balance() == Decimal("14.01")
    clock.advance("100")
    assert st.c2m_balance() == Decimal("0.00")  # floored at 0
    st.set_c2m_account(DEFAULT_C2M_USERNAME, balance="1.00", allow_negative=True)
    clock.advance("10")
    assert st.c2m_balance() == Decimal("-2.33")
    st.drain_c2m(DEFAULT_C2M_USERNAME, 0)
    clock.advance("10")
    assert st.c2m_balance() == Decimal("-2.33")
    st.drain_pb(DEFAULT_PB_PRN, "1.5")
    clock.advance("5")
    assert st.pb_balance() == Decimal("5.00")
    clock.advance("5")
    assert st.pb_balance() == Decimal("0.00")
    assert st.snapshot()["pb"]["merchants"][DEFAULT_PB_PRN]["drain_rate_per_second"] == "1.5"
    with pytest.raises(InvalidSettingError):
        st.drain_pb(DEFAULT_PB_PRN, "-1")
    with pytest.raises(InvalidSettingError):
        st.drain_pb(DEFAULT_PB_PRN, 0.5)  # type: ignore[arg-type]


def test_drain_over_real_time_through_http(url: str) -> None:
    r = requests.post(f"{url}/_sandbox/c2m/accounts/demo-user/drain", json={"rate_per_second": "2"}, timeout=5)
    assert r.status_code == 200 and r.json()["drain_rate_per_second"] == "2"
    time.sleep(0.3)
    balance = Decimal(xml_fields(requests.get(credit_url(url), auth=C2M_AUTH, timeout=5).text)["balance"])
    assert Decimal("3.5") < balance < Decimal("4.5")
    requests.post(f"{url}/_sandbox/pb/merchants/{DEFAULT_PB_PRN}/drain", json={"rate_per_second": 1000})
    time.sleep(0.05)
    accounts = pb_json(requests.get(balance_url(url), headers=pb_headers(get_token(url)), timeout=5))["accounts"]
    assert accounts[0]["availableBalance"] == 0
    snap = requests.get(f"{url}/_sandbox/state", timeout=5).json()
    assert snap["pb"]["merchants"][DEFAULT_PB_PRN]["available_balance"] == "0.00"


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, "xml"),
        (400, "xml"),
        (404, "xml"),
        (401, "html"),
        (502, "html"),
        (503, "html"),
        (504, "html"),
        (524, "html"),
    ],
)
def test_c2m_bare_status_faults(url: str, state: SandboxState, status: int, kind: str) -> None:
    state.inject_fault("c2m_credit", status=status)
    r = requests.get(credit_url(url), auth=C2M_AUTH, timeout=5)
    assert r.status_code == status
    if kind == "xml":
        assert r.headers["content-type"].startswith("application/xml")
        assert xml_fields(r.text)["status"] == "9"
    else:
        assert r.headers["content-type"].startswith("text/html") and "<html>" in r.text
    assert requests.get(credit_url(url), auth=C2M_AUTH, timeout=5).status_code == 200  # consumed


@pytest.mark.parametrize(
    ("endpoint", "status", "kind"),
    [
        ("pb_balance", 500, "unified"),
        ("pb_balance", 503, "unified"),
        ("pb_balance", 403, "unified"),
        ("pb_balance", 401, "unified"),
        ("pb_balance", 502, "html"),
        ("pb_balance", 524, "html"),
        ("pb_fund", 500, "unified"),
        ("pb_fund", 504, "html"),
        ("pb_token", 500, "legacy1"),
        ("pb_token", 401, "legacy1"),
        ("pb_token", 502, "html"),
    ],
)
def test_pb_bare_status_faults(url: str, state: SandboxState, endpoint: str, status: int, kind: str) -> None:
    token = get_token(url)
    state.inject_fault(endpoint, status=status)  # type: ignore[arg-type]
    if endpoint == "pb_token":
        r = requests.post(f"{url}/oauth/token", auth=PB_AUTH, data={"grant_type": "client_credentials"})
    elif endpoint == "pb_balance":
        r = requests.get(balance_url(url), headers=pb_headers(token), timeout=5)
    else:
        r = fund(url, token, 10)
    assert r.status_code == status
    if kind == "unified":
        assert unified_code(r)
    elif kind == "legacy1":
        assert set(r.json()[0]) == {"errorCode", "message", "additionalInfo"}
    else:
        assert r.headers["content-type"].startswith("text/html")
    assert state.refills == [] and state.tokens_issued == 1


def test_fault_custom_bodies(url: str, state: SandboxState) -> None:
    state.inject_fault("c2m_credit", body=f"{XML_DECL}<credit><balance>abc</balance></credit>")
    state.inject_fault("c2m_credit", status=200, body="")
    state.inject_fault("c2m_credit", body="<credit><balance>1.0</bal", content_type="text/plain")
    r1, r2, r3 = (requests.get(credit_url(url), auth=C2M_AUTH, timeout=5) for _ in range(3))
    assert r1.status_code == 200 and xml_fields(r1.text)["balance"] == "abc"
    assert r2.status_code == 200 and r2.text == ""
    assert r3.headers["content-type"].startswith("text/plain") and r3.text.endswith("</bal")
    token = get_token(url)
    state.inject_fault("pb_balance", body='{"accounts": [')
    r = requests.get(balance_url(url), headers=pb_headers(token), timeout=5)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    with pytest.raises(ValueError):
        r.json()
    state.inject_fault("pb_balance", status=503, headers={"Retry-After": "7"})
    r = requests.get(balance_url(url), headers=pb_headers(token), timeout=5)
    assert r.status_code == 503 and r.headers["Retry-After"] == "7"


def test_faults_queue_in_order_and_count_as_calls(url: str, state: SandboxState) -> None:
    state.inject_fault("c2m_credit", status=500, times=2)
    state.inject_fault("c2m_credit", status=502)
    statuses = [requests.get(credit_url(url), auth=C2M_AUTH, timeout=5).status_code for _ in range(4)]
    assert statuses == [500, 500, 502, 200]
    assert state.request_count("c2m_credit") == 4
    assert all(not q for q in state.pending_faults().values())


def test_non_applied_fault_does_not_charge(url: str, state: SandboxState) -> None:
    state.inject_fault("c2m_purchase", status=500)
    r = purchase(url)
    assert r.status_code == 500 and xml_fields(r.text)["status"] == "9"
    assert state.purchases == [] and state.c2m_balance() == Decimal("5.00")


def test_applied_fault_charges_then_fails(url: str, state: SandboxState) -> None:
    state.inject_fault("c2m_purchase", status=504, apply=True)
    r = purchase(url)
    assert r.status_code == 504 and r.headers["content-type"].startswith("text/html")
    assert len(state.purchases) == 1 and state.c2m_balance() == Decimal("15.00")


def test_delay_keeps_the_server_responsive(url: str, state: SandboxState) -> None:
    state.inject_fault("c2m_credit", delay=0.6)
    slow: dict[str, Any] = {}

    def call_slow() -> None:
        started = time.perf_counter()
        slow["response"] = requests.get(credit_url(url), auth=C2M_AUTH, timeout=5)
        slow["elapsed"] = time.perf_counter() - started

    thread = threading.Thread(target=call_slow)
    thread.start()
    time.sleep(0.1)
    started = time.perf_counter()
    assert requests.get(credit_url(url), auth=C2M_AUTH, timeout=5).status_code == 200
    assert time.perf_counter() - started < 0.3
    thread.join()
    assert slow["response"].status_code == 200 and slow["elapsed"] >= 0.55


def test_apply_plus_delay_is_a_timeout_after_the_charge(url: str, state: SandboxState) -> None:
    state.inject_fault("c2m_purchase", apply=True, delay=0.6)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(purchase_url(url), auth=C2M_AUTH, data=BILLING, timeout=0.2)
    assert len(state.purchases) == 1 and state.c2m_balance() == Decimal("15.00")
    state.inject_fault("pb_fund", apply=True, delay=0.6)
    token = get_token(url)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            fund_url(url),
            headers=pb_headers(token, txn="slow"),
            json={"amount": 20, "currencyCode": "USD"},
            timeout=0.2,
        )
    assert [r.amount for r in state.refills] == [Decimal("20")]
    # The retry with the same transaction id is answered without a second charge.
    assert fund(url, token, 20, txn="slow").json() == {"amount": 20, "currencyCode": "USD"}
    assert len(state.refills) == 1


def test_drop_with_requests_and_httpx(url: str, state: SandboxState) -> None:
    state.inject_fault("c2m_credit", drop=True, times=2)
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        requests.get(credit_url(url), auth=C2M_AUTH, timeout=5)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.get(credit_url(url), auth=C2M_AUTH)
    state.inject_fault("pb_token", drop=True, status=503)
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        requests.post(f"{url}/oauth/token", auth=PB_AUTH, data={"grant_type": "client_credentials"}, timeout=5)
    assert state.tokens_issued == 0
    # A session keeps working after a dropped connection.
    with requests.Session() as session:
        state.inject_fault("c2m_credit", drop=True)
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            session.get(credit_url(url), auth=C2M_AUTH, timeout=5)
        assert session.get(credit_url(url), auth=C2M_AUTH, timeout=5).status_code == 200
    assert state.request_count("c2m_credit") == 4


def test_drop_after_apply_is_a_lost_reply(url: str, state: SandboxState) -> None:
    state.inject_fault("c2m_purchase", apply=True, drop=True)
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        purchase(url)
    assert len(state.purchases) == 1
    token = get_token(url)
    state.inject_fault("pb_fund", apply=True, drop=True)
    with httpx.Client() as client, pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.post(fund_url(url), headers=pb_headers(token, txn="lost"), json={"amount": 30, "currencyCode": "USD"})
    assert len(state.refills) == 1
    assert fund(url, token, 30, txn="lost").status_code == 200
    assert len(state.refills) == 1 and state.pb_balance() == Decimal("42.50")


def test_delay_only_fault_is_a_slow_normal_call(url: str, state: SandboxState) -> None:
    state.inject_fault("c2m_purchase", delay=0.2)
    started = time.perf_counter()
    r = purchase(url)
    assert r.status_code == 200 and time.perf_counter() - started >= 0.19
    assert len(state.purchases) == 1


def test_fault_validation(state: SandboxState) -> None:
    with pytest.raises(InvalidSettingError):
        state.inject_fault("nope", status=500)  # type: ignore[arg-type]
    with pytest.raises(InvalidSettingError):
        Fault(status=99)
    with pytest.raises(InvalidSettingError):
        Fault(delay=-1)
    assert Fault(delay=Decimal("0.25")).delay == 0.25  # type: ignore[arg-type]
    with pytest.raises(InvalidSettingError):
        state.inject_fault("c2m_credit", status=500, times=0)


# --------------------------------------------------------------------------------------------
# Controls over HTTP, counters, reset, seeds
# --------------------------------------------------------------------------------------------
def test_control_routes(url: str, state: SandboxState) -> None:
    snap = requests.get(f"{url}/_sandbox/state", timeout=5).json()
    assert snap["c2m"]["accounts"]["demo-user"]["balance"] == "5.00"
    assert snap["pb"]["merchants"]["900001"]["line_of_credit"]["available_credit"] == "500.00"
    assert snap["pb"]["merchants"]["900002"]["line_of_credit"] is None
    assert snap["settings"] == {
        "token_ttl": 35999,
        "c2m_purchase_reply": "full",
        "pb_duplicate_transaction": "replay",
        "settle_seconds": 0,
    }

    r = requests.post(f"{url}/_sandbox/c2m/accounts/demo-user", json={"balance": 7.25, "allow_negative": True})
    assert r.status_code == 200 and r.json()["balance"] == "7.25" and r.json()["allow_negative"] is True
    assert state.c2m_balance() == Decimal("7.25")
    r = requests.post(
        f"{url}/_sandbox/pb/merchants/900001",
        json={
            "available_balance": "1.10",
            "balance_owed": "20",
            "available_credit": 480,
            "minimum_due_date": "2027-01-31",
        },
    )
    loc = r.json()["line_of_credit"]
    assert r.json()["available_balance"] == "1.10" and loc["balance_owed"] == "20.00"
    assert loc["available_credit"] == "480.00" and loc["minimum_due_date"] == "2027-01-31"

    for path, body, status in [
        ("/_sandbox/c2m/accounts/nobody", {"balance": "1"}, 404),
        ("/_sandbox/c2m/accounts/demo-user", {"balance": "1.005"}, 400),
        ("/_sandbox/c2m/accounts/demo-user", {"colour": "red"}, 400),
        ("/_sandbox/c2m/accounts/demo-user", {"environment": "moon"}, 400),
        ("/_sandbox/pb/merchants/900002", {"available_credit": "1"}, 400),
        ("/_sandbox/pb/merchants/123", {"available_balance": "1"}, 404),
        ("/_sandbox/faults", {"endpoint": "nope"}, 400),
        ("/_sandbox/settings", {"token_ttl": -1}, 400),
        ("/_sandbox/settings", {"pb_duplicate_transaction": "maybe"}, 400),
    ]:
        r = requests.post(url + path, json=body, timeout=5)
        assert r.status_code == status, (path, body, r.text)
        assert "error" in r.json()

    r = requests.post(
        f"{url}/_sandbox/faults",
        json={"endpoint": "pb_balance", "status": 503, "delay": 0.01, "times": 2},
        timeout=5,
    )
    assert r.json()["pending"] == 2 and r.json()["fault"]["status"] == 503
    assert len(requests.get(f"{url}/_sandbox/faults", timeout=5).json()["pb_balance"]) == 2
    requests.delete(f"{url}/_sandbox/faults", params={"endpoint": "pb_balance"}, timeout=5)
    assert state.pending_faults()["pb_balance"] == []
    requests.post(f"{url}/_sandbox/faults", json={"endpoint": "c2m_credit", "drop": True}, timeout=5)
    requests.delete(f"{url}/_sandbox/faults", timeout=5)
    assert all(not q for q in state.pending_faults().values())

    r = requests.post(f"{url}/_sandbox/reset", timeout=5)
    assert r.json()["c2m"]["accounts"]["demo-user"]["balance"] == "5.00"
    assert state.pb_balance() == Decimal("12.50")


def test_counters_and_their_reset(url: str, state: SandboxState) -> None:
    requests.get(credit_url(url), timeout=5)  # 401 still counts
    requests.get(credit_url(url), auth=C2M_AUTH, timeout=5)
    purchase(url)
    token = get_token(url)
    requests.get(balance_url(url), headers=pb_headers(token), timeout=5)
    fund(url, token, 10)
    counters = requests.get(f"{url}/_sandbox/counters", timeout=5).json()
    assert counters["requests"] == {
        "c2m_credit": 2,
        "c2m_purchase": 1,
        "pb_token": 1,
        "pb_balance": 1,
        "pb_fund": 1,
        "pb_autorefill_get": 0,
        "pb_autorefill_set": 0,
        "pb_transactions": 0,
    }
    assert counters["tokens_issued"] == 1
    assert [p["amount"] for p in counters["purchases"]] == ["10.00"]
    assert [(r["prn"], r["amount"], r["transaction_id"]) for r in counters["refills"]] == [("900001", "10.00", "txn-1")]
    r = requests.post(f"{url}/_sandbox/counters/reset", timeout=5)
    assert r.json()["requests"]["c2m_credit"] == 0 and r.json()["purchases"] == []
    # Balances, tokens and seen transaction ids survive a counter reset.
    assert state.c2m_balance() == Decimal("15.00")
    assert requests.get(balance_url(url), headers=pb_headers(token), timeout=5).status_code == 200
    assert fund(url, token, 10).status_code == 200 and state.refills == []


def test_seed_mapping_file_and_unknowns(tmp_path: Path) -> None:
    seed = Seed.from_mapping(
        {
            "include_defaults": True,
            "token_ttl": 60,
            "c2m_accounts": [
                {
                    "username": "prod-user",
                    "password": "pw",
                    "balance": Decimal("20.5"),
                    "environment": "production",
                },
                {"username": "demo-user", "password": "new", "balance": "1"},
            ],
            "pb_merchants": [{"prn": "900003", "account_number": "****0003", "available_balance": "3"}],
        }
    )
    st = SandboxState(seed)
    assert st.c2m_balance("prod-user") == Decimal("20.50")
    assert st.c2m_environment("prod-user") == "production"
    assert st.c2m_check_credentials("demo-user", "new")
    assert st.pb_balance("900003") == Decimal("3.00") and st.pb_balance(DEFAULT_PB_PRN) == Decimal("12.50")
    assert st.token_ttl == 60
    st.set_c2m_balance("prod-user", "0")
    st.reset()
    assert st.c2m_balance("prod-user") == Decimal("20.50")
    only = Seed.from_mapping({"c2m_accounts": [{"username": "a", "password": "b"}]})
    assert SandboxState(only).snapshot()["pb"]["merchants"] == {}
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(Seed.from_mapping({"include_defaults": True}).to_mapping()))
    assert SandboxState.from_seed_file(path).snapshot() == SandboxState().snapshot()
    with pytest.raises(InvalidSettingError):
        Seed.from_mapping({"accounts": []})
    with pytest.raises(InvalidSettingError):
        Seed.from_mapping({"c2m_accounts": [{"username": "a", "password": "b", "balance": "1.001"}]})
    with pytest.raises(UnknownEntityError):
        SandboxState().c2m_balance("nobody")
    st.add_c2m_account(C2MAccountSeed("extra", "pw", Decimal("2.00")))
    assert st.c2m_balance("extra") == Decimal("2.00")


def test_cli_rejects_a_bad_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"c2m_accounts": 3}')
    assert cli_main(["--seed", str(bad), "--port", "0"]) == 2
    assert "c2m_accounts" in capsys.readouterr().err


def test_console_script(tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"include_defaults": True, "c2m_accounts": [{"username": "u", "password": "p"}]}))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_postage.sandbox",
            "--port",
            "0",
            "--seed",
            str(seed),
            "--token-ttl",
            "77",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    watchdog = threading.Timer(20, proc.kill)  # never hang the suite on a silent child
    watchdog.start()
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("postage-sandbox listening on http://127.0.0.1:"), line
        base = line.removeprefix("postage-sandbox listening on ")
        assert int(base.rsplit(":", 1)[1]) > 0
        r = requests.get(credit_url(base), auth=C2M_AUTH, timeout=5)
        assert r.status_code == 200 and xml_fields(r.text)["balance"] == "5.0"
        assert requests.get(credit_url(base), auth=("u", "p"), timeout=5).status_code == 200
        r = requests.post(f"{base}/oauth/token", auth=PB_AUTH, data={"grant_type": "client_credentials"}, timeout=5)
        assert r.json()["expiresIn"] == "77"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        stderr = proc.stderr.read()
        assert "Traceback" not in stderr and "ERROR" not in stderr, stderr
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_fault_after_lets_earlier_calls_through(server: SandboxServer, state: SandboxState) -> None:
    state.inject_fault("c2m_credit", status=503, after=2)
    auth = (DEFAULT_C2M_USERNAME, DEFAULT_C2M_PASSWORD)
    codes = [requests.get(f"{server.url}/molpro/credit", auth=auth, timeout=5).status_code for _ in range(4)]
    assert codes == [200, 200, 503, 200]


def test_settle_seconds_delays_purchased_credit(server: SandboxServer, state: SandboxState) -> None:
    state.settle_seconds = 1
    before = state.c2m_balance()
    state.c2m_apply_purchase(DEFAULT_C2M_USERNAME, Decimal("10.00"))
    assert state.c2m_balance() == before
    time.sleep(1.1)
    assert state.c2m_balance() == before + Decimal("10.00")
    reply = requests.post(f"{server.url}/_sandbox/settings", json={"settle_seconds": 0}, timeout=5)
    assert reply.json()["settle_seconds"] == 0
