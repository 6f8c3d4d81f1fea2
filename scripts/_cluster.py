"""``scripts/cluster up|down|status``: a distributed Airflow 3.3 on this machine, against the sandbox.

PostgreSQL (a Debian cluster of its own, ``postage``, on a private port) and Redis (a private port) hold
the metadata and the Celery queue; the API server, the scheduler, the DAG processor, two triggerers,
two Celery workers and the sandbox (HTTPS) each run as a process of their own, with a log in
``.cluster/logs/<name>.log`` and a pid file in ``.cluster/pids/``. The connections are in the metadata
database (written through the REST API, so they are encrypted there); the DAGs are ``example_dags/``
and ``tests/cluster/dags/``, as two DAG bundles.

``up`` starts what is not running (it is safe to run again, e.g. after a process was killed);
``up --fresh`` first stops everything and starts from an empty database. ``down`` stops, by pid, exactly
what ``up`` started. ``status`` shows every process and its health; exit status 0 when all are healthy,
3 when nothing runs, 1 otherwise (``--quick``: pid files only).

``POSTAGE_CLUSTER_SHARED_READS=1 scripts/cluster up`` also sets the provider's ``[postage] redis_url`` (the
triggerers share balance reads through the cluster's Redis). Importable: the cluster tests drive the
cluster with :func:`pid_of`, :func:`kill_tree`, :func:`start`, :func:`api_client` and the constants here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
HOME = Path(os.environ.get("POSTAGE_CLUSTER_HOME", ROOT / ".cluster")).resolve()
VENV_BIN = ROOT / ".venv" / "bin"
AIRFLOW = str(VENV_BIN / "airflow")
PYTHON = str(VENV_BIN / "python")

_BASE_PORT = int(os.environ.get("POSTAGE_CLUSTER_PORT_BASE", "28700"))
PG_PORT = _BASE_PORT + 32
REDIS_PORT = _BASE_PORT + 79
API_PORT = _BASE_PORT + 80
SANDBOX_PORT = _BASE_PORT + 87
API_URL = f"http://127.0.0.1:{API_PORT}"
SANDBOX_URL = f"https://127.0.0.1:{SANDBOX_PORT}"
CA_PATH = HOME / "sandbox" / "ca.pem"
PG_CLUSTER = "postage"
HOSTNAME = socket.gethostname()

#: Seconds between the example DAGs' balance polls: the cluster policy scripts/airflow_local_settings.py
#: (on every cluster process's PYTHONPATH) reads it from POSTAGE_POLL_SECONDS.
POKE_SECONDS = 1
#: A triggerer whose heartbeat is older than this is dead: its triggers go to the other one.
TRIGGERER_HEALTH_CHECK_THRESHOLD = 8
#: A running task whose heartbeat is older than this is failed (and retried) by the scheduler.
TASK_HEARTBEAT_TIMEOUT = 20
WORKER_CONCURRENCY = 4
#: POSTAGE_CLUSTER_SHARED_READS=1: the triggerers share balance reads through Redis ([postage] redis_url).
SHARED_READS = os.environ.get("POSTAGE_CLUSTER_SHARED_READS") == "1"
#: Modules every task imports (the task runner, the provider): each Celery worker imports them before it
#: forks its pool processes, so that a task process, forked from one of those, finds them loaded.
WORKER_PRELOAD = [
    "airflow.sdk.execution_time.task_runner",
    "airflow_provider_postage.operators.postage",
    "airflow_provider_postage.sensors.postage",
]
#: Bought funds show in balances this long after the purchase (the sandbox's --settle-seconds).
SETTLE_SECONDS = 3

DAG_BUNDLES = {"postage_examples": ROOT / "example_dags", "cluster_checks": ROOT / "tests" / "cluster" / "dags"}

#: Start order (``down`` stops the Airflow processes together, then the sandbox and Redis); PostgreSQL is
#: handled apart (pg_ctlcluster).
PROCESSES = [
    "redis",
    "sandbox",
    "api-server",
    "scheduler",
    "dag-processor",
    "triggerer-1",
    "triggerer-2",
    "worker-1",
    "worker-2",
]
JOB_TYPES = {"scheduler": "SchedulerJob", "dag-processor": "DagProcessorJob"}


def say(message: str) -> None:
    print(f"[cluster] {message}", flush=True)


# --- state: secrets, config -------------------------------------------------------------------------


def _state_path() -> Path:
    return HOME / "cluster.json"


def load_state() -> dict[str, Any]:
    """The cluster's own secrets (database password, Fernet key, JWT secret, API secret key) and facts."""
    path = _state_path()
    if path.exists():
        return dict(json.loads(path.read_text()))
    from cryptography.fernet import Fernet

    state = {
        "db_password": secrets.token_urlsafe(18),
        "fernet_key": Fernet.generate_key().decode(),
        "jwt_secret": secrets.token_urlsafe(32),
        "api_secret_key": secrets.token_urlsafe(32),
    }
    HOME.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(state, indent=1))
    return state


