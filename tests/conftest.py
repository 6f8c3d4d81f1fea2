"""Test set-up shared by every test: an isolated AIRFLOW_HOME before anything imports Airflow, the
sandbox server, and connections pointing at it."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="postage-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).parent / "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow.db'}"
os.environ.setdefault("AIRFLOW__CORE__FERNET_KEY", "hDlnqNsq5CEd46GWd8OK2HbNhIcSXRtNTSO3jGDcclQ=")

import pytest  # noqa: E402

from airflow_provider_postage._tokens import TOKENS  # noqa: E402
from airflow_provider_postage.sandbox import SandboxServer, SandboxState  # noqa: E402
from airflow_provider_postage.sandbox import state as sandbox_defaults  # noqa: E402

C2M_CONN_ID = "c2m_sandbox"
PB_CONN_ID = "pb_sandbox"
PB_NO_CREDIT_CONN_ID = "pb_sandbox_postage_only"

#: A valid card for the sandbox and its staging rules (the documented test card).
BILLING = {
    "billing_name": "Awesome User",
    "billing_address1": "221B Baker St",
    "billing_city": "Springfield",
    "billing_state": "MO",
    "billing_zip": "34567",
    "card_number": "4111111111111111",
    "card_exp_month": "12",
    "card_exp_year": "2030",
    "card_cvv": "123",
    "card_type": "VI",
}


def conn_uri_env(conn_id: str, **fields: object) -> tuple[str, str]:
    return f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxServer]:
    server = SandboxServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sandbox_state(sandbox: SandboxServer) -> SandboxState:
    """A sandbox back at its seed, with zeroed counters, and an empty token cache, for every test."""
    sandbox.state.reset()
    TOKENS.clear()
    return sandbox.state


def c2m_connection(url: str, **extra: object) -> dict[str, object]:
    return {
        "conn_type": "click2mail",
        "login": sandbox_defaults.DEFAULT_C2M_USERNAME,
        "password": sandbox_defaults.DEFAULT_C2M_PASSWORD,
        "host": url,
        "extra": {"environment": "staging", **BILLING, **extra},
    }


def pb_connection(url: str, prn: str = "900001", **extra: object) -> dict[str, object]:
    return {
        "conn_type": "pitney_bowes",
        "login": sandbox_defaults.DEFAULT_PB_API_KEY,
        "password": sandbox_defaults.DEFAULT_PB_API_SECRET,
        "host": url,
        "extra": {"developer_id": sandbox_defaults.DEFAULT_PB_DEVELOPER_ID, "postal_reporting_number": prn, **extra},
    }


@pytest.fixture
def connections(sandbox: SandboxServer, sandbox_state: SandboxState, monkeypatch: pytest.MonkeyPatch) -> SandboxState:
    """The three sandbox connections as AIRFLOW_CONN_* variables."""
    for conn_id, fields in (
        (C2M_CONN_ID, c2m_connection(sandbox.url)),
        (PB_CONN_ID, pb_connection(sandbox.url)),
        (PB_NO_CREDIT_CONN_ID, pb_connection(sandbox.url, prn="900002")),
    ):
        monkeypatch.setenv(*conn_uri_env(conn_id, **fields))
    return sandbox_state
