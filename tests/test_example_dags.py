"""Every example DAG imports cleanly on the running Airflow line (against the migrated test database, as
a DAG processor would parse it)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "example_dags"


def test_example_dags_import_without_errors(airflow_db: None) -> None:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2.11
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    bag: Any = DagBag(dag_folder=str(EXAMPLES))
    assert bag.import_errors == {}
    expected = {path.stem for path in EXAMPLES.glob("postage_*.py")}
    assert expected <= set(bag.dag_ids)


def _receipts_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "postage_purchase_receipts", EXAMPLES / "postage_purchase_receipts.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _failure_context() -> dict[str, Any]:
    from types import SimpleNamespace

    from airflow.providers.common.compat.sdk import DAG

    return {"dag": DAG("buying"), "ti": SimpleNamespace(task_id="top_up"), "exception": "card refused"}


def test_receipt_mail_without_an_smtp_connection_says_how_to_turn_it_on(
    airflow_db: None, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_POSTAGE_SMTP", raising=False)
    receipts = _receipts_module()
    with caplog.at_level(logging.INFO):
        receipts.purchase_failed_mail(_failure_context())
    assert "No 'postage_smtp' connection: not mailed" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_receipt_mail_with_an_smtp_connection_is_sent(
    airflow_db: None, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real (if tiny) SMTP server on localhost receives the failure mail."""
    import smtpd_sink

    with smtpd_sink.running() as sink:
        monkeypatch.setenv(
            "AIRFLOW_CONN_POSTAGE_SMTP",
            json.dumps(
                {
                    "conn_type": "smtp",
                    "host": "127.0.0.1",
                    "port": sink.port,
                    "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "postage@example.com"},
                }
            ),
        )
        receipts = _receipts_module()
        with caplog.at_level(logging.INFO):
            receipts.purchase_failed_mail(_failure_context())
        assert "not mailed" not in caplog.text
        assert sink.wait_for_mail(10), caplog.text
        assert "Postage purchase failed: buying.top_up" in sink.messages[0]