def db_url(state: dict[str, Any]) -> str:
    return f"postgresql+psycopg2://airflow:{state['db_password']}@127.0.0.1:{PG_PORT}/airflow"


def airflow_cfg(state: dict[str, Any]) -> str:
    bundles = [
        {
            "name": name,
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(path), "refresh_interval": 5},
        }
        for name, path in DAG_BUNDLES.items()
    ]
    sections: dict[str, dict[str, object]] = {
        "core": {
            "executor": "CeleryExecutor",
            "dags_folder": DAG_BUNDLES["postage_examples"],
            "load_examples": "False",
            "fernet_key": state["fernet_key"],
            "parallelism": 16,
            "max_active_tasks_per_dag": 16,
            "execution_api_server_url": f"{API_URL}/execution/",
            "hostname_callable": "_cluster_hostname.hostname",
            "simple_auth_manager_all_admins": "True",
            "dagbag_import_timeout": 120,
        },
        "database": {"sql_alchemy_conn": db_url(state)},
        "logging": {
            "base_log_folder": HOME / "logs" / "tasks",
            "dag_processor_child_process_log_directory": HOME / "logs" / "dag-processor-files",
        },
        "api": {"host": "127.0.0.1", "port": API_PORT, "workers": 2, "secret_key": state["api_secret_key"]},
        "api_auth": {"jwt_secret": state["jwt_secret"]},
        "scheduler": {
            "scheduler_heartbeat_sec": 1,
            "scheduler_idle_sleep_time": 0.5,
            "task_instance_heartbeat_timeout": TASK_HEARTBEAT_TIMEOUT,
            "task_instance_heartbeat_timeout_detection_interval": 2,
            "task_queued_timeout": 300,
        },
        "dag_processor": {
            "refresh_interval": 5,
            "parsing_processes": 1,
            "dag_bundle_config_list": json.dumps(bundles),
        },
        "triggerer": {"job_heartbeat_sec": 1, "triggerer_health_check_threshold": TRIGGERER_HEALTH_CHECK_THRESHOLD},
        "celery": {
            "broker_url": f"redis://127.0.0.1:{REDIS_PORT}/0",
            "result_backend": f"db+{db_url(state)}",
            "worker_concurrency": WORKER_CONCURRENCY,
            "worker_prefetch_multiplier": 1,
            # Imported once by each worker before it forks its pool: tasks start without importing them.
            "extra_celery_config": json.dumps({"imports": WORKER_PRELOAD}),
        },
        # Celery hands a task to another worker after this long unacknowledged (a worker that died).
        "celery_broker_transport_options": {"visibility_timeout": 3600},
    }
    if SHARED_READS:  # the provider's balance reads shared by the triggerers through Redis (extra [redis])
        sections["postage"] = {"redis_url": f"redis://127.0.0.1:{REDIS_PORT}/1"}
    lines = ["# Written by scripts/cluster up: every Airflow process of the local cluster reads it."]
    for section, options in sections.items():
        lines.append(f"\n[{section}]")
        lines.extend(f"{key} = {value}" for key, value in options.items())
    return "\n".join(lines) + "\n"


