"""The async transport chosen by measurement (issue 11): CPU per request of the triggers' send path,
``asend(client, request, timeout)`` on the loop's shared client, with each candidate client, at 1, 100
and 1,000 requests in flight on one event loop.

Against the sandbox as a real API is: HTTPS with its own CA (verified), gzip-compressed chunked replies,
keep-alive, a bearer token checked per request; one Pitney Bowes balance read per request, each for one
of 1,000 merchants in turn (the requests a trigger per merchant makes). The sandbox (benchmarks/_sandbox.py
with the package's sandbox CA) runs in its own process: its CPU is not charged to the client.

Candidates, each in a fresh process:

* ``httpx``: the provider's send path before issue 11, kept here verbatim (``httpx.AsyncClient``,
  100 connections, the ``trace`` extension for sent-or-not, ``asyncio.wait_for`` for the deadline).
* ``httpx+sem``: the same behind an ``asyncio.Semaphore(100)``, so that httpx's pool queue stays short
  (its pool scans the queue on every request: encode/httpx#3215).
* ``httpx+sem+keep100``: and 100 kept-alive connections instead of 50 (with 50, half the connections
  are closed after their reply when 100 are busy, and opened again with a new TLS handshake).
* ``aiohttp``: the provider's :func:`asend` and ``shared_client`` as they are now (aiohttp, 100
  connections, ``TraceConfig.on_request_headers_sent`` for sent-or-not).

Measured: ``time.process_time`` (all threads) over a window of about ``--seconds`` in which the given
number of requests is kept in flight (each worker sends again as soon as its reply is in), after a
warm-up that opens the connections; divided by the replies in the window. Also replies per second
(wall) and the sandbox's CPU share, to show whether the server was the limit.

Run alone: ``.venv-bench/bin/python benchmarks/bench_clients.py`` (prints a table); run_all.py
``--only clients`` keeps its result in results.json / results.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    FIRST_EXTRA_PRN,
    PB_DEVELOPER,
    PB_KEY,
    PB_SECRET,
    ROOT,
    Sandbox,
    emit,
    proc_cpu,
    raise_fd_limit,
    run_script,
)

IMPLS = ("httpx", "httpx+sem", "httpx+sem+keep100", "aiohttp")
CONCURRENCY = (1, 100, 1000)
MERCHANTS = 1000
HERE = Path(__file__).resolve().parent


# ------------------------------------------------------------------------------------------ the server


def serve(merchants: int) -> None:
    """benchmarks/_sandbox.py (uvicorn with httptools and uvloop, a deep listen queue, ``merchants`` extra
    merchants) serving HTTPS with the package's sandbox CA (run as ``--serve``): prints the CA file's
    path, then _sandbox.py its ``listening on http://...`` line (the scheme is https)."""
    import uvicorn

    from airflow_provider_postage.sandbox.tls import tls_material

    tls = tls_material()
    plain = uvicorn.Config

    class TLSConfig(plain):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, ssl_certfile=str(tls.cert_path), ssl_keyfile=str(tls.key_path), **kwargs)

    uvicorn.Config = TLSConfig  # type: ignore[misc]
    print(tls.ca_path, flush=True)
    sys.argv = [sys.argv[0], "--merchants", str(merchants)]
    import _sandbox

    _sandbox.main()


