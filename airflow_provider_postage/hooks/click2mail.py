"""The hook of ``click2mail`` connections."""

from __future__ import annotations

from airflow_provider_postage.hooks.base import PostageHook
from airflow_provider_postage.services.click2mail import CLICK2MAIL


class Click2MailHook(PostageHook):
    """Click2Mail prepaid credit: HTTP Basic auth, XML replies, purchases paid by the connection's card.

    Click2Mail has no idempotency key (``transaction_id`` is ignored): when its reply does not confirm a
    purchase, the balance decides, and when the balance cannot tell, a purchase raises
    :class:`~airflow_provider_postage.protocol.errors.PurchaseOutcomeUnknownError` instead of buying again.

    :param postage_conn_id: a ``click2mail`` connection; the other arguments are :class:`PostageHook`'s.
    """

    service = CLICK2MAIL
