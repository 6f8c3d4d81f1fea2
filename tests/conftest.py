"""Test set-up shared by every test: an isolated AIRFLOW_HOME before anything imports Airflow, the
sandbox server, and connections pointing at it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_HOME = Path(tempfile.mkdtemp(prefix="postage-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).parent / "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow.db'}"
os.environ.setdefault("AIRFLOW__CORE__FERNET_KEY", "hDlnqNsq5CEd46GWd8OK2HbNhIcSXRtNTSO3jGDcclQ=")

import airflow  # noqa: E402
import pytest  # noqa: E402

from airflow_provider_postage._tokens import TOKENS  # noqa: E402
from airflow_provider_postage.sandbox import SandboxServer, SandboxState  # noqa: E402
from airflow_provider_postage.sandbox import state as sandbox_defaults  # noqa: E402
from airflow_provider_postage.sandbox.state import DEMO_BILLING  # noqa: E402

C2M_CONN_ID = "c2m_sandbox"
PB_CONN_ID = "pb_sandbox"
PB_NO_CREDIT_CONN_ID = "pb_sandbox_postage_only"

#: A valid card for the sandbox and its staging rules (the documented test card), under today's extra names.
_RENAMED = {"card_number": "card_number_secret", "card_cvv": "card_cvv_secret"}
BILLING = {_RENAMED.get(name, name): value for name, value in DEMO_BILLING.items()}


def conn_uri_env(conn_id: str, **fields: object) -> tuple[str, str]:
    return f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields)


#: The sandbox's CA (PEM), trusted by the connections below through their ``ca_bundle`` extra.
SANDBOX_CA: list[str] = []


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxServer]:
    """The sandbox as the real APIs are reached: HTTPS, replies compressed and chunked."""
    server = SandboxServer(tls=True)
    server.start()
    assert server.ca_path is not None
    SANDBOX_CA[:] = [server.ca_path]
    yield server
    server.stop()


def _trust(url: str) -> dict[str, str]:
    return {"ca_bundle": SANDBOX_CA[0]} if url.startswith("https://") and SANDBOX_CA else {}


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
        "extra": {"environment": "staging", **BILLING, **_trust(url), **extra},
    }


def pb_connection(url: str, prn: str = "900001", **extra: object) -> dict[str, object]:
    return {
        "conn_type": "pitney_bowes",
        "login": sandbox_defaults.DEFAULT_PB_API_KEY,
        "password": sandbox_defaults.DEFAULT_PB_API_SECRET,
        "host": url,
        "extra": {
            "developer_id": sandbox_defaults.DEFAULT_PB_DEVELOPER_ID,
            "postal_reporting_number": prn,
            **_trust(url),
            **extra,
        },
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


# --- Airflow: metadata database, DAGs, task contexts -----------------------------------------------

AIRFLOW_V3 = int(airflow.__version__.split(".")[0]) >= 3
DAGS_FOLDER = Path(__file__).parent / "dags"


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """The sqlite metadata database in AIRFLOW_HOME, migrated once per session with the Airflow CLI of the
    running virtualenv. DAG runs need it, and so does the Variable that keeps the purchase journal on 2.11."""
    cli = Path(sys.executable).with_name("airflow")
    done = subprocess.run(
        [str(cli), "db", "migrate"], env=dict(os.environ), capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode:
        pytest.fail(f"airflow db migrate failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


@pytest.fixture(scope="session")
def dagbag(airflow_db: None) -> Any:
    """Every DAG in tests/dags, loaded once; an import error fails the tests that use it."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2.11
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    return bag


@dataclass
class FakeTaskInstance:
    """What the operators and sensors read from ``context["ti"]`` when called directly."""

    dag_id: str = "postage_direct"
    run_id: str = "manual__direct"
    task_id: str = "buy"
    map_index: int = -1
    try_number: int = 1
    max_tries: int = 0

    def get_first_reschedule_date(self, context: Any) -> None:  # Airflow 3 reschedule-mode sensors
        return None


@dataclass
class FakeTaskStateStore:
    """Airflow 3.3's ``context["task_state_store"]``: per task instance, kept across tries."""

    values: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        self.calls.append(("get", key))
        return self.values.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        assert value is not None
        self.calls.append(("set", key))
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.calls.append(("delete", key))
        self.values.pop(key, None)


def task_context(ti: FakeTaskInstance, store: FakeTaskStateStore | None = None) -> Any:
    """A context for calling ``execute`` directly; without a store the journal is an Airflow Variable."""
    context: dict[str, Any] = {"ti": ti, "task_instance": ti, "run_id": ti.run_id, "params": {}}
    if store is not None:
        context["task_state_store"] = store
    return context


@pytest.fixture(autouse=True)
def ledger_store() -> Iterator[Any]:
    """A fresh funding ledger per test (process-local; DAG runs of ``dag.test()`` run in this process).
    Tests of the Variable-backed ledger itself put ``VariableStore`` back."""
    from airflow_provider_postage import _ledger

    store = _ledger.MemoryStore()
    previous = _ledger.STORE[0]
    _ledger.STORE[0] = store
    yield store
    _ledger.STORE[0] = previous


@pytest.fixture
def journal_store(request: pytest.FixtureRequest) -> FakeTaskStateStore | None:
    """Where a directly called PurchaseCreditOperator keeps its journal, as the running Airflow would: a
    task state store on Airflow 3 (a fake one here: the real one needs the task runner), an Airflow Variable
    (real, in the test database) on 2.11."""
    if AIRFLOW_V3:
        return FakeTaskStateStore()
    request.getfixturevalue("airflow_db")
    return None


@pytest.fixture
def task_log(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], str]]:
    """The text logged by tasks and Airflow during the test: structlog events on Airflow 3, standard
    logging records on 2.11."""
    import logging

    caplog.set_level(logging.INFO)
    if AIRFLOW_V3:
        import structlog.testing

        with structlog.testing.capture_logs() as events:
            yield lambda: "\n".join(str(event.get("event")) for event in events) + "\n" + caplog.text
    else:
        yield lambda: caplog.text


@pytest.fixture
def later(connections: SandboxState) -> Iterator[Callable[[str, int, Callable[[], None]], None]]:
    """``later(endpoint, n, change)``: apply ``change`` to the sandbox from another thread once ``endpoint``
    has seen ``n`` requests and their replies have had a moment to leave -- e.g. raise a balance after a
    sensor's first poke, whenever that comes."""
    import threading
    import time

    threads: list[threading.Thread] = []

    def schedule(endpoint: str, n: int, change: Callable[[], None]) -> None:
        def run() -> None:
            deadline = time.monotonic() + 120
            while connections.request_count(endpoint) < n and time.monotonic() < deadline:  # type: ignore[arg-type]
                time.sleep(0.005)
            time.sleep(0.05)
            change()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)

    yield schedule
    for thread in threads:
        thread.join(timeout=125)
