"""Click2Mail prepaid credit as a service: HTTP Basic auth, XML, purchases paid by the connection's card.

Click2Mail has no idempotency key, so a purchase whose reply does not confirm it is settled by the
balance: risen by the amount, it went through; otherwise the outcome is unknown and nothing is resent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from decimal import Decimal

from airflow_provider_postage import get_provider_info as _info
from airflow_provider_postage.protocol import click2mail as wire
from airflow_provider_postage.protocol.errors import PostageError, PostageTransportError, PurchaseOutcomeUnknownError
from airflow_provider_postage.protocol.flow import Flow, send
from airflow_provider_postage.protocol.http import HttpResponse
from airflow_provider_postage.protocol.money import format_money
from airflow_provider_postage.protocol.records import CREDIT, Balance, PurchaseResult
from airflow_provider_postage.registry import register
from airflow_provider_postage.services.base import Clock, ConnectionFields, PostageService, utc_now

log = logging.getLogger(__name__)


class Click2MailService(PostageService):
    """Click2Mail ("MOL Pro") credit: ``GET /credit``, ``POST /credit/purchase``."""

    conn_type = "click2mail"
    provider = wire.PROVIDER
    hook_name = "Click2Mail"
    main_account_type = CREDIT
    purchase_step = Decimal("0.01")
    minimum_purchase = wire.MINIMUM_PURCHASE
    idempotent_purchases = False
    secret_extras = wire.SECRET_EXTRAS
    conn_fields = _info.CLICK2MAIL_FIELDS
    ui_behaviour = _info.CLICK2MAIL_UI

    def settings(self, fields: ConnectionFields) -> wire.Click2MailSettings:
        return wire.settings_from_connection(
            fields.login, fields.password, fields.host, fields.extra, port=fields.port, schema=fields.schema
        )

    def warnings(self, settings: wire.Click2MailSettings) -> list[str]:
        renamed = settings.deprecated_extras
        if not renamed:
            return []
        new = ", ".join(wire.RENAMED_EXTRAS[name] for name in renamed)
        return [
            f"the extras {', '.join(renamed)} are deprecated because Airflow shows them in clear; rename them to {new}"
        ]

    def validate_amount(self, amount: object) -> Decimal:
        return wire.validate_purchase_amount(amount)

    def validate_purchase(self, settings: wire.Click2MailSettings, today: dt.date) -> None:
        wire.validate_billing(settings, today=today)

    def account_id(self, settings: wire.Click2MailSettings) -> str:
        return f"{settings.username}@{super().account_id(settings)}"

    def account_key(self, settings: wire.Click2MailSettings) -> str:
        secret = hashlib.sha256(f"{settings.username}\0{settings.password}".encode()).hexdigest()
        return f"{settings.base_url}:{secret}"

    def balances(self, settings: wire.Click2MailSettings, conn_id: str, clock: Clock = utc_now) -> Flow[list[Balance]]:
        reply = yield from send(wire.build_balance_request(settings))
        return [wire.parse_balance_response(reply, conn_id=conn_id, received_at=clock())]

    def purchase(
        self,
        settings: wire.Click2MailSettings,
        conn_id: str,
        amount: Decimal,
        *,
        transaction_id: str,
        before: Balance | None,
        clock: Clock = utc_now,
    ) -> Flow[PurchaseResult]:
        billing = wire.validate_billing(settings, today=clock().date())
        if before is None:
            before = (yield from self.balances(settings, conn_id, clock))[0]
        reply: HttpResponse | None = None
        try:
            reply = yield from send(wire.build_purchase_request(settings, amount, billing))
        except PostageTransportError as error:
            if not error.request_sent:
                raise  # it never left this machine: nothing was charged
        if reply is not None:
            if 400 <= reply.status < 500:
                raise wire.error_from_response(reply)  # refused: nothing was charged
            if 200 <= reply.status < 300:
                ack = wire.parse_purchase_response(reply)  # a status-9 reply raises here
                if ack.confirmed:
                    return wire.purchase_result(conn_id, amount, ack.description)
        return (yield from self._reconcile(settings, conn_id, amount, before, reply, clock))

    def _reconcile(
        self,
        settings: wire.Click2MailSettings,
        conn_id: str,
        amount: Decimal,
        before: Balance,
        reply: HttpResponse | None,
        clock: Clock,
    ) -> Flow[PurchaseResult]:
        what = "no reply" if reply is None else f"HTTP {reply.status} without a confirmation"
        money = format_money(amount)
        try:
            after = (yield from self.balances(settings, conn_id, clock))[0]
        except PostageError as error:
            raise PurchaseOutcomeUnknownError(
                f"Click2Mail purchase of {money} on {conn_id!r}: {what}, and the balance could not be read "
                f"afterwards ({error}). Check the account before buying again."
            ) from None
        if after.available - before.available >= amount:
            log.info("Click2Mail purchase on %s confirmed by the balance after %s", conn_id, what)
            return wire.purchase_result(conn_id, amount, "Confirmed by balance")
        raise PurchaseOutcomeUnknownError(
            f"Click2Mail purchase of {money} on {conn_id!r}: {what}; balance {format_money(before.available)} "
            f"before, {format_money(after.available)} after. It may still arrive: check the account before "
            "buying again."
        )


CLICK2MAIL = register(Click2MailService())
