"""The hook of ``pitney_bowes`` connections."""

from __future__ import annotations

from airflow_provider_postage.hooks.base import PostageHook
from airflow_provider_postage.services.pitney_bowes import PITNEY_BOWES


class PitneyBowesHook(PostageHook):
    """Pitney Bowes postage account: an OAuth token shared per process, JSON, idempotent refills.

    :param postage_conn_id: a ``pitney_bowes`` connection; the other arguments are :class:`PostageHook`'s.
    """

    service = PITNEY_BOWES
