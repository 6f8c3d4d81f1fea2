"""Hooks for Click2Mail and Pitney Bowes behind one balance/purchase interface.

Operators and sensors call :func:`get_postage_hook` with a connection id and never care which API is
behind it. The wire protocol lives in :mod:`airflow_provider_postage.protocol`; this module only does
the synchronous I/O around it (requests, retries, the shared token cache, secret masking).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
import warnings
from abc import abstractmethod
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeVar

import pendulum
from airflow.exceptions import AirflowProviderDeprecationWarning
from airflow.providers.common.compat.sdk import BaseHook, mask_secret
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from airflow_provider_postage import get_provider_info as _info
from airflow_provider_postage._tokens import TOKENS
from airflow_provider_postage._transport import DEFAULT_TIMEOUT, new_session, send
from airflow_provider_postage.protocol import click2mail as c2m
from airflow_provider_postage.protocol import pitney_bowes as pb
from airflow_provider_postage.protocol.errors import (
    PostageAPIError,
    PostageAuthError,
    PostageConfigError,
    PostageError,
    PostageTransportError,
    PurchaseOutcomeUnknownError,
)
from airflow_provider_postage.protocol.http import HttpRequest, HttpResponse, is_plain_http
from airflow_provider_postage.protocol.money import format_money
from airflow_provider_postage.protocol.records import CREDIT, POSTAGE, Balance, PurchaseResult

if TYPE_CHECKING:
    import requests
    from airflow.providers.common.compat.sdk import Connection

__all__ = ["Click2MailHook", "PitneyBowesHook", "PostageHook", "get_postage_hook"]

log = logging.getLogger(__name__)
T = TypeVar("T")
S = TypeVar("S", c2m.Click2MailSettings, pb.PitneyBowesSettings)


class _ConnectionFields(NamedTuple):
    login: str | None
    password: str | None
    host: str | None
    extra: dict[str, Any]
    port: int | None
    schema: str | None


def _is_transient(error: BaseException) -> bool:
    return isinstance(error, (PostageTransportError, PostageAPIError)) and bool(error.transient)


def _not_sent(error: BaseException) -> bool:
    return isinstance(error, PostageTransportError) and not error.request_sent


def _legacy_form_widgets(fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Airflow 2.11's wtforms widgets, generated from the declarative ``conn-fields``."""
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import BooleanField, PasswordField, StringField

    widgets: dict[str, Any] = {}
    for name, spec in fields.items():
        schema = spec["schema"]
        kwargs: dict[str, Any] = {"description": spec.get("description")}
        if "default" in schema:
            kwargs["default"] = schema["default"]
        if "boolean" in schema["type"]:
            widgets[name] = BooleanField(lazy_gettext(spec["label"]), **kwargs)
        elif schema.get("format") == "password":
            widgets[name] = PasswordField(lazy_gettext(spec["label"]), widget=BS3PasswordFieldWidget(), **kwargs)
        else:
            widgets[name] = StringField(lazy_gettext(spec["label"]), widget=BS3TextFieldWidget(), **kwargs)
    return widgets


def _legacy_ui_behaviour(ui: dict[str, Any]) -> dict[str, Any]:
    return {
        "hidden_fields": list(ui["hidden-fields"]),
        "relabeling": dict(ui["relabeling"]),
        "placeholders": dict(ui["placeholders"]),
    }


