"""The hook of ``pitney_bowes`` connections."""

from __future__ import annotations

import datetime as dt

from airflow_provider_postage.hooks.base import PostageHook
from airflow_provider_postage.protocol import pitney_bowes_funding as funding
from airflow_provider_postage.protocol.pitney_bowes_funding import AutoRefillRule, PBTransaction
from airflow_provider_postage.services import pitney_bowes_funding as flows
from airflow_provider_postage.services.base import utc_now
from airflow_provider_postage.services.pitney_bowes import PITNEY_BOWES


class PitneyBowesHook(PostageHook):
    """Pitney Bowes postage account: an OAuth token shared per process, JSON, idempotent refills; and the
    merchant's funding set-up: its auto-refill rule and its transaction report.

    :param postage_conn_id: a ``pitney_bowes`` connection; the other arguments are :class:`PostageHook`'s
        (``account``: another merchant's postal reporting number).
    """

    service = PITNEY_BOWES

    def get_auto_refill_rule(self) -> AutoRefillRule:
        """The merchant's auto-refill rule (never set: no amounts, disabled)."""
        return self._run(flows.auto_refill_rule(self.settings))

    def set_auto_refill_rule(self, threshold: object, add_amount: object, enabled: bool = True) -> AutoRefillRule:
        """Replace the merchant's rule: when its postage balance falls below ``threshold`` (>= 0, cents at
        most), add ``add_amount`` (whole dollars). Amounts as str, int or Decimal, never float. All
        three are checked before anything is sent, and always sent together: Pitney Bowes stores a field
        left out as null, which disables the rule."""
        limit, amount, on = funding.validate_rule(threshold, add_amount, enabled)
        return self._run(flows.set_auto_refill_rule(self.settings, limit, amount, on))

    def get_transactions(
        self,
        from_date: dt.datetime | str,
        to_date: dt.datetime | str,
        transaction_type: str | None = funding.POSTAGE_FUND,
        *,
        page_size: int = funding.DEFAULT_PAGE_SIZE,
    ) -> list[PBTransaction]:
        """The merchant's transactions with ``from_date <= time <= to_date`` (aware datetimes or ISO 8601
        strings with an offset), oldest first, every page read. ``transaction_type`` None gives every
        type. Pitney Bowes reports reach back six calendar months: an older ``from_date`` is refused
        before anything is sent."""
        query = funding.validate_query(from_date, to_date, transaction_type, page_size, now=utc_now())
        return self._run(flows.transactions(self.settings, query))
