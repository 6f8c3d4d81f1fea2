"""Pitney Bowes funding flows: read and replace a merchant's auto-refill rule, and page through its
transaction report. Each request goes with the shared token, renewed once on a 401
(:meth:`PitneyBowesService._authorized`)."""

from __future__ import annotations

from decimal import Decimal

from airflow_provider_postage.protocol import pitney_bowes_funding as wire
from airflow_provider_postage.protocol.errors import PostageResponseError
from airflow_provider_postage.protocol.flow import Flow
from airflow_provider_postage.protocol.http import HttpRequest
from airflow_provider_postage.protocol.pitney_bowes import PitneyBowesSettings
from airflow_provider_postage.services.pitney_bowes import PITNEY_BOWES, PitneyBowesService

#: A report longer than this many pages is a server paging in circles, not a merchant's history.
MAX_PAGES = 10_000


def auto_refill_rule(
    settings: PitneyBowesSettings, service: PitneyBowesService = PITNEY_BOWES
) -> Flow[wire.AutoRefillRule]:
    reply = yield from service._authorized(settings, lambda bearer: wire.build_get_rule_request(settings, bearer))
    return wire.parse_rule_response(reply, settings)


def set_auto_refill_rule(
    settings: PitneyBowesSettings,
    threshold: Decimal,
    add_amount: Decimal,
    enabled: bool,
    service: PitneyBowesService = PITNEY_BOWES,
) -> Flow[wire.AutoRefillRule]:
    """Replace the rule with one that has every field set; the rule Pitney Bowes then holds must be the
    one sent (else the reply is an error, not a success)."""

    def build(bearer: str) -> HttpRequest:
        return wire.build_set_rule_request(settings, bearer, threshold, add_amount, enabled)

    reply = yield from service._authorized(settings, build)
    rule = wire.parse_rule_response(reply, settings)
    if not rule.matches(threshold, add_amount, enabled):
        raise PostageResponseError(
            wire.PROVIDER,
            reply.status,
            f"the auto-refill rule of merchant {rule.merchant_id} reads {rule.to_dict()} after setting "
            f"threshold {threshold}, add_amount {add_amount}, enabled {enabled}",
        )
    return rule


def transactions(
    settings: PitneyBowesSettings, query: wire.TransactionQuery, service: PitneyBowesService = PITNEY_BOWES
) -> Flow[list[wire.PBTransaction]]:
    """Every page of the merchant's report, oldest first; an entry seen on an earlier page (the report
    shifted while paging) is kept once."""
    entries: dict[str, wire.PBTransaction] = {}
    for page in range(MAX_PAGES):

        def build(bearer: str, page: int = page) -> HttpRequest:
            return wire.build_transactions_request(settings, bearer, query, page)

        reply = yield from service._authorized(settings, build)
        found, last = wire.parse_transactions_page(reply, page)
        for entry in found:
            entries.setdefault(entry.transaction_id, entry)
        if last:
            return list(entries.values())
    raise PostageResponseError(wire.PROVIDER, 200, f"transaction report did not end within {MAX_PAGES} pages")
