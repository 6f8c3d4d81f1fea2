"""The one hook interface over every postage service: read balances (sync and async), buy credit, test
the connection. A hook is a connection plus a service from the registry; the service's flows do the
talking, run by the sync driver (requests) or the async one (aiohttp)."""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from abc import ABC
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.exceptions import AirflowProviderDeprecationWarning
from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_postage import _conditions, _drivers, _shared_reads
from airflow_provider_postage._funding import FundingLimits
from airflow_provider_postage._masking import mask_all, parse_extra, secrets_to_mask
from airflow_provider_postage._transport import DEFAULT_TIMEOUT, asend, new_session, send
from airflow_provider_postage.hooks._forms import legacy_form_widgets, legacy_ui_behaviour
from airflow_provider_postage.protocol.errors import PostageConfigError, PostageError
from airflow_provider_postage.protocol.flow import purchase_key
from airflow_provider_postage.protocol.http import HttpRequest, HttpResponse, is_plain_http
from airflow_provider_postage.protocol.money import format_money
from airflow_provider_postage.protocol.records import Balance, PurchaseResult
from airflow_provider_postage.services.base import ConnectionFields, PostageService, utc_now

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)


class PostageHook(BaseHook, ABC):
    """What every postage account can do, whichever service is behind the connection.

    Subclasses name their service (``service = ...``); the rest (connection type, form, account facts)
    comes from it. Use :func:`~airflow_provider_postage.hooks.postage.get_postage_hook` to get the right
    one for a connection id.

    :param postage_conn_id: an Airflow connection of a registered postage type.
    :param timeout: (connect, read) seconds for every request; their sum is its total deadline.
    :param max_attempts: tries of a read (balance, token) through transient failures, with exponential
        backoff. A purchase is sent once: it is resent only when it surely never left this machine.
    :param backoff_initial: seconds before the second try; doubling from there.
    :param backoff_max: the longest wait between tries.
    :param account: another account reachable with the connection's credentials (Pitney Bowes: a
        merchant's postal reporting number), instead of the connection's own.
    """

    conn_name_attr = "postage_conn_id"
    service: ClassVar[PostageService]
    conn_type: ClassVar[str]
    hook_name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        service = cls.__dict__.get("service")
        if service is not None:
            cls.conn_type = service.conn_type
            cls.hook_name = service.hook_name
            cls.default_conn_name = f"{service.conn_type}_default"  # type: ignore[attr-defined]
            # Airflow 2.11 reads the form only from methods in the hook class's own __dict__.
            for name in ("get_connection_form_widgets", "get_ui_field_behaviour"):
                setattr(cls, name, classmethod(PostageHook.__dict__[name].__func__))

    def __new__(cls, *args: Any, **kwargs: Any) -> PostageHook:
        if not isinstance(getattr(cls, "service", None), PostageService):
            raise TypeError(f"{cls.__name__} is abstract (it names no service): use get_postage_hook()")
        return super().__new__(cls)

    def __init__(
        self,
        postage_conn_id: str,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        max_attempts: int = 4,
        backoff_initial: float = 0.5,
        backoff_max: float = 8.0,
        account: str | None = None,
    ) -> None:
        super().__init__()
        self.postage_conn_id = postage_conn_id
        self.account = account
        self.timeout = timeout
        self.policy = _drivers.RetryPolicy(max_attempts, backoff_initial, backoff_max)
        self._session: requests.Session | None = None
        self._settings: Any = None
        self._warned_insecure = False

    # --- what the service says ----------------------------------------------------------------------

    @property
    def provider(self) -> str:
        return self.service.provider

    @property
    def main_account_type(self) -> str:
        return self.service.main_account_type

    @property
    def purchase_step(self) -> Decimal:
        return self.service.purchase_step

    @property
    def minimum_purchase(self) -> Decimal:
        return self.service.minimum_purchase

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Airflow 2.11's form; 3.x reads ``conn-fields`` from the provider info."""
        return legacy_form_widgets(cls.service.conn_fields)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return legacy_ui_behaviour(cls.service.ui_behaviour)

    # --- the connection -----------------------------------------------------------------------------

    @property
    def settings(self) -> Any:
        """The connection, read and validated once; its secrets go to the masker at once."""
        if self._settings is None:
            conn = self.get_connection(self.postage_conn_id)
            if conn.conn_type not in (None, "", self.conn_type):
                raise PostageConfigError(
                    "conn_type",
                    f"connection {self.postage_conn_id!r} is of type {conn.conn_type!r}, not {self.conn_type!r}",
                )
            mask_all(secrets_to_mask(conn.password, {}, ()))  # before the extra: a broken one raises
            extra = parse_extra(conn.extra)
            mask_all(secrets_to_mask(None, extra, self.service.secret_extras))
            self.use_connection(ConnectionFields(conn.login, conn.password, conn.host, extra, conn.port, conn.schema))
        return self._settings

    def use_connection(self, fields: ConnectionFields) -> None:
        """Take a connection already read, its secrets already masked (the triggers read and mask theirs
        without blocking the loop: :func:`~airflow_provider_postage.hooks.postage.aget_postage_hook`)."""
        settings = self.service.settings(fields)
        if self.account:
            settings = self.service.for_account(settings, self.account)
        if is_plain_http(settings.base_url):
            log.warning(
                "%s: plain http:// to %s; credentials travel in clear (only for a local sandbox or staging)",
                self.postage_conn_id,
                settings.base_url,
            )
        for problem in self.service.warnings(settings):
            message = f"connection {self.postage_conn_id!r}: {problem}"
            warnings.warn(message, AirflowProviderDeprecationWarning, stacklevel=3)
            log.warning("%s", message)
        self._settings = settings
        self.funding_limits = FundingLimits.from_extra(fields.extra)

    @property
    def account_id(self) -> str:
        """The account this hook reaches, in words and without a secret (e.g. ``demo-user@host``)."""
        return self.service.account_id(self.settings)

    # --- reads -------------------------------------------------------------------------------------

    def get_balances(self) -> list[Balance]:
        """Every account behind the connection, as of now."""
        return self._run(self.service.balances(self.settings, self.postage_conn_id))

    def get_balance(self, account_type: str | None = None) -> Balance:
        """The balance of one account (the main one by default)."""
        return _conditions.pick(self.get_balances(), account_type, self.main_account_type)

    async def aget_balances(self, max_age: float = 0.0) -> list[Balance]:
        """The same on the running event loop (triggers make their hook with ``max_attempts=1``: their
        poll loop is the retry). A read of the same account in this loop is shared while it is in flight
        or younger than ``max_age`` seconds (a trigger passes its poll interval)."""
        settings = self.settings
        key = self.service.account_key(settings)

        def read() -> Any:
            return self._arun(self.service.balances(settings, self.postage_conn_id))

        url = _shared_reads.redis_url() if max_age > 0 else None
        if url is not None:  # one read per account per interval across every triggerer of the cluster
            digest = hashlib.sha256(key.encode()).hexdigest()
            local = read

            def read() -> Any:
                return _shared_reads.read_through(url, digest, max_age, local)

        balances: list[Balance] = await _drivers.coalesced(key, read, max_age)
        if balances and balances[0].conn_id != self.postage_conn_id:
            from dataclasses import replace

            balances = [replace(balance, conn_id=self.postage_conn_id) for balance in balances]
        return balances

    async def aget_balance(self, account_type: str | None = None, max_age: float = 0.0) -> Balance:
        return _conditions.pick(await self.aget_balances(max_age), account_type, self.main_account_type)

    def test_connection(self) -> tuple[bool, str]:
        try:
            balances = self.get_balances()
        except PostageError as error:
            return False, str(error)
        summary = ", ".join(f"{b.account_type} {format_money(b.available)} {b.currency}" for b in balances)
        return True, f"Connected to {self.hook_name}: {summary}"

    # --- purchases ---------------------------------------------------------------------------------

    def validate_amount(self, amount: object) -> Decimal:
        """The amount as the API will accept it, or a PostageValidationError; sends nothing."""
        return self.service.validate_amount(amount)

    def validate_purchase(self, amount: object | None) -> Decimal:
        """Everything a purchase needs, checked without sending anything: the connection's purchase
        set-up and, unless None, the amount (returned as the API will take it)."""
        self.service.validate_purchase(self.settings, utc_now().date())
        return self.validate_amount(amount) if amount is not None else Decimal(0)

    def purchase_credit(
        self, amount: object, *, transaction_id: str | None = None, balance_before: Balance | None = None
    ) -> PurchaseResult:
        """Buy ``amount`` once; the result is what the API confirmed.

        ``transaction_id`` is the idempotency key where the service has one (send the same one for every
        retry of one purchase; without one a random id makes this call alone safe, not a caller's retry).
        ``balance_before`` spares a read where the service needs the balance to confirm a purchase."""
        value = self.validate_amount(amount)
        self.service.validate_purchase(self.settings, utc_now().date())
        if transaction_id is None:
            import uuid

            transaction_id = purchase_key(uuid.uuid4())
        flow = self.service.purchase(
            self.settings, self.postage_conn_id, value, transaction_id=transaction_id, before=balance_before
        )
        return self._run(flow)

    # --- plumbing ------------------------------------------------------------------------------------

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = new_session()
        return self._session

    def _verify(self) -> bool | str:
        verify: bool | str = self.settings.verify
        if verify is False and not self._warned_insecure:
            log.warning("%s: TLS certificate verification is off (verify_ssl: false)", self.postage_conn_id)
            self._warned_insecure = True
        return verify

    def _send(self, request: HttpRequest) -> HttpResponse:
        return send(self.session, request, timeout=self.timeout, verify=self._verify())

    def _run(self, flow: Any) -> Any:
        exchange = _drivers.with_retries(self._send, self.policy, log, self.postage_conn_id, time.sleep)
        return _drivers.run(flow, exchange)

    async def _arun(self, flow: Any) -> Any:
        client = _drivers.shared_client(self._verify())

        async def exchange(request: HttpRequest) -> HttpResponse:
            return await asend(client, request, timeout=self.timeout)

        return await _drivers.arun(flow, _drivers.with_async_retries(exchange, self.policy, log, self.postage_conn_id))
