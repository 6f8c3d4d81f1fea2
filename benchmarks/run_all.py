"""Run every comparison, ours against the apache-airflow-providers-http equivalent, and write
benchmarks/results.md (and results.json). Started by benchmarks/run, in the benchmark virtualenv.

Each measurement runs in its own fresh process; the sandbox runs in another process. Ratios are
ours / theirs (below 1: ours is cheaper).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from _common import HERE, ROOT, Sandbox, bench_env, pb_token, run_script, write_json

TRIGGER_SIZES = (100, 1000, 5000)
POKE = 5.0  # seconds between polls of one trigger, at every N
ROUNDS = 2  # steady-state poke intervals measured
SHARED_ACCOUNTS = 10
DISTINCT_SIZES = (100, 1000)  # one account (connection) per trigger, ours only
SPREAD_SIZES = (10, 100, 1000)  # N waiters on one account, starts spread over one interval, ours only
SPREAD_ROUNDS = 4  # intervals measured for the spread runs
GC_FREEZE_SIZE = 5000  # ours again with gc.freeze() after start-up, and once the triggers are created
TOKEN_TTL = 4  # seconds: the simulated day's token lifetime


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> dict:
    mem_kb = int(
        next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")).split()[1]
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "airflow_provider_postage"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    versions = {}
    for dist in (
        "apache-airflow",
        "airflow-provider-postage",
        "apache-airflow-providers-http",
        "apache-airflow-providers-common-compat",
        "httpx",
        "httpcore",
        "aiohttp",
        "requests",
        "uvicorn",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "-"
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "load_average_start": os.getloadavg(),
        "commit": commit + (" (with uncommitted changes in airflow_provider_postage/)" if dirty else ""),
        "versions": versions,
    }


def trigger_run(sandbox: Sandbox, env: dict, token: str, impl: str, n: int, **extra: object) -> dict:
    args = [
        "benchmarks/bench_triggers.py",
        "--impl", impl,
        "--n", str(n),
        "--poke", str(extra.get("poke", POKE)),
        "--rounds", str(extra.get("rounds", ROUNDS)),
        "--accounts", str(extra.get("accounts", SHARED_ACCOUNTS)),
        "--create-timeout", str(extra.get("create_timeout", 45)),
        "--url", sandbox.url,
        "--port", str(sandbox.port),
        "--sandbox-pid", str(sandbox.proc.pid),
        "--token", token,
    ]  # fmt: skip
    if extra.get("spread"):
        args.append("--spread")
    if extra.get("gc_freeze"):
        args += ["--gc-freeze", str(extra["gc_freeze"])]
    started = time.perf_counter()
    result = run_script(args, env=env, timeout=240)
    accounts = extra.get("accounts", SHARED_ACCOUNTS)
    how = "".join(f" {k}={extra[k]}" for k in ("spread", "gc_freeze") if extra.get(k))
    log(f"  triggers {impl} N={n} accounts={accounts}{how}: {time.perf_counter() - started:.0f} s")
    return result  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", choices=("tokens", "triggers", "parse", "hook", "clients"))
    parser.add_argument("--out", default=str(HERE / "results.md"))
    parser.add_argument("--setup-seconds", type=float, default=None, help="set by benchmarks/run")
    args = parser.parse_args()
    only = set(args.only or ("parse", "hook", "tokens", "triggers", "clients"))

    started = time.perf_counter()
    results: dict = {"machine": machine()}
    home = Path(tempfile.mkdtemp(prefix="postage-bench-home-"))
    env = bench_env(home, Path(sys.prefix) / "pycache")
    os.environ.update(env)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

    if "parse" in only:
        log("parse cost (fresh interpreters) ...")
        results["parse"] = run_script(["benchmarks/bench_parse.py", "--dag-runs", "5", "--module-runs", "3"], env=env)
    if "hook" in only:
        log("hook overhead ...")
        results["hook"] = run_script(["benchmarks/bench_hook.py", "--reads", "1000"], env=env)
    if "tokens" in only:
        log("token economy: synchronous reads over a simulated day ...")
        results["tokens"] = run_script(
            ["benchmarks/bench_tokens.py", "--reads", "1000", "--ttl", str(TOKEN_TTL)], env=env
        )
        log("token economy: 1,000 triggers over a simulated day ...")
        with Sandbox(merchants=SHARED_ACCOUNTS, token_ttl=TOKEN_TTL) as sandbox:
            results["tokens"]["triggers"] = trigger_run(
                sandbox, env, "", "ours", 1000, poke=round(TOKEN_TTL * 0.8, 1), rounds=2
            )
            results["tokens"]["triggers"]["token_ttl_s"] = TOKEN_TTL
    if "triggers" in only:
        log("triggerer load ...")
        runs: list[dict] = []
        with Sandbox(merchants=max(DISTINCT_SIZES)) as sandbox:
            token = pb_token(sandbox.url)
            for n in TRIGGER_SIZES:
                for impl in ("ours", "http"):
                    runs.append(trigger_run(sandbox, env, token, impl, n))
            for n in DISTINCT_SIZES:
                runs.append(trigger_run(sandbox, env, token, "ours", n, accounts=0, create_timeout=10))
            for when in ("created", "startup"):
                runs.append(trigger_run(sandbox, env, token, "ours", GC_FREEZE_SIZE, gc_freeze=when))
            for n in SPREAD_SIZES:
                runs.append(trigger_run(sandbox, env, token, "ours", n, accounts=1, spread=True, rounds=SPREAD_ROUNDS))
        results["triggers"] = runs
    if "clients" in only:
        log("async HTTP clients: CPU per request at 1, 100 and 1,000 in flight ...")
        results["clients"] = run_script(["benchmarks/bench_clients.py"], env=env, timeout=900)

    results["total_s"] = time.perf_counter() - started
    results["setup_s"] = args.setup_seconds
    results["machine"]["load_average_end"] = os.getloadavg()
    write_json(Path(args.out).with_suffix(".json"), results)
    from report import render

    Path(args.out).write_text(render(results))
    log(f"wrote {args.out} in {results['total_s']:.0f} s")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    os.chdir(ROOT)
    main()
