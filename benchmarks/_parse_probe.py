"""Runs in a fresh interpreter for bench_parse.py: time ``import airflow.sdk``, then loading one DAG file
(``dag PATH``) or importing modules (``modules NAME...``), and print the times as one RESULT line."""

import time

T0 = time.perf_counter()

import json  # noqa: E402
import runpy  # noqa: E402
import sys  # noqa: E402

import airflow.sdk  # noqa: E402, F401

T1 = time.perf_counter()
kind, *targets = sys.argv[1:]
if kind == "dag":
    namespace = runpy.run_path(targets[0], run_name="bench_dag_file")
    if "dag" not in namespace:
        raise SystemExit(f"{targets[0]} defines no dag")
else:
    import importlib

    for name in targets:
        importlib.import_module(name)
T2 = time.perf_counter()
# process_wall_s: from the interpreter's start (as the OS saw it) to here.
with open("/proc/self/stat") as stat:
    start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
with open("/proc/uptime") as up:
    uptime = float(up.read().split()[0])
import os  # noqa: E402

wall = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
print(
    "RESULT " + json.dumps({"total_s": T2 - T0, "sdk_s": T1 - T0, "after_sdk_s": T2 - T1, "process_wall_s": wall}),
    flush=True,
)
