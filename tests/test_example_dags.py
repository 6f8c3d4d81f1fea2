"""Every example DAG imports cleanly on the running Airflow line (against the migrated test database, as
a DAG processor would parse it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
