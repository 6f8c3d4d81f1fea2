"""A Pitney Bowes merchant's auto-refill rule, kept as the DAG says."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from airflow.providers.common.compat.sdk import BaseOperator, Context

from airflow_provider_postage._templating import known_at_parse_time
from airflow_provider_postage.hooks.postage import PitneyBowesHook, get_postage_hook
from airflow_provider_postage.protocol.errors import PostageValidationError
from airflow_provider_postage.protocol.pitney_bowes_funding import validate_rule

__all__ = ["PitneyBowesAutoRefillRuleOperator"]

_FLAGS = {"true": True, "false": False}


def _flag(value: object) -> object:
    """A templated ``enabled`` renders to text ("True"); anything else is left for validation to judge."""
    return _FLAGS.get(value.strip().lower(), value) if isinstance(value, str) else value


class PitneyBowesAutoRefillRuleOperator(BaseOperator):
    """Make a Pitney Bowes merchant's auto-refill rule the one given: when the postage balance falls
    below ``threshold``, Pitney Bowes adds ``add_amount`` from the payment method on file.

    The rule is read first; when it already matches, nothing is sent. Otherwise it is replaced whole
    (every field: Pitney Bowes stores a field left out as null, which disables the rule), and the rule it
    then holds must be the one asked for. Everything is checked before any request: plain values when
    the DAG file is parsed, templates once rendered.

    Returns (XCom) ``conn_id``, ``merchant_id``, ``threshold`` and ``add_amount`` (decimal strings),
    ``enabled``, and ``changed`` (whether a new rule was sent).

    :param postage_conn_id: a ``pitney_bowes`` connection (templated).
    :param threshold: balance below which to refill: str, int or Decimal, >= 0, cents at most (templated).
    :param add_amount: whole dollars added each time, str, int or Decimal (templated).
    :param enabled: whether the rule is on (templated; "true"/"false" taken too).
    :param postal_reporting_number: this merchant instead of the connection's own (templated).
    :param hook_params: extra keyword arguments for the hook (e.g. ``timeout``, ``max_attempts``).
    """

    template_fields: Sequence[str] = (
        "postage_conn_id",
        "threshold",
        "add_amount",
        "enabled",
        "postal_reporting_number",
    )
    ui_color = "#e6ffe6"

    def __init__(
        self,
        *,
        postage_conn_id: str,
        threshold: str | int | Decimal,
        add_amount: str | int | Decimal,
        enabled: bool | str = True,
        postal_reporting_number: str | None = None,
        hook_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.postage_conn_id = postage_conn_id
        self.threshold = threshold
        self.add_amount = add_amount
        self.enabled = enabled
        self.postal_reporting_number = postal_reporting_number
        self.hook_params = hook_params or {}
        # Values known at parse time are checked now, so a bad DAG fails to load, not at 3 a.m.
        if all(known_at_parse_time(value) for value in (threshold, add_amount, _flag(enabled))):
            validate_rule(threshold, add_amount, _flag(enabled))

    def execute(self, context: Context) -> dict[str, Any]:
        threshold, add_amount, enabled = validate_rule(self.threshold, self.add_amount, _flag(self.enabled))
        hook = get_postage_hook(self.postage_conn_id, account=self.postal_reporting_number or None, **self.hook_params)
        if not isinstance(hook, PitneyBowesHook):
            raise PostageValidationError(
                "postage_conn_id",
                f"{self.postage_conn_id!r} is a {hook.hook_name} connection; auto-refill rules are Pitney Bowes'",
            )
        rule = hook.get_auto_refill_rule()
        changed = not rule.matches(threshold, add_amount, enabled)
        if changed:
            self.log.info("Merchant %s: auto-refill rule was %s; setting it", rule.merchant_id, rule.to_dict())
            rule = hook.set_auto_refill_rule(threshold, add_amount, enabled)
        else:
            self.log.info("Merchant %s: auto-refill rule already as wanted; nothing sent", rule.merchant_id)
        self.log.info("Merchant %s: auto-refill rule %s", rule.merchant_id, rule.to_dict())
        return {"conn_id": self.postage_conn_id, **rule.to_dict(), "changed": changed}
