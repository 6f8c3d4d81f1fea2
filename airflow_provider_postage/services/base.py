"""What the provider must know of a postage service, in one place per connection type.

A service is a :class:`PostageService`: its facts (connection type, main account, purchase step and
minimum, whether purchases carry an idempotency key, which extras are secret, the connection form) and
its flows (``protocol.flow``), which the sync and async drivers run. Hooks, operators, the sensor and the
triggers ask the service, never a provider's name; a new service is one module that registers one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, ClassVar, NamedTuple, Protocol
from urllib.parse import urlsplit

import pendulum

from airflow_provider_postage.protocol.errors import PostageConfigError
from airflow_provider_postage.protocol.flow import Flow
from airflow_provider_postage.protocol.records import Balance, PurchaseResult

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return pendulum.now("UTC")


class ConnectionFields(NamedTuple):
    """The parts of an Airflow connection a service reads, however the connection was stored."""

    login: str | None
    password: str | None
    host: str | None
    extra: Mapping[str, Any]
    port: int | None = None
    schema: str | None = None


class ServiceSettings(Protocol):
    """What the drivers and hooks need of any service's validated settings."""

    @property
    def base_url(self) -> str: ...

    @property
    def verify(self) -> bool | str: ...


class PostageService(ABC):
    """One postage API behind one Airflow connection type.

    :cvar conn_type: the Airflow connection type, e.g. ``click2mail``.
    :cvar provider: the name in balance and purchase records.
    :cvar hook_name: the name shown in Airflow's connection form.
    :cvar main_account_type: the account a sensor watches and a purchase fills when none is named.
    :cvar purchase_step: purchases are whole multiples of this.
    :cvar minimum_purchase: and at least this.
    :cvar idempotent_purchases: True when a purchase carries an idempotency key, so that resending the
        same purchase with the same key can never charge twice (Pitney Bowes' transaction id).
    :cvar secret_extras: extras registered with Airflow's secret masker as soon as a connection is read.
    :cvar conn_fields: the connection form's extra fields (``conn-fields`` of the provider info).
    :cvar ui_behaviour: the form's hidden fields, relabelling and placeholders.
    """

    conn_type: ClassVar[str]
    provider: ClassVar[str]
    hook_name: ClassVar[str]
    main_account_type: ClassVar[str]
    purchase_step: ClassVar[Decimal]
    minimum_purchase: ClassVar[Decimal]
    idempotent_purchases: ClassVar[bool]
    secret_extras: ClassVar[tuple[str, ...]] = ()
    conn_fields: ClassVar[dict[str, dict[str, Any]]] = {}
    ui_behaviour: ClassVar[dict[str, Any]] = {"hidden-fields": [], "relabeling": {}, "placeholders": {}}

    @abstractmethod
    def settings(self, fields: ConnectionFields) -> Any:
        """The connection, validated: a PostageConfigError names the field that is wrong."""

    def warnings(self, settings: Any) -> list[str]:
        """What a connection should change although it works (deprecated extras); the hook warns."""
        return []

    def for_account(self, settings: Any, account: str) -> Any:
        """The settings aimed at another account reachable with the same credentials (Pitney Bowes: a
        merchant's postal reporting number), so one connection can serve many accounts."""
        raise PostageConfigError(
            "postal_reporting_number", f"{self.hook_name} connections hold one account: use one connection per account"
        )

    @abstractmethod
    def validate_amount(self, amount: object) -> Decimal:
        """The amount as the API will take it, or a PostageValidationError; sends nothing."""

    def validate_purchase(self, settings: Any, today: dt.date) -> None:  # noqa: B027 - most need nothing more
        """Everything else a purchase needs from the connection (a card, ids), checked before sending."""

    @abstractmethod
    def balances(self, settings: Any, conn_id: str, clock: Clock = utc_now) -> Flow[list[Balance]]:
        """Every account behind the connection."""

    @abstractmethod
    def purchase(
        self,
        settings: Any,
        conn_id: str,
        amount: Decimal,
        *,
        transaction_id: str,
        before: Balance | None,
        clock: Clock = utc_now,
    ) -> Flow[PurchaseResult]:
        """One purchase of ``amount``, whose result is what the API confirmed. ``transaction_id`` is the
        idempotency key where the service has one; ``before`` spares a read where the service needs
        the balance to confirm a purchase."""

    def account_id(self, settings: Any) -> str:
        """The account in words a person recognises, holding no secret (ledger and receipt names)."""
        return urlsplit(settings.base_url).netloc

    def account_key(self, settings: Any) -> str:
        """Identifies the account (for sharing reads) without holding a secret."""
        fields = (type(self).__name__, settings.base_url, repr(sorted(vars(settings).items())))
        return hashlib.sha256("\0".join(fields).encode()).hexdigest()