class PostageHook(BaseHook):
    """What every postage account can do: read balances, buy credit, test the connection.

    :param postage_conn_id: an Airflow connection of type ``click2mail`` or ``pitney_bowes``.
    :param timeout: (connect, read) seconds for every request.
    :param max_attempts: tries of a read (balance, token) through transient failures, with exponential
        backoff. A purchase is sent once: it is resent only when it surely never left this machine.
    """

    conn_name_attr = "postage_conn_id"
    conn_type: ClassVar[str]
    hook_name: ClassVar[str]
    #: The account a sensor watches and a purchase fills when none is named.
    main_account_type: ClassVar[str]
    provider: ClassVar[str]
    currency: ClassVar[str] = "USD"
    #: Purchases are whole multiples of this step and at least the minimum.
    purchase_step: ClassVar[Decimal]
    minimum_purchase: ClassVar[Decimal]

    def __init__(
        self,
        postage_conn_id: str,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        max_attempts: int = 4,
        backoff_initial: float = 0.5,
        backoff_max: float = 8.0,
    ) -> None:
        super().__init__()
        self.postage_conn_id = postage_conn_id
        self.timeout = timeout
        self.max_attempts = max_attempts
        self._backoff = (backoff_initial, backoff_max)
        self._session: requests.Session | None = None
        self._warned_insecure = False

    # --- public interface -------------------------------------------------------------------------

    @abstractmethod
    def get_balances(self) -> list[Balance]:
        """Every account behind the connection, as of now."""

    @abstractmethod
    def validate_amount(self, amount: object) -> Decimal:
        """The amount as the API will accept it, or a PostageValidationError; sends nothing."""

    def validate_purchase(self, amount: object | None) -> Decimal:
        """Everything a purchase needs, checked without sending anything: the connection's purchase
        set-up and, unless None, the amount (returned as the API will take it)."""
        self.settings  # noqa: B018 - reading the settings validates the connection
        return self.validate_amount(amount) if amount is not None else Decimal(0)

    @abstractmethod
    def purchase_credit(
        self, amount: object, *, transaction_id: str | None = None, balance_before: Balance | None = None
    ) -> PurchaseResult:
        """Buy credit (Click2Mail) or refill the postage account (Pitney Bowes), once.

        ``transaction_id`` makes retries of one refill idempotent where the API supports it;
        ``balance_before`` spares a read where the API needs one to confirm a purchase."""

    @property
    @abstractmethod
    def settings(self) -> Any:
        """The connection, read and validated."""

    def get_balance(self, account_type: str | None = None) -> Balance:
        """The balance of one account (the main one by default)."""
        wanted = account_type or self.main_account_type
        for balance in self.get_balances():
            if balance.account_type == wanted:
                return balance
        raise PostageConfigError("account_type", f"connection {self.postage_conn_id!r} has no {wanted} account")

    def test_connection(self) -> tuple[bool, str]:
        try:
            balances = self.get_balances()
        except PostageError as error:
            return False, str(error)
        summary = ", ".join(f"{b.account_type} {format_money(b.available)} {b.currency}" for b in balances)
        return True, f"Connected to {self.hook_name}: {summary}"

    # --- plumbing -----------------------------------------------------------------------------------

    def _connection_fields(self) -> _ConnectionFields:
        conn: Connection = self.get_connection(self.postage_conn_id)
        if conn.conn_type not in (None, "", self.conn_type):
            raise PostageConfigError(
                "conn_type",
                f"connection {self.postage_conn_id!r} is of type {conn.conn_type!r}, not {self.conn_type!r}",
            )
        if conn.password:
            mask_secret(conn.password)
        return _ConnectionFields(conn.login, conn.password, conn.host, dict(conn.extra_dejson), conn.port, conn.schema)

    def _checked(self, settings: S) -> S:
        """Warn once about what a connection should change: plain HTTP, extras under deprecated names."""
        if is_plain_http(settings.base_url):
            log.warning(
                "%s: plain http:// to %s; credentials travel in clear (only for a local sandbox or staging)",
                self.postage_conn_id,
                settings.base_url,
            )
        renamed = getattr(settings, "deprecated_extras", ())
        if renamed:
            message = (
                f"connection {self.postage_conn_id!r}: the extras {', '.join(renamed)} are deprecated because "
                f"Airflow shows them in clear; rename them to {', '.join(c2m.RENAMED_EXTRAS[n] for n in renamed)}"
            )
            warnings.warn(message, AirflowProviderDeprecationWarning, stacklevel=3)
            log.warning("%s", message)
        return settings

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = new_session()
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _send(self, request: HttpRequest) -> HttpResponse:
        verify = self.settings.verify
        if not verify and not self._warned_insecure:
            log.warning("%s: TLS certificate verification is off (verify_ssl: false)", self.postage_conn_id)
            self._warned_insecure = True
        return send(self.session, request, timeout=self.timeout, verify=verify)

    def _with_retries(self, call: Callable[[], T], retry_on: Callable[[BaseException], bool]) -> T:
        """Run ``call``; after a failure ``retry_on`` accepts, try again with exponential backoff and
        jitter, ``max_attempts`` tries in all. The first try runs bare: the usual, successful read pays
        nothing for the retry machinery, which tenacity provides only once it is needed."""
        try:
            return call()
        except Exception as error:
            if self.max_attempts < 2 or not retry_on(error):
                raise
            log.warning("%s: attempt 1 failed (%s); retrying", self.postage_conn_id, error)
        initial, maximum = self._backoff
        time.sleep(min(initial, maximum) + random.uniform(0, initial))
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts - 1),
            wait=wait_exponential(multiplier=2 * initial, max=maximum) + wait_random(0, initial),
            retry=retry_if_exception(retry_on),
            reraise=True,
            before_sleep=lambda state: log.warning(
                "%s: attempt %d failed (%s); retrying",
                self.postage_conn_id,
                state.attempt_number + 1,
                state.outcome.exception() if state.outcome else "?",
            ),
        )
        return retrying(call)

    def _read(self, call: Callable[[], T]) -> T:
        """Run a read-only call, retrying transient failures with bounded exponential backoff."""
        return self._with_retries(call, _is_transient)

    def _send_money(self, request: HttpRequest) -> HttpResponse:
        """Send a purchase once; resend only if it surely never reached the server."""
        try:
            return self._with_retries(lambda: self._send(request), _not_sent)
        except PostageTransportError as error:
            if error.request_sent:
                raise PurchaseOutcomeUnknownError(
                    f"{self.provider} purchase on {self.postage_conn_id!r}: {error}; it may have gone through"
                ) from None
            raise

    @staticmethod
    def _now() -> dt.datetime:
        return pendulum.now("UTC")