def airflow_env(process: str = "cli") -> dict[str, str]:
    """The environment of a cluster process (or of an ``airflow`` command run against the cluster):
    this process's AIRFLOW_* settings removed, the cluster's AIRFLOW_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(
        AIRFLOW_HOME=str(HOME),
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONPATH=str(ROOT / "scripts"),
        POSTAGE_CLUSTER_PROCESS=process,
        POSTAGE_POLL_SECONDS=str(POKE_SECONDS),
    )
    return env


def airflow_hostname(process: str) -> str:
    """What ``[core] hostname_callable`` (scripts/_cluster_hostname.py) answers in ``process``."""
    return f"{process}.{HOSTNAME}"


# --- processes by pid file --------------------------------------------------------------------------


def _pid_file(name: str) -> Path:
    return HOME / "pids" / f"{name}.pid"


def pid_of(name: str) -> int | None:
    """The pid of ``name`` if the process its pid file names is still that process and alive."""
    try:
        pid_text, created = _pid_file(name).read_text().split()
        proc = psutil.Process(int(pid_text))
        if abs(proc.create_time() - float(created)) > 0.5 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.pid
    except (OSError, ValueError, psutil.Error):
        return None


def _write_pid(name: str, pid: int) -> None:
    path = _pid_file(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid} {psutil.Process(pid).create_time()}\n")


def log_path(name: str) -> Path:
    return HOME / "logs" / f"{name}.log"


def command(name: str) -> list[str]:
    if name == "redis":
        return [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            *("--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--daemonize", "no"),
            *("--dir", str(HOME / "redis"), "--save", "", "--appendonly", "no"),
        ]
    if name == "sandbox":
        return [
            PYTHON,
            *("-m", "airflow_provider_postage.sandbox", "--port", str(SANDBOX_PORT), "--tls"),
            *("--ca-dir", str(CA_PATH.parent), "--settle-seconds", str(SETTLE_SECONDS)),
            *("--seed", str(HOME / "sandbox" / "seed.json")),
        ]
    if name == "api-server":
        return [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(API_PORT)]
    if name in ("scheduler", "dag-processor"):
        return [AIRFLOW, name]
    if name.startswith("triggerer-"):
        return [AIRFLOW, "triggerer", "--skip-serve-logs"]
    if name.startswith("worker-"):
        return [
            AIRFLOW,
            *("celery", "worker", "--concurrency", str(WORKER_CONCURRENCY)),
            *("--celery-hostname", f"{name}@%h", "--skip-serve-logs", "--without-gossip", "--without-mingle"),
        ]
    raise ValueError(f"unknown process {name!r}")


def start(name: str) -> int:
    log = log_path(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} scripts/cluster starts {name}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            command(name),
            cwd=ROOT,
            env=airflow_env(name),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _write_pid(name, proc.pid)
    say(f"started {name} (pid {proc.pid}, log {log.relative_to(ROOT) if log.is_relative_to(ROOT) else log})")
    return proc.pid


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> list[psutil.Process]:
    """Send ``sig`` to a process and every descendant at once (a machine losing the process); returns them."""
    root = psutil.Process(pid)
    family = [root, *root.children(recursive=True)]
    for proc in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)
    return family


def stop(names: list[str], timeout: float = 30) -> None:
    """SIGTERM the processes of ``names`` (by their pid files) at once; SIGKILL what is left of each
    one's process tree ``timeout`` seconds later."""
    began = time.monotonic()
    families: dict[str, list[psutil.Process]] = {}
    for name in names:
        pid = pid_of(name)
        if pid is None:
            _pid_file(name).unlink(missing_ok=True)
            continue
        root = psutil.Process(pid)
        families[name] = [root, *_children(root)]
        with contextlib.suppress(psutil.NoSuchProcess):
            root.send_signal(signal.SIGTERM)
    ended: dict[str, float] = {}
    while len(ended) < len(families) and time.monotonic() - began < timeout:
        for name, family in families.items():
            if name not in ended and not _running(family[0]):
                ended[name] = time.monotonic() - began
        time.sleep(0.1)
    for name, family in families.items():
        leftovers = [proc for proc in [*family, *_children(family[0])] if _running(proc)]
        for proc in leftovers:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        _pid_file(name).unlink(missing_ok=True)
        how = f"in {ended[name]:.1f} s" if name in ended else f"killed after {timeout:.0f} s"
        extra = f", {len(leftovers)} left-over processes killed" if leftovers and name in ended else ""
        say(f"stopped {name} (pid {family[0].pid}) {how}{extra}")


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return list(proc.children(recursive=True))
    except psutil.Error:
        return []


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# --- waiting ----------------------------------------------------------------------------------------


