"""The Pitney Bowes Shipping API as a service: an OAuth token shared per process, JSON, and refills that
carry an idempotency key (``X-PB-TransactionId``), so resending the same refill with the same id is safe.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal

from airflow_provider_postage import get_provider_info as _info
from airflow_provider_postage.protocol import pitney_bowes as wire
from airflow_provider_postage.protocol.errors import (
    PostageAuthError,
    PostageTransportError,
    PurchaseOutcomeUnknownError,
)
from airflow_provider_postage.protocol.flow import Flow, Token, send, token
from airflow_provider_postage.protocol.http import HttpRequest, HttpResponse
from airflow_provider_postage.protocol.money import format_money
from airflow_provider_postage.protocol.records import POSTAGE, Balance, PurchaseResult
from airflow_provider_postage.registry import register
from airflow_provider_postage.services.base import Clock, ConnectionFields, PostageService, utc_now


class PitneyBowesService(PostageService):
    """Pitney Bowes: Get Account Balances and Refill Postage Account of one merchant."""

    conn_type = "pitney_bowes"
    provider = wire.PROVIDER
    hook_name = "Pitney Bowes"
    main_account_type = POSTAGE
    purchase_step = Decimal("1")
    minimum_purchase = Decimal("1")
    idempotent_purchases = True
    conn_fields = _info.PITNEY_BOWES_FIELDS
    ui_behaviour = _info.PITNEY_BOWES_UI

    def settings(self, fields: ConnectionFields) -> wire.PitneyBowesSettings:
        return wire.settings_from_connection(
            fields.login, fields.password, fields.host, fields.extra, port=fields.port, schema=fields.schema
        )

    def for_account(self, settings: wire.PitneyBowesSettings, account: str) -> wire.PitneyBowesSettings:
        """Another merchant of the same developer account: one connection (one token) for them all."""
        return wire.with_merchant(settings, account)

    def validate_amount(self, amount: object) -> Decimal:
        return wire.validate_refill_amount(amount)

    def validate_purchase(self, settings: wire.PitneyBowesSettings, today: dt.date) -> None:
        """The merchant ids are checked with the settings; a refill needs nothing more."""

    def account_id(self, settings: wire.PitneyBowesSettings) -> str:
        return f"{settings.postal_reporting_number}@{super().account_id(settings)}"

    def account_key(self, settings: wire.PitneyBowesSettings) -> str:
        return f"{settings.credential_key}:{settings.merchant_url}"

    def token(self, settings: wire.PitneyBowesSettings) -> Flow[Token]:
        reply = yield from send(wire.build_token_request(settings))
        return wire.parse_token_response(reply)

    def _authorized(
        self, settings: wire.PitneyBowesSettings, build: Callable[[str], HttpRequest]
    ) -> Flow[HttpResponse]:
        """Send with the shared token; on a 401, renew it once and send once more (a 401 means the API
        refused the call before doing anything, so resending is safe even for a refill)."""
        key = settings.credential_key

        def fetch() -> Flow[Token]:
            return self.token(settings)

        bearer = yield from token(key, fetch)
        reply = yield from send(build(bearer))
        if reply.status == 401:
            reply = yield from send(build((yield from token(key, fetch, refused=bearer))))
        return reply

    def balances(self, settings: wire.PitneyBowesSettings, conn_id: str, clock: Clock = utc_now) -> Flow[list[Balance]]:
        reply = yield from self._authorized(settings, lambda bearer: wire.build_balance_request(settings, bearer))
        return wire.parse_balance_response(reply, conn_id=conn_id, received_at=clock())

    def purchase(
        self,
        settings: wire.PitneyBowesSettings,
        conn_id: str,
        amount: Decimal,
        *,
        transaction_id: str,
        before: Balance | None,
        clock: Clock = utc_now,
    ) -> Flow[PurchaseResult]:
        """Refill from the payment method on file (e.g. the line of credit). Every retry of one refill
        must send the same ``transaction_id``; a reply that confirms another amount means the id was
        used before (``TransactionReplayedError``)."""
        transaction_id = wire.validate_transaction_id(transaction_id)
        unknown = (
            f"Pitney Bowes refill {transaction_id} of {format_money(amount)} on {conn_id!r}: {{}}; it may have "
            "gone through. Retry with the same transaction id only."
        )
        try:
            reply = yield from self._authorized(
                settings, lambda bearer: wire.build_refill_request(settings, bearer, amount, transaction_id)
            )
        except PostageTransportError as error:
            if error.request_sent:
                raise PurchaseOutcomeUnknownError(unknown.format(error)) from None
            raise
        if reply.status >= 500:
            raise PurchaseOutcomeUnknownError(unknown.format(f"HTTP {reply.status}"))
        if reply.status == 401:
            raise PostageAuthError(self.provider, 401, "token refused again after a refresh")
        return wire.parse_refill_response(reply, conn_id=conn_id, amount=amount, transaction_id=transaction_id)


PITNEY_BOWES = register(PitneyBowesService())
