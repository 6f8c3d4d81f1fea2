"""Parse cost: how long a fresh interpreter takes to load a DAG file (and the bare operator modules),
ours against the same DAG written with apache-airflow-providers-http and against a baseline DAG with
only EmptyOperator; plus ``python -X importtime``: what our modules pull in on top of ``airflow.sdk``.

Every sample is a new interpreter running ``_parse_probe.py``, which times, in-process,
``import airflow.sdk`` and then loading the DAG file (runpy, as the DAG processor executes it) or
importing the modules. Variants are interleaved round-robin so that drift on a shared machine hits
all of them alike. Bytecode is cached (PYTHONPYCACHEPREFIX) and one untimed warm-up per variant
fills the cache, as in a deployed Airflow.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections import defaultdict

from _common import HERE, emit, median, parse_result

DAGS = HERE / "dags"
PROBE = HERE / "_parse_probe.py"

OURS_MODULES = [
    "airflow_provider_postage.hooks.postage",
    "airflow_provider_postage.operators.postage",
    "airflow_provider_postage.sensors.postage",
    "airflow_provider_postage.triggers.postage",
]
HTTP_MODULES = [
    "airflow.providers.http.hooks.http",
    "airflow.providers.http.operators.http",
    "airflow.providers.http.sensors.http",
    "airflow.providers.http.triggers.http",
]

VARIANTS = {
    "baseline_dag": ["dag", str(DAGS / "baseline_topup.py")],
    "ours_dag": ["dag", str(DAGS / "ours_topup.py")],
    "http_dag": ["dag", str(DAGS / "http_topup.py")],
    "ours_modules": ["modules", *OURS_MODULES],
    "http_modules": ["modules", *HTTP_MODULES],
}


def probe(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"probe {args} failed:\n{done.stderr[-3000:]}")
    return parse_result(done.stdout)  # type: ignore[return-value]


def package_of(module: str) -> str:
    parts = module.split(".")
    if module.startswith("airflow.providers."):
        return ".".join(parts[:3])
    if parts[0] == "airflow":
        return ".".join(parts[:2])
    return parts[0]


def importtime(modules: list[str]) -> dict:
    """``-X importtime`` of ``modules`` imported after ``airflow.sdk``: only what they add is kept."""
    code = "import airflow.sdk, sys; sys.stderr.write('@@MARK@@\\n'); " + "; ".join(f"import {m}" for m in modules)
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    after = done.stderr.split("@@MARK@@", 1)[1]
    rows = []
    for line in after.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append({"self_us": int(m[1]), "cumulative_us": int(m[2]), "depth": len(m[3]) // 2, "module": m[4]})
    total_us = sum(r["cumulative_us"] for r in rows if r["depth"] == 0)
    by_package: dict[str, int] = defaultdict(int)
    for r in rows:
        by_package[package_of(r["module"])] += r["self_us"]
    top = sorted(rows, key=lambda r: r["self_us"], reverse=True)
    return {
        "total_s": total_us / 1e6,
        "modules": len(rows),
        "top_self": top[:15],
        "by_package": sorted(
            ({"package": k, "self_s": v / 1e6} for k, v in by_package.items()), key=lambda r: -r["self_s"]
        )[:12],
    }


def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dag-runs", type=int, default=7)
    parser.add_argument("--module-runs", type=int, default=5)
    args = parser.parse_args()

    for variant in VARIANTS.values():  # warm-up: fills the bytecode cache, untimed
        probe(variant)

    samples: dict[str, list[dict]] = defaultdict(list)
    for i in range(max(args.dag_runs, args.module_runs)):
        for name, variant in VARIANTS.items():
            runs = args.dag_runs if name.endswith("_dag") else args.module_runs
            if i < runs:
                samples[name].append(probe(variant))

    result: dict = {"runs": {k: len(v) for k, v in samples.items()}, "variants": {}}
    for name, rows in samples.items():
        result["variants"][name] = {
            "total_s": median(r["total_s"] for r in rows),
            "sdk_s": median(r["sdk_s"] for r in rows),
            "after_sdk_s": median(r["after_sdk_s"] for r in rows),
            "process_wall_s": median(r["process_wall_s"] for r in rows),
            "samples_total_s": [r["total_s"] for r in rows],
            "samples_after_sdk_s": [r["after_sdk_s"] for r in rows],
        }
    result["importtime"] = {"ours": importtime(OURS_MODULES), "http": importtime(HTTP_MODULES)}
    return result


if __name__ == "__main__":
    os.chdir(HERE.parent)
    emit(main())