def wait_for(
    check: Callable[[], bool], timeout: float, what: str, interval: float = 0.5, processes: tuple[str, ...] = ()
) -> None:
    """Wait until ``check()``; stop at once with the log's end if one of ``processes`` has died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in processes:
            if pid_of(name) is None:
                tail = log_path(name).read_text(errors="replace")[-3000:]
                raise SystemExit(f"[cluster] {name} died while waiting for {what}; its log ends:\n{tail}")
        try:
            if check():
                return
        except (httpx.HTTPError, OSError, ValueError, KeyError):
            pass
        time.sleep(interval)
    raise SystemExit(f"[cluster] timed out after {timeout:.0f} s waiting for {what}")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _check_port(name: str, port: int) -> None:
    if not _port_free(port):
        raise SystemExit(
            f"[cluster] port {port} for {name} is taken by a process this cluster did not start; "
            "set POSTAGE_CLUSTER_PORT_BASE to move every port"
        )


# --- PostgreSQL: a Debian cluster of our own ---------------------------------------------------------


def pg_version() -> str:
    versions = sorted(
        (p.parent.parent.name for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")), key=lambda v: int(v)
    )
    if not versions:
        raise SystemExit("[cluster] PostgreSQL is not installed (scripts/cluster installs it with apt-get)")
    return versions[-1]


def pg_cluster() -> dict[str, str] | None:
    """Our cluster's line of ``pg_lsclusters``: version, port, status, data directory, log file."""
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == PG_CLUSTER:
            log = fields[6] if len(fields) > 6 else ""
            return {"version": fields[0], "port": fields[2], "status": fields[3], "datadir": fields[5], "log": log}
    return None


