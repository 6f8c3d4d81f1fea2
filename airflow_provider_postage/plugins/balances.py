"""The balances the page shows: every connection of a postage type, each account read at most once per
refresh interval however many people look, and the last reads kept in memory for the chart.

The cache lives in the API server process (one per worker: ``[api] workers`` API server processes read an
account up to that many times per interval). An error is cached like a balance, so that a failing account
is not asked again by every viewer; its message is shown without the connection's secrets.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from airflow_provider_postage import registry
from airflow_provider_postage.protocol.errors import PostageError
from airflow_provider_postage.protocol.money import format_money
from airflow_provider_postage.protocol.records import Balance

DEFAULT_REFRESH_SECONDS = 60.0
DEFAULT_HISTORY_POINTS = 500
#: Reads of the page are short: a slow API shows as an error on its row instead of holding the page.
READ_TIMEOUT = (5.0, 15.0)
READ_ATTEMPTS = 2
_MAX_ERROR_CHARS = 400
_ENV_PREFIX = "AIRFLOW_CONN_"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# --- which connections ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostageConnection:
    """A connection of a postage type, as the page needs it: its fields stay on the server."""

    conn_id: str
    conn_type: str
    login: str | None
    password: str | None
    host: str | None
    extra: Mapping[str, Any]
    port: int | None
    schema: str | None
    source: str  # "metadata database" or "environment variable"


def postage_conn_types() -> list[str]:
    return [service.conn_type for service in registry.services()]


def _from_orm(conn: Any, source: str) -> PostageConnection:
    from airflow_provider_postage._masking import parse_extra

    try:
        extra = parse_extra(conn.extra)
    except PostageError:  # an unreadable extra: the service's settings() names what is missing
        extra = {}
    return PostageConnection(
        conn.conn_id, conn.conn_type, conn.login, conn.password, conn.host, extra, conn.port, conn.schema, source
    )


def list_connections(session: Any, environ: Mapping[str, str] | None = None) -> list[PostageConnection]:
    """Every connection of a registered postage type in the metadata database and in ``AIRFLOW_CONN_*``
    variables of this process (which win over the database, as in Airflow's own lookup). Connections that
    live only in a secrets backend cannot be listed: a backend answers for an id, it has no listing."""
    from airflow.models.connection import Connection
    from sqlalchemy import select

    types = postage_conn_types()
    found: dict[str, PostageConnection] = {}
    for conn in session.scalars(select(Connection).where(Connection.conn_type.in_(types))):
        found[conn.conn_id] = _from_orm(conn, "metadata database")
    for name, value in (os.environ if environ is None else environ).items():
        if not name.startswith(_ENV_PREFIX) or not value:
            continue
        conn_id = name[len(_ENV_PREFIX) :].lower()
        try:
            if value.lstrip().startswith("{"):
                conn = Connection.from_json(value, conn_id=conn_id)
            else:
                conn = Connection(conn_id=conn_id, uri=value)
        except Exception:  # not ours to judge: Airflow reports it where the connection is used
            continue
        if conn.conn_type in types:
            found[conn_id] = _from_orm(conn, "environment variable")
    return [found[conn_id] for conn_id in sorted(found)]


# --- errors without secrets ----------------------------------------------------------------------------


def secrets_of(conn: PostageConnection) -> list[str]:
    """The values of a connection that must never be shown: the password and every extra that is a secret
    (the service's ``secret_extras``, password fields of its form, and names that say so)."""
    values = [conn.password] if conn.password else []
    try:
        service = registry.service_for(conn.conn_type, conn.conn_id)
        secret_names = set(service.secret_extras)
        secret_names |= {
            name for name, spec in service.conn_fields.items() if spec.get("schema", {}).get("format") == "password"
        }
    except PostageError:
        secret_names = set()
    for name, value in conn.extra.items():
        bare = name.rsplit("__", 1)[-1].lower()
        secret = bare in secret_names or any(
            word in bare for word in ("secret", "password", "cvv", "card_number", "token")
        )
        if secret and value not in (None, ""):
            values.append(str(value))
    return values


def scrub(message: str, secrets: Iterable[str]) -> str:
    """The message with every secret value replaced, longest first, and cut to a readable length."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        message = message.replace(secret, "***")
    if len(message) > _MAX_ERROR_CHARS:
        message = message[: _MAX_ERROR_CHARS - 1] + "…"
    return message


def describe_error(error: BaseException, secrets: Iterable[str]) -> str:
    text = str(error) if isinstance(error, PostageError) else f"{type(error).__name__}: {error}"
    return scrub(text or type(error).__name__, secrets)


# --- the cache ---------------------------------------------------------------------------------------


@dataclass
class Reading:
    """The last read of one account: its balances or the error, and when."""

    balances: list[Balance] = field(default_factory=list)
    error: str | None = None
    at: dt.datetime | None = None
    monotonic: float = float("-inf")


class BalanceCache:
    """Balances per account, read at most once per ``refresh_seconds`` (viewers asking meanwhile, or while
    a read is under way, get that read), with the last ``history_points`` reads of each account kept for
    the chart."""

    def __init__(
        self,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        history_points: int = DEFAULT_HISTORY_POINTS,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], dt.datetime] = utc_now,
        max_workers: int = 8,
    ) -> None:
        self.refresh_seconds = refresh_seconds
        self.history_points = history_points
        self._clock = clock
        self._wall_clock = wall_clock
        self._readings: dict[str, Reading] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._history: dict[tuple[str, str], deque[dict[str, str]]] = {}
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="postage-page")
        self.reads = 0  # reads sent to the services, for tests and the curious

    def _lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def get(self, key: str, read: Callable[[], list[Balance]], secrets: Sequence[str] = ()) -> Reading:
        """The account's reading, read now only when the last one is older than the refresh interval."""
        with self._lock_for(key):
            reading = self._readings.get(key)
            if reading is not None and self._clock() - reading.monotonic < self.refresh_seconds:
                return reading
            self.reads += 1
            try:
                reading = Reading(balances=read(), at=self._wall_clock(), monotonic=self._clock())
            except Exception as error:  # every failure is the row's, never the page's
                reading = Reading(error=describe_error(error, secrets), at=self._wall_clock(), monotonic=self._clock())
            self._readings[key] = reading
            self._remember(reading.balances)
            return reading

    def get_many(self, requests: Sequence[tuple[str, Callable[[], list[Balance]], Sequence[str]]]) -> list[Reading]:
        """Several accounts at once: the stale ones are read in parallel."""
        futures = [self._pool.submit(self.get, key, read, secrets) for key, read, secrets in requests]
        return [future.result() for future in futures]

    def _remember(self, balances: Iterable[Balance]) -> None:
        with self._guard:
            for balance in balances:
                points = self._history.setdefault(
                    (balance.conn_id, balance.account_type), deque(maxlen=self.history_points)
                )
                points.append(
                    {"at": balance.as_of.isoformat(), "available": format_money(balance.available), "source": "page"}
                )

    def history(self) -> dict[tuple[str, str], list[dict[str, str]]]:
        """The balances this process read, per (connection id, account type), oldest first."""
        with self._guard:
            return {key: list(points) for key, points in self._history.items()}

    def next_refresh(self, reading: Reading) -> dt.datetime | None:
        if reading.at is None:
            return None
        return reading.at + dt.timedelta(seconds=self.refresh_seconds)


# --- one connection's row --------------------------------------------------------------------------------


ReadRequest = tuple[str, Callable[[], list[Balance]], list[str]]
#: One hook per connection, kept while its fields stay the same: its HTTP session (and token) is reused,
#: and the connection's warnings (deprecated extras, plain http) are logged once, not on every look.
_PREPARED: dict[str, tuple[str, ReadRequest]] = {}
_PREPARED_LOCK = threading.Lock()


def _fingerprint(conn: PostageConnection) -> str:
    fields = [conn.conn_type, conn.login, conn.password, conn.host, conn.port, conn.schema, dict(conn.extra)]
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def read_request(conn: PostageConnection) -> ReadRequest:
    """The cache key (the service's secret-free account key), the read and the secrets to scrub for one
    connection. A connection the service refuses (a missing field) becomes a read that raises."""
    fingerprint = _fingerprint(conn)
    with _PREPARED_LOCK:
        known = _PREPARED.get(conn.conn_id)
        if known is None or known[0] != fingerprint:
            known = _PREPARED[conn.conn_id] = (fingerprint, _prepare(conn))
    return known[1]


def _prepare(conn: PostageConnection) -> ReadRequest:
    from airflow_provider_postage._masking import mask_all, secrets_to_mask
    from airflow_provider_postage.hooks.postage import hook_class
    from airflow_provider_postage.services.base import ConnectionFields

    secrets = secrets_of(conn)
    try:
        service = registry.service_for(conn.conn_type, conn.conn_id)
        hook = hook_class(service)(conn.conn_id, timeout=READ_TIMEOUT, max_attempts=READ_ATTEMPTS)
        mask_all(secrets_to_mask(conn.password, dict(conn.extra), service.secret_extras))
        hook.use_connection(ConnectionFields(conn.login, conn.password, conn.host, conn.extra, conn.port, conn.schema))
        key = f"{conn.conn_type}:{service.account_key(hook.settings)}"
    except Exception as error:
        problem = error

        def refuse() -> list[Balance]:
            raise problem

        return f"invalid:{conn.conn_id}:{_fingerprint(conn)}", refuse, secrets

    def read() -> list[Balance]:
        return [replace(balance, conn_id=conn.conn_id) for balance in hook.get_balances()]

    return key, read, secrets


def connection_row(conn: PostageConnection, reading: Reading, cache: BalanceCache) -> dict[str, Any]:
    """What the page shows of one connection: JSON-safe, no secret."""
    try:
        service = registry.service_for(conn.conn_type, conn.conn_id)
        provider, main = service.hook_name, service.main_account_type
    except PostageError:
        provider, main = conn.conn_type, None
    next_refresh = cache.next_refresh(reading)
    return {
        "conn_id": conn.conn_id,
        "conn_type": conn.conn_type,
        "provider": provider,
        "main_account_type": main,
        "source": conn.source,
        # Connections to one account share its reading: each shows it under its own id.
        "accounts": [{**balance.to_dict(), "conn_id": conn.conn_id} for balance in reading.balances],
        "error": reading.error,
        "read_at": reading.at.isoformat() if reading.at else None,
        "next_refresh_at": next_refresh.isoformat() if next_refresh else None,
    }
