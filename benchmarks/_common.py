"""Shared by the benchmark scripts: the sandbox process, connections as AIRFLOW_CONN_* variables,
process CPU and memory readings, statistics. Imports nothing from Airflow, so importing it costs the
measured process nothing."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# The sandbox's default seed (airflow_provider_postage.sandbox.state); repeated here so that this module
# imports nothing from the package.
C2M_USER, C2M_PASSWORD = "demo-user", "demo-pass-C2M"
PB_KEY, PB_SECRET, PB_DEVELOPER = "demo-api-key", "demo-api-secret-PB", "44440000"
PB_PRN = "900001"
FIRST_EXTRA_PRN = 100000  # _sandbox.py: extra merchants are 100000, 100001, ...
MISSING_PRN = 800000  # no merchant has it: the balance endpoint answers 404 there

BILLING = {
    "billing_name": "Awesome User",
    "billing_address1": "221B Baker St",
    "billing_city": "Springfield",
    "billing_state": "MO",
    "billing_zip": "34567",
    "card_number_secret": "4111111111111111",
    "card_exp_month": "12",
    "card_exp_year": "2030",
    "card_cvv_secret": "123",
    "card_type": "VI",
}


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --------------------------------------------------------------------------------------- sandbox


class Sandbox:
    """The sandbox in a child process (its CPU is not charged to the measured client)."""

    def __init__(self, merchants: int = 0, token_ttl: int | None = None) -> None:
        cmd = [sys.executable, str(HERE / "_sandbox.py"), "--merchants", str(merchants)]
        if token_ttl is not None:
            cmd += ["--token-ttl", str(token_ttl)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        prefix = "postage-sandbox listening on "
        if not line.startswith(prefix):
            self.proc.kill()
            raise RuntimeError(f"sandbox did not start: {line!r}")
        self.url = line[len(prefix) :]
        self.port = int(self.url.rsplit(":", 1)[1])

    def _call(self, method: str, path: str) -> dict:
        request = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read() or b"{}")

    def counters(self) -> dict:
        return self._call("GET", "/_sandbox/counters")

    def reset_counters(self) -> None:
        self._call("POST", "/_sandbox/counters/reset")

    def expire_tokens(self) -> None:
        self._call("POST", "/_sandbox/tokens/expire")

    def cpu(self) -> float:
        """User + system CPU seconds the sandbox process has used so far."""
        return proc_cpu(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Load:
    """How busy the sandbox was over a window: its CPU seconds per wall second (1.0 = one core, the
    most a single uvicorn worker can use) and the requests it served per second."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.cpu0 = sandbox.cpu()
        self.wall0 = time.perf_counter()
        self.req0 = sum(sandbox.counters()["requests"].values())

    def done(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall0
        cpu = self.sandbox.cpu() - self.cpu0
        requests = sum(self.sandbox.counters()["requests"].values()) - self.req0
        return {
            "sandbox_cpu_share": cpu / wall,
            "sandbox_rps": requests / wall,
            "sandbox_cpu_per_request_s": cpu / requests if requests else None,
            "requests": requests,
            "wall_s": wall,
        }


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def listen_overflows() -> int:
    """TcpExt ListenOverflows: connections the kernel dropped because a listen queue was full."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(table.get("ListenOverflows", 0))
    return 0


# ------------------------------------------------------------------------------------ connections


def set_conn(conn_id: str, **fields: object) -> None:
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields)


def pb_conn(url: str, prn: str = PB_PRN) -> dict[str, object]:
    return {
        "conn_type": "pitney_bowes",
        "login": PB_KEY,
        "password": PB_SECRET,
        "host": url,
        "extra": {"developer_id": PB_DEVELOPER, "postal_reporting_number": prn},
    }


def c2m_conn(url: str) -> dict[str, object]:
    return {
        "conn_type": "click2mail",
        "login": C2M_USER,
        "password": C2M_PASSWORD,
        "host": url,
        "extra": {"environment": "staging", **BILLING},
    }


def http_conn(port: int, login: str | None = None, password: str | None = None) -> dict[str, object]:
    """What an http-provider user configures: host, port, and for the token call the API key/secret."""
    conn: dict[str, object] = {"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "http"}
    if login:
        conn.update(login=login, password=password)
    return conn


def balance_path(prn: str = PB_PRN) -> str:
    return f"/shippingservices/v1/developers/{PB_DEVELOPER}/merchants/{prn}/account-balance"


def pb_token(url: str) -> str:
    """One Pitney Bowes token, fetched with the standard library."""
    import base64

    auth = base64.b64encode(f"{PB_KEY}:{PB_SECRET}".encode()).decode()
    request = urllib.request.Request(
        f"{url}/oauth/token",
        data=b"grant_type=client_credentials",
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())["access_token"]


def quiet_logging() -> None:
    """Every log record is formatted and written, as the triggerer and workers do, but to /dev/null:
    both sides pay for their own logging and nothing floods the terminal."""
    import logging

    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # Airflow 3 routes some loggers through structlog; send its default printer to /dev/null as well.
    try:
        import structlog

        structlog.configure(logger_factory=structlog.PrintLoggerFactory(open(os.devnull, "w")))  # noqa: SIM115
    except ImportError:
        pass


# ------------------------------------------------------------------------------------- statistics


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs else float("inf")


def write_json(path: str | os.PathLike[str], data: object) -> None:
    Path(path).write_text(json.dumps(data, indent=2, default=str))


def emit(data: object) -> None:
    """The one line of stdout a benchmark script hands back to run_all.py."""
    print("RESULT " + json.dumps(data, default=str), flush=True)


def parse_result(stdout: str) -> object:
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError("benchmark printed no RESULT line:\n" + stdout[-2000:])


def run_script(args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 600) -> object:
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=str(ROOT)
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return parse_result(done.stdout)


def bench_env(airflow_home: str | os.PathLike[str], pycache: str | os.PathLike[str]) -> dict[str, str]:
    """The environment of every measured process: a throw-away AIRFLOW_HOME, no examples, compiled
    bytecode cached (outside the source tree), as a deployed Airflow has it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{Path(airflow_home) / 'airflow.db'}",
        AIRFLOW__CORE__FERNET_KEY="hDlnqNsq5CEd46GWd8OK2HbNhIcSXRtNTSO3jGDcclQ=",
        PYTHONPYCACHEPREFIX=str(pycache),
        PYTHONUNBUFFERED="1",
    )
    return env
