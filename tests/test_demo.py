"""The demo a new user runs first: it succeeds and its output and task logs hold no error line, no
traceback and no masking warning (not even Airflow's "too short to mask" notice for the CVV)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import AIRFLOW_V3

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not AIRFLOW_V3, reason="the demo runs the primary target, Airflow 3")
def test_the_demo_pipeline_runs_clean(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["POSTAGE_DEMO_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    logs = "".join(path.read_text(errors="replace") for path in tmp_path.rglob("*.log"))
    text = done.stdout + done.stderr + logs
    assert done.returncode == 0, text[-4000:]
    assert "DAG run: success" in done.stdout and "The wait for funds deferred to the trigger" in done.stdout
    problems = [line for line in text.splitlines() if re.search(r"\[error|\bERROR\b|Traceback|masking", line)]
    assert problems == [], problems[:20]