class Click2MailHook(PostageHook):
    """Click2Mail prepaid credit: HTTP Basic auth, XML replies, purchases paid by the connection's card."""

    conn_type = "click2mail"
    default_conn_name = "click2mail_default"
    hook_name = "Click2Mail"
    provider = c2m.PROVIDER
    main_account_type = CREDIT
    purchase_step = Decimal("0.01")
    minimum_purchase = c2m.MINIMUM_PURCHASE

    _settings: c2m.Click2MailSettings | None = None

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        return _legacy_form_widgets(_info.CLICK2MAIL_FIELDS)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return _legacy_ui_behaviour(_info.CLICK2MAIL_UI)

    @property
    def settings(self) -> c2m.Click2MailSettings:
        if self._settings is None:
            fields = self._connection_fields()
            for name in c2m.SECRET_EXTRAS:
                value = fields.extra.get(name) or fields.extra.get(f"extra__click2mail__{name}")
                if value:
                    mask_secret(str(value))
            self._settings = self._checked(
                c2m.settings_from_connection(
                    fields.login, fields.password, fields.host, fields.extra, port=fields.port, schema=fields.schema
                )
            )
        return self._settings

    def _balance(self) -> Balance:
        request = c2m.build_balance_request(self.settings)
        return self._read(
            lambda: c2m.parse_balance_response(
                self._send(request), conn_id=self.postage_conn_id, received_at=self._now()
            )
        )

    def get_balances(self) -> list[Balance]:
        return [self._balance()]

    def validate_amount(self, amount: object) -> Decimal:
        return c2m.validate_purchase_amount(amount)

    def validate_billing(self) -> c2m.BillingProfile:
        return c2m.validate_billing(self.settings, today=self._now().date())

    def validate_purchase(self, amount: object | None) -> Decimal:
        self.validate_billing()
        return super().validate_purchase(amount)

    def purchase_credit(
        self, amount: object, *, transaction_id: str | None = None, balance_before: Balance | None = None
    ) -> PurchaseResult:
        """Buy credit with the connection's card. Click2Mail has no idempotency key (``transaction_id`` is
        ignored): when its reply does not confirm the purchase, the balance decides, and when the balance
        cannot tell, this raises :class:`PurchaseOutcomeUnknownError` instead of buying again."""
        value = self.validate_amount(amount)
        billing = self.validate_billing()
        before = balance_before or self._balance()
        request = c2m.build_purchase_request(self.settings, value, billing)
        ack: c2m.PurchaseAck | None = None
        try:
            reply = self._send_money(request)
        except PurchaseOutcomeUnknownError:
            reply = None
        if reply is not None:
            if 400 <= reply.status < 500:
                raise c2m.error_from_response(reply)  # refused: nothing was charged
            if 200 <= reply.status < 300:
                ack = c2m.parse_purchase_response(reply)  # a status-9 reply raises here
        if ack is not None and ack.confirmed:
            return c2m.purchase_result(self.postage_conn_id, value, ack.description)
        return self._reconcile(value, before, reply)

    def _reconcile(self, amount: Decimal, before: Balance, reply: HttpResponse | None) -> PurchaseResult:
        what = "no reply" if reply is None else f"HTTP {reply.status} without a confirmation"
        try:
            after = self._balance()
        except PostageError as error:
            raise PurchaseOutcomeUnknownError(
                f"Click2Mail purchase of {format_money(amount)} on {self.postage_conn_id!r}: {what}, and the "
                f"balance could not be read afterwards ({error}). Check the account before buying again."
            ) from None
        if after.available - before.available >= amount:
            log.info("Click2Mail purchase on %s confirmed by the balance after %s", self.postage_conn_id, what)
            return c2m.purchase_result(self.postage_conn_id, amount, "Confirmed by balance")
        raise PurchaseOutcomeUnknownError(
            f"Click2Mail purchase of {format_money(amount)} on {self.postage_conn_id!r}: {what}; balance "
            f"{format_money(before.available)} before, {format_money(after.available)} after. It may still "
            "arrive: check the account before buying again."
        )


