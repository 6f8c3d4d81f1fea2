"""Triggers that watch a balance on the triggerer: one carries a deferred :class:`BalanceThresholdSensor`,
the other is an Airflow 3 asset watcher for low balances."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

try:
    from airflow.triggers.base import BaseEventTrigger as _EventTriggerBase
except ImportError:  # Airflow 2.11: no event-driven scheduling; the class still imports, unused
    _EventTriggerBase = BaseTrigger  # type: ignore[misc,assignment]

from airflow_provider_postage import _conditions
from airflow_provider_postage._transport import DEFAULT_TIMEOUT
from airflow_provider_postage.hooks.postage import aget_postage_hook
from airflow_provider_postage.protocol.errors import PostageError
from airflow_provider_postage.protocol.money import format_money
from airflow_provider_postage.protocol.records import Balance

__all__ = ["BalanceThresholdTrigger", "LowBalanceEventTrigger"]


class _BalancePoll:
    """The arguments both triggers poll with, checked once, and their JSON-safe form for ``serialize``."""

    def _set_poll(
        self,
        postage_conn_id: str,
        threshold: str,
        account_type: str | None,
        poke_interval: float,
        timeout: tuple[float, float] | list[float],
        postal_reporting_number: str | None = None,
    ) -> None:
        self.postage_conn_id = postage_conn_id
        self.postal_reporting_number = postal_reporting_number
        self.threshold = format_money(_conditions.validate_threshold(threshold))
        self.account_type = _conditions.validate_account_type(account_type)
        if poke_interval <= 0:
            raise ValueError("poke_interval must be positive")
        self.poke_interval = float(poke_interval)
        connect, read = timeout
        self.timeout = (float(connect), float(read))

    def _poll_kwargs(self) -> dict[str, Any]:
        return {
            "postage_conn_id": self.postage_conn_id,
            "threshold": self.threshold,
            "account_type": self.account_type,
            "poke_interval": self.poke_interval,
            "timeout": list(self.timeout),
            # only when set: triggers serialized by earlier releases stay valid
            **({"postal_reporting_number": self.postal_reporting_number} if self.postal_reporting_number else {}),
        }


class BalanceThresholdTrigger(BaseTrigger, _BalancePoll):
    """Poll an account's balance until it reaches (``at_least``) or falls ``below`` a threshold.

    It only reads, so a triggerer restart that runs it again is harmless. Its one event is
    ``{"status": "success", "balance": {...}}`` or ``{"status": "error", "message": ...}`` for a
    permanent failure (credentials refused after a token refresh, unknown merchant, 403, bad input).

    :param postage_conn_id: a ``click2mail`` or ``pitney_bowes`` connection.
    :param threshold: the amount as a decimal string (exact; a float is refused).
    :param account_type: ``credit``, ``postage`` or ``line_of_credit``; None for the connection's main one.
    :param condition: ``at_least`` (default) or ``below``.
    :param poke_interval: seconds between polls, after errors too.
    :param timeout: (connect, read) seconds of each request; their sum is its total deadline.
    :param postal_reporting_number: poll this Pitney Bowes merchant instead of the connection's own.
    """

    def __init__(
        self,
        postage_conn_id: str,
        threshold: str,
        account_type: str | None = None,
        condition: str = _conditions.AT_LEAST,
        poke_interval: float = 60.0,
        timeout: tuple[float, float] | list[float] = DEFAULT_TIMEOUT,
        postal_reporting_number: str | None = None,
    ) -> None:
        super().__init__()
        self._set_poll(postage_conn_id, threshold, account_type, poke_interval, timeout, postal_reporting_number)
        self.condition = _conditions.validate_condition(condition)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {**self._poll_kwargs(), "condition": self.condition},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll, then sleep ``poke_interval``, also after a transient error: a failing API gets one
        request per interval from each trigger, never a busy loop."""
        threshold = _conditions.validate_threshold(self.threshold)
        try:
            hook = await aget_postage_hook(
                self.postage_conn_id, timeout=self.timeout, max_attempts=1, account=self.postal_reporting_number
            )
        except PostageError as error:
            yield TriggerEvent({"status": "error", "message": str(error)})
            return
        while True:
            try:
                balance = await hook.aget_balance(self.account_type, max_age=self.poke_interval)
            except Exception as error:
                if _conditions.is_permanent(error):
                    yield TriggerEvent({"status": "error", "message": str(error)})
                    return
                self.log.warning("%s: %s; polling again in %ss", self.postage_conn_id, error, self.poke_interval)
            else:
                if _conditions.is_met(balance, threshold, self.condition):
                    yield TriggerEvent({"status": "success", "balance": balance.to_dict()})
                    return
                self.log.info(
                    "%s %s balance %s, waiting until %s %s",
                    self.postage_conn_id,
                    balance.account_type,
                    format_money(balance.available),
                    self.condition.replace("_", " "),
                    self.threshold,
                )
            await asyncio.sleep(self.poke_interval)