class TLSSandbox(Sandbox):
    """``_common.Sandbox`` (stop, cpu, counters), serving HTTPS."""

    def __init__(self, merchants: int) -> None:
        script = [sys.executable, str(Path(__file__).resolve()), "--serve", "--merchants", str(merchants)]
        self.proc = subprocess.Popen(script, stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
        assert self.proc.stdout is not None
        self.ca = self.proc.stdout.readline().strip()
        line = self.proc.stdout.readline().strip()
        if not line.startswith("postage-sandbox listening on http://"):
            self.proc.kill()
            raise RuntimeError(f"the HTTPS sandbox did not start: {line!r}")
        self.url = "https://" + line.rsplit("://", 1)[1]
        self.port = int(self.url.rsplit(":", 1)[1])

    def token(self) -> str:
        import base64
        import json
        import urllib.request

        auth = base64.b64encode(f"{PB_KEY}:{PB_SECRET}".encode()).decode()
        request = urllib.request.Request(
            f"{self.url}/oauth/token",
            data=b"grant_type=client_credentials",
            headers={"Authorization": f"Basic {auth}", "Content-Type": "application/x-www-form-urlencoded"},
        )
        context = ssl.create_default_context(cafile=self.ca)
        with urllib.request.urlopen(request, timeout=30, context=context) as reply:
            return str(json.loads(reply.read())["access_token"])


# ------------------------------------------------------------------ the send path before issue 11 (httpx)


def httpx_client(ca: str, keep_alive: int = 50) -> Any:
    import httpx

    limits = httpx.Limits(max_connections=100, max_keepalive_connections=keep_alive)
    return httpx.AsyncClient(trust_env=False, limits=limits, verify=ssl.create_default_context(cafile=ca))


async def httpx_asend(client: Any, request: Any, *, timeout: tuple[float, float]) -> Any:
    """``_transport.asend`` as it was before issue 11."""
    import httpx

    from airflow_provider_postage._transport import _too_large, _where, deadline_of
    from airflow_provider_postage.protocol.errors import PostageTransportError
    from airflow_provider_postage.protocol.http import MAX_RESPONSE_BYTES, HttpResponse

    connect, read = timeout
    total = deadline_of(timeout)
    wrote = False

    async def trace(event: str, info: dict[str, Any]) -> None:
        nonlocal wrote
        if ".send_request_headers." in event:
            wrote = True

    async def exchange() -> HttpResponse:
        async with client.stream(
            request.method,
            request.url,
            headers=dict(request.headers),
            content=request.body,
            timeout=httpx.Timeout(read, connect=connect),
            follow_redirects=False,
            extensions={"trace": trace},
        ) as reply:
            body = bytearray()
            async for chunk in reply.aiter_bytes():
                body.extend(chunk)
                if len(body) > MAX_RESPONSE_BYTES:
                    raise _too_large(request)
            headers = {name.lower(): value for name, value in reply.headers.items()}
            return HttpResponse(reply.status_code, headers, bytes(body))

    try:
        return await asyncio.wait_for(exchange(), total)
    except asyncio.TimeoutError:
        raise PostageTransportError(
            f"{_where(request)}: no complete reply within {total:g} s", request_sent=wrote
        ) from None
    except (httpx.HTTPError, OSError, ValueError) as error:
        raise PostageTransportError(f"{_where(request)}: {type(error).__name__}", request_sent=wrote) from None


# ------------------------------------------------------------------------------------- one measurement


def requests_for(url: str, ca: str, token: str, merchants: int) -> list[Any]:
    from airflow_provider_postage.protocol.pitney_bowes import PitneyBowesSettings, build_balance_request

    return [
        build_balance_request(
            PitneyBowesSettings(PB_KEY, PB_SECRET, "sandbox", url, PB_DEVELOPER, str(FIRST_EXTRA_PRN + i), ca),
            token,
        )
        for i in range(merchants)
    ]


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from airflow_provider_postage import _drivers, _transport

    requests = requests_for(args.url, args.ca, args.token, args.merchants)
    timeout = _transport.DEFAULT_TIMEOUT
    if args.impl.startswith("httpx"):
        client = httpx_client(args.ca, 100 if args.impl.endswith("+keep100") else 50)
        send: Any = httpx_asend
    else:
        client = _drivers.shared_client(args.ca)
        send = _transport.asend
    if "+sem" in args.impl:
        bounded, bare = asyncio.Semaphore(100), send

        async def send(client: Any, request: Any, *, timeout: tuple[float, float]) -> Any:
            async with bounded:
                return await bare(client, request, timeout=timeout)

    state = {"done": 0, "errors": 0, "next": 0}
    statuses: dict[int, int] = {}

    async def worker() -> None:
        while True:
            request = requests[state["next"] % len(requests)]
            state["next"] += 1
            try:
                reply = await send(client, request, timeout=timeout)
            except Exception:
                state["errors"] += 1
            else:
                statuses[reply.status] = statuses.get(reply.status, 0) + 1
            state["done"] += 1

    workers = [asyncio.ensure_future(worker()) for _ in range(args.concurrency)]  # held: tasks are weakly kept
    await asyncio.sleep(args.warmup)  # connections opened, the pool full, imports done
    cpu0, wall0, done0, err0 = time.process_time(), time.perf_counter(), state["done"], state["errors"]
    server0 = proc_cpu(args.sandbox_pid)
    await asyncio.sleep(args.seconds)
    cpu1, wall1, done1, err1 = time.process_time(), time.perf_counter(), state["done"], state["errors"]
    server1 = proc_cpu(args.sandbox_pid)
    replies = done1 - done0
    return {
        "impl": args.impl,
        "concurrency": args.concurrency,
        "replies": replies,
        "errors": err1 - err0,
        "statuses": statuses,
        "wall_s": wall1 - wall0,
        "cpu_s": cpu1 - cpu0,
        "cpu_share": (cpu1 - cpu0) / (wall1 - wall0),
        "cpu_per_request_ms": 1000 * (cpu1 - cpu0) / replies if replies else None,
        "replies_per_s": replies / (wall1 - wall0),
        "sandbox_cpu_share": (server1 - server0) / (wall1 - wall0),
        "workers_left": sum(not task.done() for task in workers),
    }


def one(args: argparse.Namespace) -> None:
    raise_fd_limit()

    async def measure_and_exit() -> None:
        emit(await measure(args))
        sys.stdout.flush()
        os._exit(0)  # no clean-up: cancelling 1,000 requests in flight is not part of the measurement

    asyncio.run(measure_and_exit())


# ------------------------------------------------------------------------------------------ the report


def table(results: dict[str, Any]) -> str:
    """A markdown table: client x requests in flight -> CPU ms per request (replies per second)."""
    runs = results["runs"]
    levels = sorted({run["concurrency"] for run in runs})
    lines = [
        "| client | " + " | ".join(f"{c:,} in flight" for c in levels) + " |",
        "| --- | " + " | ".join("---:" for _ in levels) + " |",
    ]
    for impl in dict.fromkeys(run["impl"] for run in runs):
        cells = []
        for level in levels:
            run = next((r for r in runs if r["impl"] == impl and r["concurrency"] == level), None)
            if run is None:
                cells.append("-")
            elif not run["replies"]:
                cells.append(f"no reply in {run['wall_s']:.0f} s ({run['cpu_share']:.0%} of a CPU busy)")
            else:
                errors = f", {run['errors']} errors" if run["errors"] else ""
                cells.append(f"{run['cpu_per_request_ms']:.2f} ms ({run['replies_per_s']:,.0f}/s{errors})")
        lines.append(f"| {impl} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_section(results: dict[str, Any]) -> str:
    """The section of benchmarks/results.md (called by report.py)."""
    return "\n".join(
        [
            "## Async HTTP clients: CPU per request on one event loop (issue 11)",
            "",
            "The triggers' send path (`asend` on the loop's shared client) against the sandbox over HTTPS "
            "(verified, its own CA), gzip-compressed chunked replies, a bearer token checked per request, one "
            "Pitney Bowes balance read per request over 1,000 merchants. Client CPU (`time.process_time`) per "
            f"reply over a {results['seconds']:g} s window with that many requests kept in flight, after a "
            f"{results['warmup']:g} s warm-up; in brackets the replies per second. `httpx` is the path before "
            "issue 11 (kept in benchmarks/bench_clients.py), `httpx+sem` the same behind an "
            "`asyncio.Semaphore(100)`, `httpx+sem+keep100` that with 100 kept-alive connections (not 50), `aiohttp` "
            "the provider's `asend` now. 100 connections each.",
            "",
            table(results),
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", choices=IMPLS, help="measure one client (in this process)")
    parser.add_argument("--impls", nargs="*", choices=IMPLS, default=list(IMPLS))
    parser.add_argument("--concurrency", type=int, nargs="*", default=list(CONCURRENCY))
    parser.add_argument("--merchants", type=int, default=MERCHANTS)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--url")
    parser.add_argument("--ca")
    parser.add_argument("--token")
    parser.add_argument("--sandbox-pid", type=int)
    args = parser.parse_args()
    if args.serve:
        serve(args.merchants)
        return
    if args.impl:
        args.concurrency = args.concurrency[0]
        one(args)
        return

    sandbox = TLSSandbox(args.merchants)
    try:
        token = sandbox.token()
        runs = []
        for impl in args.impls:
            for level in args.concurrency:
                one_run = ["--impl", impl, "--concurrency", str(level), "--merchants", str(args.merchants)]
                one_run += ["--seconds", str(args.seconds), "--warmup", str(args.warmup), "--url", sandbox.url]
                one_run += ["--ca", sandbox.ca, "--token", token, "--sandbox-pid", str(sandbox.proc.pid)]
                run: Any = run_script(["benchmarks/bench_clients.py", *one_run], timeout=180)
                print(
                    f"[{time.strftime('%H:%M:%S')}] {impl} x {level}: {run['cpu_per_request_ms']} ms/request",
                    file=sys.stderr,
                    flush=True,
                )
                runs.append(run)
    finally:
        sandbox.stop()
    results = {"seconds": args.seconds, "warmup": args.warmup, "merchants": args.merchants, "runs": runs}
    print(table(results), file=sys.stderr)
    emit(results)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    os.chdir(ROOT)
    main()