class PitneyBowesHook(PostageHook):
    """Pitney Bowes postage account: OAuth token shared per process, JSON, idempotent refills."""

    conn_type = "pitney_bowes"
    default_conn_name = "pitney_bowes_default"
    hook_name = "Pitney Bowes"
    provider = pb.PROVIDER
    main_account_type = POSTAGE
    purchase_step = Decimal("1")
    minimum_purchase = Decimal("1")

    _settings: pb.PitneyBowesSettings | None = None

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        return _legacy_form_widgets(_info.PITNEY_BOWES_FIELDS)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return _legacy_ui_behaviour(_info.PITNEY_BOWES_UI)

    @property
    def settings(self) -> pb.PitneyBowesSettings:
        if self._settings is None:
            fields = self._connection_fields()
            self._settings = self._checked(
                pb.settings_from_connection(
                    fields.login, fields.password, fields.host, fields.extra, port=fields.port, schema=fields.schema
                )
            )
        return self._settings

    def _fetch_token(self) -> pb.Token:
        """One token request; callers retry through :meth:`_read`."""
        token = pb.parse_token_response(self._send(pb.build_token_request(self.settings)))
        mask_secret(token.access_token)
        return token

    def _token(self) -> str:
        return TOKENS.get(self.settings.credential_key, self._fetch_token)

    def _authorized(
        self, build: Callable[[str], HttpRequest], send: Callable[[HttpRequest], HttpResponse]
    ) -> HttpResponse:
        """Send with the shared token; on a 401, fetch a new token once and send once more (a 401 means
        the API refused the call before doing anything, so resending is safe even for a refill)."""
        token = self._token()
        reply = send(build(token))
        if reply.status != 401:
            return reply
        TOKENS.invalidate(self.settings.credential_key, token)
        return send(build(self._token()))

    def get_balances(self) -> list[Balance]:
        def call() -> list[Balance]:
            reply = self._authorized(lambda token: pb.build_balance_request(self.settings, token), self._send)
            return pb.parse_balance_response(reply, conn_id=self.postage_conn_id, received_at=self._now())

        return self._read(call)

    def validate_amount(self, amount: object) -> Decimal:
        return pb.validate_refill_amount(amount)

    def purchase_credit(
        self, amount: object, *, transaction_id: str | None = None, balance_before: Balance | None = None
    ) -> PurchaseResult:
        """Refill the postage account from the payment method on file (e.g. the line of credit).

        Send the same ``transaction_id`` for every retry of one refill; without one, a random id is used
        and this call alone is safe, but a caller's own retry is not."""
        value = self.validate_amount(amount)
        if transaction_id is None:
            import uuid

            transaction_id = pb.make_transaction_id(uuid.uuid4())
        transaction_id = pb.validate_transaction_id(transaction_id)
        settings = self.settings
        self._read(self._token)  # the token is a read: fetch it with retries before any money moves
        reply = self._authorized(
            lambda token: pb.build_refill_request(settings, token, value, transaction_id), self._send_money
        )
        if reply.status >= 500:
            raise PurchaseOutcomeUnknownError(
                f"Pitney Bowes refill {transaction_id} of {format_money(value)} on {self.postage_conn_id!r}: "
                f"HTTP {reply.status}; it may have gone through. Retry with the same transaction id only."
            )
        if reply.status == 401:
            raise PostageAuthError(self.provider, 401, "token refused again after a refresh")
        return pb.parse_refill_response(
            reply, conn_id=self.postage_conn_id, amount=value, transaction_id=transaction_id
        )


_HOOKS: dict[str, type[PostageHook]] = {hook.conn_type: hook for hook in (Click2MailHook, PitneyBowesHook)}


def get_postage_hook(postage_conn_id: str, **hook_kwargs: Any) -> PostageHook:
    """The hook for a connection id, chosen by the connection's type."""
    conn = BaseHook.get_connection(postage_conn_id)
    hook_class = _HOOKS.get(conn.conn_type or "")
    if hook_class is None:
        raise PostageConfigError(
            "conn_type",
            f"connection {postage_conn_id!r} has type {conn.conn_type!r}; expected one of {', '.join(_HOOKS)}",
        )
    return hook_class(postage_conn_id, **hook_kwargs)