class LowBalanceEventTrigger(_EventTriggerBase, _BalancePoll):
    """Watch an account for Airflow 3's event-driven scheduling: an ``AssetWatcher`` with this trigger
    starts a DAG run each time the balance falls below ``threshold``.

    It fires once per fall (edge-triggered) and re-arms when the balance is back at or above the
    threshold, so a low balance that stays low while a top-up is on its way does not start a run per
    poll. On Airflow 3.3 the armed/fired state is kept in the watched asset's ``asset_state_store``, so a
    triggerer restart while the balance stays low does not fire again, and a fall while the triggerer was
    down fires once it is back; and every watcher of one account in a triggerer shares one poll (a shared
    stream), whatever its threshold. It only reads, never stops on errors (a watcher that ended would
    watch nothing), and polls every ``poke_interval``. Event payload: ``{"status": "below", "threshold",
    "balance"}``.

    :param postage_conn_id: a postage connection.
    :param threshold: the amount as a decimal string (exact; a float is refused).
    :param account_type: ``credit``, ``postage`` or ``line_of_credit``; None for the connection's main one.
    :param poke_interval: seconds between polls, after errors too.
    :param timeout: (connect, read) seconds of each request; their sum is its total deadline.
    :param postal_reporting_number: watch this Pitney Bowes merchant instead of the connection's own.
    """

    _ARMED = "postage_armed"

    def __init__(
        self,
        postage_conn_id: str,
        threshold: str,
        account_type: str | None = None,
        poke_interval: float = 60.0,
        timeout: tuple[float, float] | list[float] = DEFAULT_TIMEOUT,
        postal_reporting_number: str | None = None,
    ) -> None:
        super().__init__()
        self._set_poll(postage_conn_id, threshold, account_type, poke_interval, timeout, postal_reporting_number)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", self._poll_kwargs())

    # --- one poll per account, shared by its watchers (Airflow 3.3 shared streams) ---------------------

    def shared_stream_key(self) -> Hashable | None:
        return (
            "postage-balance",
            self.postage_conn_id,
            self.postal_reporting_number,
            self.account_type,
            self.poke_interval,
            tuple(self.timeout),
        )

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        """Poll the account forever; yield each balance, or the error of a failed poll."""
        async for item in _poll_forever(
            kwargs["postage_conn_id"],
            kwargs.get("account_type"),
            float(kwargs.get("poke_interval", 60.0)),
            tuple(kwargs.get("timeout") or DEFAULT_TIMEOUT),
            kwargs.get("postal_reporting_number"),
        ):
            yield item

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        async for event in self._edges(shared_stream):
            yield event

    async def run(self) -> AsyncIterator[TriggerEvent]:
        polls = _poll_forever(
            self.postage_conn_id, self.account_type, self.poke_interval, self.timeout, self.postal_reporting_number
        )
        async for event in self._edges(polls):
            yield event

    # --- the edge ------------------------------------------------------------------------------------------

    async def _armed(self) -> bool:
        store = getattr(self, "asset_state_store", None)
        if store is None:
            return True
        try:
            value = await store.aget(self._ARMED, True)
        except Exception as error:  # more than one watched asset, or the API unreachable: keep it in memory
            self.log.warning("%s: watcher state not readable (%s); starting armed", self.postage_conn_id, error)
            return True
        return value is not False

    async def _remember(self, armed: bool) -> None:
        store = getattr(self, "asset_state_store", None)
        if store is not None:
            try:
                await store.aset(self._ARMED, armed)
            except Exception as error:
                self.log.warning("%s: watcher state not saved (%s)", self.postage_conn_id, error)

    async def _edges(self, polls: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        """One event per fall below the threshold; saved before the event, so a restart never repeats it."""
        threshold = _conditions.validate_threshold(self.threshold)
        armed = await self._armed()
        async for item in polls:
            if not isinstance(item, Balance):
                self.log.warning(
                    "%s: %s; watching on, next poll in %ss", self.postage_conn_id, item, self.poke_interval
                )
                continue
            below = _conditions.is_met(item, threshold, _conditions.BELOW)
            if below and armed:
                self.log.info("%s balance %s fell below %s", self.postage_conn_id, item.available, self.threshold)
                await self._remember(False)
                yield TriggerEvent({"status": "below", "threshold": self.threshold, "balance": item.to_dict()})
            elif not below and not armed:
                await self._remember(True)
            armed = not below


async def _poll_forever(
    conn_id: str,
    account_type: str | None,
    poke_interval: float,
    timeout: tuple[float, float] | tuple[float, ...],
    postal_reporting_number: str | None,
) -> AsyncIterator[Balance | PostageError]:
    """A balance (or the error of a failed poll) every ``poke_interval`` seconds, forever."""
    hook = None
    connect, read = (float(timeout[0]), float(timeout[1]))
    while True:
        try:
            if hook is None:
                hook = await aget_postage_hook(
                    conn_id, timeout=(connect, read), max_attempts=1, account=postal_reporting_number
                )
            yield await hook.aget_balance(account_type, max_age=poke_interval)
        except PostageError as error:
            yield error
        except Exception as error:  # never stop watching; an unexpected failure is reported like an API one
            yield PostageError(f"{type(error).__name__}: {error}")
        await asyncio.sleep(poke_interval)