def pg_pid() -> int | None:
    found = pg_cluster()
    if not found or found["status"] != "online":
        return None
    try:
        return int((Path(found["datadir"]) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def psql(sql: str, database: str = "postgres") -> str:
    """Run SQL as PostgreSQL's superuser (peer authentication over the local socket)."""
    done = subprocess.run(
        [
            *("runuser", "-u", "postgres", "--", "psql", "-p", str(PG_PORT), "-d", database),
            *("-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"[cluster] psql failed: {done.stderr.strip()}")
    return done.stdout.strip()


def pg_up(state: dict[str, Any], fresh: bool) -> None:
    found = pg_cluster()
    if found is None:
        _check_port("postgresql", PG_PORT)
        version = pg_version()
        say(f"creating PostgreSQL {version} cluster {PG_CLUSTER!r} on port {PG_PORT}")
        subprocess.run(
            [
                *("pg_createcluster", "--port", str(PG_PORT), "--start-conf", "manual"),
                *("-o", "fsync=off", "-o", "synchronous_commit=off", "-o", "full_page_writes=off"),
                *("-o", "max_connections=200", version, PG_CLUSTER),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        found = pg_cluster()
        assert found is not None
    if found["port"] != str(PG_PORT):
        raise SystemExit(
            f"[cluster] the PostgreSQL cluster {found['version']}/{PG_CLUSTER} listens on port {found['port']}, "
            f"not {PG_PORT}: drop it (pg_dropcluster --stop {found['version']} {PG_CLUSTER}) or set "
            "POSTAGE_CLUSTER_PORT_BASE back"
        )
    if found["status"] != "online":
        subprocess.run(["pg_ctlcluster", found["version"], PG_CLUSTER, "start"], check=True)
    pid = pg_pid()
    assert pid is not None
    _write_pid("postgresql", pid)
    say(f"PostgreSQL {found['version']}/{PG_CLUSTER} up (pid {pid}, port {PG_PORT})")
    password = state["db_password"].replace("'", "''")
    psql(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'airflow') THEN "
        f"CREATE ROLE airflow LOGIN; END IF; END $$; ALTER ROLE airflow PASSWORD '{password}'"
    )
    if fresh:
        psql("DROP DATABASE IF EXISTS airflow WITH (FORCE)")
    if psql("SELECT 1 FROM pg_database WHERE datname = 'airflow'") != "1":
        psql("CREATE DATABASE airflow OWNER airflow ENCODING 'UTF8' TEMPLATE template0")
        say("created database airflow")


def pg_down() -> None:
    found = pg_cluster()
    pid = pid_of("postgresql")
    if found and found["status"] == "online" and pid is not None and pid == pg_pid():
        subprocess.run(["pg_ctlcluster", found["version"], PG_CLUSTER, "stop", "-m", "fast"], check=True)
        if psutil.pid_exists(pid):
            psutil.wait_procs([psutil.Process(pid)], timeout=30)
        say(f"stopped PostgreSQL {found['version']}/{PG_CLUSTER} (pid {pid})")
    _pid_file("postgresql").unlink(missing_ok=True)


# --- Airflow through its REST API --------------------------------------------------------------------


def api_client() -> httpx.Client:
    """A client of the REST API with a token (every user is an admin on this local cluster)."""
    token = httpx.get(f"{API_URL}/auth/token", timeout=30).json()["access_token"]
    return httpx.Client(base_url=API_URL, timeout=30, headers={"Authorization": f"Bearer {token}"})


def sandbox_client() -> httpx.Client:
    return httpx.Client(base_url=SANDBOX_URL, timeout=30, verify=ssl.create_default_context(cafile=str(CA_PATH)))


def _api_healthy() -> bool:
    return httpx.get(f"{API_URL}/api/v2/monitor/health", timeout=5).status_code == 200


def load_connections(client: httpx.Client) -> None:
    from _cluster_world import ACCOUNTS, connections

    body = {
        "actions": [
            {"action": "create", "entities": connections(SANDBOX_URL, str(CA_PATH)), "action_on_existence": "overwrite"}
        ]
    }
    reply = client.patch("/api/v2/connections", json=body)
    reply.raise_for_status()
    created = reply.json()["create"]
    if created.get("errors"):
        raise SystemExit(f"[cluster] connections not created: {created['errors']}")
    if client.get("/api/v2/variables/postage_accounts").status_code == 404:
        reply = client.post("/api/v2/variables", json={"key": "postage_accounts", "value": json.dumps(ACCOUNTS)})
        reply.raise_for_status()
    say(f"{len(created['success'])} connections in the metadata database; Variable postage_accounts set")


def alive_jobs(client: httpx.Client) -> set[str]:
    jobs = client.get("/api/v2/jobs", params={"is_alive": True, "limit": 100}).json()["jobs"]
    return {job["hostname"] for job in jobs if job.get("end_date") is None}


def worker_ready(name: str) -> bool:
    """Celery's "ready." line, written since the worker was last started."""
    since_start = log_path(name).read_text(errors="replace").rpartition(f"scripts/cluster starts {name}\n")[2]
    return f"{name}@{HOSTNAME} ready." in since_start


# --- commands ----------------------------------------------------------------------------------------


def up(fresh: bool) -> None:
    started_at = time.monotonic()
    if fresh:
        down(quiet=True)
        for path in ("logs", "pids", "redis", "sandbox", "reports", "cluster.json", "airflow.cfg"):
            target = HOME / path
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
    HOME.mkdir(parents=True, exist_ok=True)
    (HOME / ".gitignore").write_text("*\n")
    for sub in ("logs", "pids", "redis", "sandbox"):
        (HOME / sub).mkdir(exist_ok=True)
    state = load_state()
    (HOME / "airflow.cfg").write_text(airflow_cfg(state))
    (HOME / "airflow.cfg").chmod(0o600)

    pg_up(state, fresh)
    if pid_of("redis") is None:
        _check_port("redis", REDIS_PORT)
        start("redis")
    if pid_of("sandbox") is None:
        _check_port("sandbox", SANDBOX_PORT)
        _start_sandbox()
    wait_for(_redis_ready, 30, "Redis", processes=("redis",))

    step = time.monotonic()
    migrate = subprocess.run(
        [AIRFLOW, "db", "migrate"], env=airflow_env(), capture_output=True, text=True, timeout=600, check=False
    )
    if migrate.returncode:
        raise SystemExit(f"[cluster] airflow db migrate failed:\n{migrate.stdout[-3000:]}\n{migrate.stderr[-3000:]}")
    say(f"airflow db migrate: {time.monotonic() - step:.0f} s")

    airflow = tuple(PROCESSES[2:])
    if pid_of("api-server") is None:
        _check_port("api-server", API_PORT)
    for name in airflow:
        if pid_of(name) is None:
            start(name)
    wait_for(_api_healthy, 180, "the API server", processes=airflow)
    with api_client() as client:
        load_connections(client)
        wanted = {airflow_hostname(n) for n in PROCESSES if n.startswith(("scheduler", "dag-processor", "triggerer"))}
        what = "the scheduler, DAG processor and triggerers"
        wait_for(lambda: wanted <= alive_jobs(client), 180, what, processes=airflow)
        workers = [n for n in PROCESSES if n.startswith("worker-")]
        wait_for(lambda: all(worker_ready(n) for n in workers), 180, "the workers", processes=airflow)

        def parsed() -> bool:
            errors = client.get("/api/v2/importErrors").json()["import_errors"]
            if errors:
                raise SystemExit(f"[cluster] DAG import errors: {json.dumps(errors, indent=1)[:3000]}")
            dags = client.get("/api/v2/dags", params={"limit": 1000}).json()["dags"]
            bundles = Counter(d.get("bundle_name") for d in dags)
            return all(bundles[name] >= len(list(path.glob("*.py"))) for name, path in DAG_BUNDLES.items())

        wait_for(parsed, 180, "the DAGs to be parsed", processes=airflow)
    took = time.monotonic() - started_at
    say(f"up in {took:.0f} s: API and UI {API_URL} (every user an admin), sandbox {SANDBOX_URL}")


def _start_sandbox() -> None:
    from _cluster_world import sandbox_seed

    seed = HOME / "sandbox" / "seed.json"
    seed.touch(mode=0o600)
    seed.write_text(json.dumps(sandbox_seed()))
    CA_PATH.unlink(missing_ok=True)
    start("sandbox")

    def serving() -> bool:
        with sandbox_client() as client:
            return client.get("/_sandbox/settings").status_code == 200

    wait_for(lambda: CA_PATH.exists() and serving(), 60, "the sandbox", processes=("sandbox",))
    seed.unlink()  # the sandbox has read its world; the passwords in it need not stay on disk


def _redis_ready() -> bool:
    return _redis_cli("ping") == "PONG"


def _redis_cli(*args: str) -> str:
    done = subprocess.run(
        ["redis-cli", "-p", str(REDIS_PORT), *args], capture_output=True, text=True, timeout=10, check=False
    )
    return done.stdout.strip()


def down(quiet: bool = False) -> None:
    stop([name for name in PROCESSES if name not in ("redis", "sandbox")])
    stop(["sandbox", "redis"])
    pg_down()
    if not quiet:
        left = [name for name in [*PROCESSES, "postgresql"] if pid_of(name) is not None]
        say("down" if not left else f"still running: {', '.join(left)}")


def _run(args: list[str], timeout: float = 60, whole: bool = False) -> tuple[bool, str]:
    """Run a command against the cluster: (exit status 0, its last line of output or all of it)."""
    try:
        done = subprocess.run(args, env=airflow_env(), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return False, f"no answer in {timeout:.0f} s"
    if whole:
        return done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return done.returncode == 0, (lines[-1] if lines else "")[:100]


def _celery_ping() -> dict[str, tuple[bool, str]]:
    """``celery inspect ping`` of both workers."""
    workers = [name for name in PROCESSES if name.startswith("worker-")]
    _, out = _run(
        [
            str(VENV_BIN / "celery"),
            *("--app", "airflow.providers.celery.executors.celery_executor.app", "inspect", "ping", "--timeout", "5"),
            *("--destination", ",".join(f"{name}@{HOSTNAME}" for name in workers)),
        ],
        timeout=90,
        whole=True,
    )
    answered = {name: f"{name}@{HOSTNAME}: OK" in out for name in workers}
    return {name: (ok, "celery inspect ping -> " + ("pong" if ok else "no pong")) for name, ok in answered.items()}


#: ``airflow jobs check`` once per job, in one Python process (an ``airflow`` command takes seconds to start).
_JOBS_CHECK = """
import contextlib, io, json, sys
from airflow.cli import cli_parser
parser = cli_parser.get_parser()
for name, argv in json.loads(sys.argv[1]).items():
    args, out = parser.parse_args(argv), io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            args.func(args)
        print(json.dumps([name, True, out.getvalue().strip()]))
    except SystemExit as error:
        print(json.dumps([name, False, str(error.code)]))
"""


def _jobs_check() -> dict[str, tuple[bool, str]]:
    checks = {}
    for name in PROCESSES:
        job_type = JOB_TYPES.get(name) or ("TriggererJob" if name.startswith("triggerer-") else None)
        if job_type:
            checks[name] = ["jobs", "check", "--job-type", job_type, "--hostname", airflow_hostname(name)]
    _, out = _run([PYTHON, "-c", _JOBS_CHECK, json.dumps(checks)], timeout=120, whole=True)
    results = {name: (False, "airflow jobs check did not answer") for name in checks}
    for line in out.splitlines():
        if line.startswith('["'):
            name, ok, message = json.loads(line)
            results[name] = (ok, f"airflow jobs check: {message}")
    return results


def _service_checks() -> dict[str, tuple[bool, str]]:
    def sandbox() -> tuple[bool, str]:
        with sandbox_client() as client:
            reply = client.get("/_sandbox/settings")
        return reply.status_code == 200, f"GET /_sandbox/settings -> {reply.status_code}"

    def api() -> tuple[bool, str]:
        health = httpx.get(f"{API_URL}/api/v2/monitor/health", timeout=10).json()
        database = health["metadatabase"]["status"]
        return database == "healthy", f"GET /api/v2/monitor/health: database {database}"

    return {
        "postgresql": _safe(lambda: _run(["pg_isready", "-h", "127.0.0.1", "-p", str(PG_PORT)])),
        "redis": (_redis_ready(), "redis-cli ping -> " + (_redis_cli("ping") or "no reply")),
        "sandbox": _safe(sandbox),
        "api-server": _safe(api),
    }


def status(quick: bool) -> int:
    names = ["postgresql", *PROCESSES]
    pids = {name: pid_of(name) for name in names}
    outcomes: dict[str, tuple[bool, str]] = {}
    if not quick:
        with ThreadPoolExecutor(max_workers=3) as pool:
            for future in [pool.submit(_celery_ping), pool.submit(_jobs_check), pool.submit(_service_checks)]:
                outcomes.update(future.result())
    healthy = True
    print(f"{'process':<14} {'pid':>8}  {'state':<8} {'health':<10} check")
    for name in names:
        pid = pids[name]
        ok, detail = outcomes.get(name, (pid is not None, "pid file only (--quick)"))
        healthy &= pid is not None and ok
        state = "running" if pid else "stopped"
        print(f"{name:<14} {pid or '-':>8}  {state:<8} {'healthy' if pid and ok else 'UNHEALTHY':<10} {detail}")
    print(f"API/UI {API_URL}  sandbox {SANDBOX_URL}  logs {HOME / 'logs'}")
    if not any(pids.values()):
        return 3
    return 0 if healthy else 1


def _safe(check: Callable[[], tuple[bool, str]]) -> tuple[bool, str]:
    try:
        return check()
    except Exception as error:
        return False, f"{type(error).__name__}: {error}"[:100]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up_cmd = commands.add_parser("up", help="start what is not running")
    up_cmd.add_argument("--fresh", action="store_true", help="stop everything and start from an empty database")
    commands.add_parser("down", help="stop every process up started")
    status_cmd = commands.add_parser("status", help="every process and its health")
    status_cmd.add_argument("--quick", action="store_true", help="pid files only, no health checks")
    args = parser.parse_args(argv)
    if args.command == "up":
        up(args.fresh)
        return 0
    if args.command == "down":
        down()
        return 0
    return status(args.quick)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "scripts"))
    sys.exit(main())
