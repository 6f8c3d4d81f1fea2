"""The fault matrix (docs/faults.md): every endpoint the provider calls, every way it can fail, and
what the provider does about it — a typed error or a correct retry, a bounded number of requests, and
at most one charge whatever Airflow retries follow.

Purchases are run as Airflow runs a task with retries: try 1, then a new operator instance with the
next try number and the same task instance identity (and the same task state store), up to 3 tries."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
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
from airflow_provider_postage.protocol.errors import (
    PostageAPIError,
    PostageAuthError,
    PostageError,
    PostageResponseError,
    PostageTransportError,
)
from airflow_provider_postage.sandbox import SandboxState

ATTEMPTS = 3
HOOK = {"backoff_initial": 0.01, "backoff_max": 0.02, "max_attempts": ATTEMPTS, "timeout": (0.5, 0.5)}
HTML = "<html><body><h1>502 Bad Gateway</h1></body></html>"


@dataclass(frozen=True)
class Fault:
    name: str
    kwargs: dict[str, Any]


# --- reads: balance and token --------------------------------------------------------------------

READ_ENDPOINTS = [(C2M_CONN_ID, "c2m_credit"), (PB_CONN_ID, "pb_balance"), (PB_CONN_ID, "pb_token")]

#: fault, error when it persists (None: the read succeeds anyway), requests made when it persists
#: (per endpoint), and whether one occurrence is retried to success.
READ_FAULTS: list[tuple[Fault, type[Exception] | None, int | None, bool]] = [
    (Fault("timeout", {"delay": 1.0}), PostageTransportError, ATTEMPTS, True),
    (Fault("reply lost", {"drop": True}), PostageTransportError, ATTEMPTS, True),
    (Fault("400", {"status": 400}), PostageAPIError, 1, False),
    (Fault("403", {"status": 403}), PostageAuthError, 1, False),
    (Fault("404", {"status": 404}), PostageAPIError, 1, False),
    *[(Fault(str(code), {"status": code}), PostageAPIError, ATTEMPTS, True) for code in (500, 502, 503, 504, 524)],
    (Fault("HTML page", {"status": 200, "body": HTML, "content_type": "text/html"}), PostageResponseError, 1, False),
    (Fault("empty body", {"status": 200, "body": ""}), PostageResponseError, 1, False),
    (Fault("malformed", {"status": 200, "body": "<credit><bal{"}), PostageResponseError, 1, False),
    # what TLS terminators, gateways and CDNs do to a reply on its way back
    *[
        (Fault(wire, {"wire": wire}), PostageTransportError, ATTEMPTS, True)
        for wire in ("tls_alert", "corrupt_record", "reset", "cut_body", "oversize")
    ],
    (Fault("trickle", {"wire": "trickle", "trickle_interval": 0.3}), PostageTransportError, ATTEMPTS, True),
]


def balance_format_fault(endpoint: str) -> Fault:
    body = {
        "c2m_credit": "<credit><balance>12,50 USD</balance></credit>",
        "pb_balance": '{"accounts":[{"accountType":"Postage Account","availableBalance":"12,50"}]}',
        "pb_token": '{"access_token": 12}',
    }[endpoint]
    return Fault("unexpected format", {"status": 200, "body": body})


@pytest.mark.parametrize(("conn_id", "endpoint"), READ_ENDPOINTS)
@pytest.mark.parametrize(("fault", "error", "requests", "recovers"), READ_FAULTS, ids=[f[0].name for f in READ_FAULTS])
def test_read_faults(
    connections: SandboxState,
    conn_id: str,
    endpoint: str,
    fault: Fault,
    error: type[Exception],
    requests: int,
    recovers: bool,
) -> None:
    if endpoint == "pb_token" and fault.name == "403":
        error = PostageAuthError
    connections.inject_fault(endpoint, times=ATTEMPTS * 2, **fault.kwargs)
    with pytest.raises(error):
        get_postage_hook(conn_id, **HOOK).get_balances()
    assert connections.request_count(endpoint) == requests
    connections.clear_faults()
    connections.reset_counters()
    connections.inject_fault(endpoint, times=1, **fault.kwargs)
    if recovers:
        assert get_postage_hook(conn_id, **HOOK).get_balances()
        assert connections.request_count(endpoint) == 2
    else:
        with pytest.raises(error):
            get_postage_hook(conn_id, **HOOK).get_balances()
        assert connections.request_count(endpoint) == 1


@pytest.mark.parametrize(("conn_id", "endpoint"), READ_ENDPOINTS)
def test_balance_in_an_unexpected_format(connections: SandboxState, conn_id: str, endpoint: str) -> None:
    connections.inject_fault(endpoint, **balance_format_fault(endpoint).kwargs)
    with pytest.raises(PostageResponseError):
        get_postage_hook(conn_id, **HOOK).get_balances()
    assert connections.request_count(endpoint) == 1


def test_401_persisting_after_token_refresh(connections: SandboxState) -> None:
    connections.inject_fault("pb_balance", status=401, times=10)
    with pytest.raises(PostageAuthError, match="HTTP 401"):
        get_postage_hook(PB_CONN_ID, **HOOK).get_balances()
    assert (connections.request_count("pb_token"), connections.request_count("pb_balance")) == (2, 2)


def test_click2mail_401_is_bad_credentials_not_retried(connections: SandboxState) -> None:
    connections.inject_fault("c2m_credit", status=401, times=10)
    with pytest.raises(PostageAuthError):
        get_postage_hook(C2M_CONN_ID, **HOOK).get_balances()
    assert connections.request_count("c2m_credit") == 1


def test_token_reply_without_expires_in(connections: SandboxState) -> None:
    """Accepted with a short fallback lifetime (300 s); when the API refuses it, one new token is fetched."""
    body = '{"access_token":"no-expiry-token","tokenType":"BearerToken"}'
    connections.inject_fault("pb_token", status=200, body=body, content_type="application/json")
    assert get_postage_hook(PB_CONN_ID, **HOOK).get_balances()
    assert (connections.request_count("pb_token"), connections.request_count("pb_balance")) == (2, 2)


def test_refill_401_persisting_after_token_refresh_charges_nothing(connections: SandboxState) -> None:
    connections.inject_fault("pb_fund", status=401, times=2)
    with pytest.raises(PostageAuthError, match="HTTP 401"):
        get_postage_hook(PB_CONN_ID, **HOOK).purchase_credit(20, transaction_id="txn-401-twice")
    assert connections.request_count("pb_fund") == 2 and connections.refills == []


# --- unreachable hosts -----------------------------------------------------------------------------


@pytest.fixture
def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed on return: nothing listens there


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port whose accept queue is full: connections are never accepted, so a connect times out
    before any byte of a request is sent."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = int(server.getsockname()[1])
    fillers = []
    for _ in range(8):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    server.close()


def _point_at(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv(*conn_uri_env("c2m_down", **c2m_connection(url)))
    monkeypatch.setenv(*conn_uri_env("pb_down", **pb_connection(url)))


@pytest.mark.parametrize("conn_id", ["c2m_down", "pb_down"])
@pytest.mark.parametrize("where", ["refused", "connect timeout"])
def test_unreachable_host_is_a_transport_error_never_a_charge(
    monkeypatch: pytest.MonkeyPatch,
    sandbox_state: SandboxState,
    refused_port: int,
    black_hole: int,
    conn_id: str,
    where: str,
) -> None:
    _point_at(monkeypatch, refused_port if where == "refused" else black_hole)
    hook = get_postage_hook(conn_id, **HOOK)
    with pytest.raises(PostageTransportError) as caught:
        hook.get_balances()
    assert caught.value.request_sent is False
    with pytest.raises(PostageTransportError) as caught:
        hook.purchase_credit("20", transaction_id="txn-down")
    assert caught.value.request_sent is False  # a purchase that never left may be retried: it was, and failed


# --- purchases under faults, with Airflow's next tries ---------------------------------------------

PURCHASE_ENDPOINT = {C2M_CONN_ID: "c2m_purchase", PB_CONN_ID: "pb_fund"}
#: every wire fault the sandbox applies after the handler ran (the trickle beats the 0.5 s read timeout
#: with a byte every 0.3 s; only the hook's total deadline ends it)
WIRE_FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("tls_alert", {}),
    ("corrupt_record", {}),
    ("reset", {}),
    ("cut_body", {}),
    ("oversize", {}),
    ("trickle", {"trickle_interval": 0.3}),
]


@dataclass(frozen=True)
class PurchaseCase:
    name: str
    fault: dict[str, Any]
    #: outcome of each try, in order, until one ends the task: a status, or an exception's class name
    c2m: tuple[str, ...]
    pb: tuple[str, ...]
    c2m_charges: int
    pb_charges: int


PURCHASE_CASES = [
    PurchaseCase("no fault", {}, ("purchased",), ("purchased",), 1, 1),
    # a refusal charged nothing: the next try buys afresh (the fault is gone by then)
    PurchaseCase("400", {"status": 400}, ("PostageAPIError", "purchased"), ("PostageAPIError", "purchased"), 1, 1),
    PurchaseCase("403", {"status": 403}, ("PostageAuthError", "purchased"), ("PostageAuthError", "purchased"), 1, 1),
    PurchaseCase("404", {"status": 404}, ("PostageAPIError", "purchased"), ("PostageAPIError", "purchased"), 1, 1),
    PurchaseCase(
        "refused on every try", {"status": 400, "times": 5}, ("PostageAPIError",) * 3, ("PostageAPIError",) * 3, 0, 0
    ),
    *[
        PurchaseCase(
            str(code),
            {"status": code},
            ("PurchaseOutcomeUnknownError", "AirflowFailException"),
            ("PurchaseOutcomeUnknownError", "purchased"),
            0,
            1,
        )
        for code in (500, 502, 503, 504, 524)
    ],
    PurchaseCase(
        "timeout after the charge",
        {"apply": True, "delay": 1.0},
        ("purchased",),
        ("PurchaseOutcomeUnknownError", "already_applied"),
        1,
        1,
    ),
    PurchaseCase(
        "reply lost after the charge",
        {"apply": True, "drop": True},
        ("purchased",),
        ("PurchaseOutcomeUnknownError", "already_applied"),
        1,
        1,
    ),
    PurchaseCase(
        "reply lost, no charge",
        {"drop": True},
        ("PurchaseOutcomeUnknownError", "AirflowFailException"),
        ("PurchaseOutcomeUnknownError", "purchased"),
        0,
        1,
    ),
    # real-wire faults after the API applied the purchase: the request was delivered, so the outcome is
    # unknown to the client; Click2Mail settles it by the balance, Pitney Bowes by resending the same id
    *[
        PurchaseCase(
            f"{wire} after the charge",
            {"apply": True, "wire": wire, **extra},
            ("purchased",),
            ("PurchaseOutcomeUnknownError", "already_applied"),
            1,
            1,
        )
        for wire, extra in WIRE_FAULTS
    ],
    # and before it was applied: nothing charged, nothing known
    *[
        PurchaseCase(
            f"{wire}, no charge",
            {"wire": wire},
            ("PurchaseOutcomeUnknownError", "AirflowFailException"),
            ("PurchaseOutcomeUnknownError", "purchased"),
            0,
            1,
        )
        for wire in ("tls_alert", "corrupt_record", "reset", "cut_body")
    ],
    PurchaseCase(
        "HTML 200",
        {"status": 200, "body": HTML, "content_type": "text/html"},
        ("PurchaseOutcomeUnknownError", "AirflowFailException"),
        ("purchased",),
        0,
        0,
    ),
    PurchaseCase(
        "empty 200",
        {"status": 200, "body": ""},
        ("PurchaseOutcomeUnknownError", "AirflowFailException"),
        ("purchased",),
        0,
        0,
    ),
]


def run_task(conn_id: str, store: Any, tries: int = 3, **mode: Any) -> list[str]:
    """Run the purchase task like Airflow with ``retries=tries - 1``: a new operator per try."""
    ti = FakeTaskInstance(run_id=f"manual__{uuid.uuid4().hex}")
    outcomes: list[str] = []
    for try_number in range(1, tries + 1):
        this_try = FakeTaskInstance(ti.dag_id, ti.run_id, ti.task_id, ti.map_index, try_number)
        operator = PurchaseCreditOperator(task_id="buy", postage_conn_id=conn_id, hook_params=HOOK, **mode)
        try:
            result = operator.execute(task_context(this_try, store))
        except AirflowFailException:
            outcomes.append("AirflowFailException")
            break
        except PostageError as error:
            outcomes.append(type(error).__name__)
            continue
        outcomes.append(result["status"])
        break
    return outcomes


def charges(state: SandboxState, conn_id: str) -> int:
    return len(state.purchases if conn_id == C2M_CONN_ID else state.refills)


@pytest.mark.parametrize("mode", [{"amount": "20"}, {"top_up_to": "30"}], ids=["amount", "top_up_to"])
@pytest.mark.parametrize("conn_id", [C2M_CONN_ID, PB_CONN_ID])
@pytest.mark.parametrize("case", PURCHASE_CASES, ids=[case.name for case in PURCHASE_CASES])
def test_purchase_faults_with_airflow_retries(
    connections: SandboxState, journal_store: Any, case: PurchaseCase, conn_id: str, mode: dict[str, Any]
) -> None:
    if case.fault:
        connections.inject_fault(PURCHASE_ENDPOINT[conn_id], **case.fault)
    outcomes = run_task(conn_id, journal_store, **mode)
    expected = case.c2m if conn_id == C2M_CONN_ID else case.pb
    assert tuple(outcomes) == expected
    assert charges(connections, conn_id) == (case.c2m_charges if conn_id == C2M_CONN_ID else case.pb_charges)
    # bounded: a purchase request per try at most (resent only by a later try, never by the hook)
    assert connections.request_count(PURCHASE_ENDPOINT[conn_id]) <= len(outcomes)
