"""One exception family for the provider, free of Airflow so the protocol stays importable anywhere.

Messages are built from API codes and descriptions and from field names only: never from request
bodies, headers or connection values, so an exception can be logged or stored without leaking a secret.
"""

from __future__ import annotations

from decimal import Decimal


class PostageError(Exception):
    """Base of every error this provider raises."""


class PostageValidationError(PostageError, ValueError):
    """Input refused before any request was sent; ``field`` names what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class PostageConfigError(PostageValidationError):
    """An Airflow connection is missing something or holds a value the provider cannot use."""


class PostageTransportError(PostageError):
    """No usable HTTP reply: connection refused, timeout, reply cut off, reply too large.

    ``request_sent`` says whether the request may have reached the server: a purchase with
    ``request_sent=True`` may have been charged.
    """

    def __init__(self, message: str, *, request_sent: bool) -> None:
        self.request_sent = request_sent
        super().__init__(message)

    transient = True


class PostageAPIError(PostageError):
    """The API answered with an error; carries its HTTP status, code and description."""

    #: 5xx and edge timeouts that the APIs tell clients to try again.
    TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 522, 524})

    def __init__(
        self,
        provider: str,
        status: int,
        description: str,
        *,
        code: str | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.code = code
        self.description = description
        code_part = f" [{code}]" if code else ""
        super().__init__(f"{provider} API error (HTTP {status}){code_part}: {description}")

    @property
    def transient(self) -> bool:
        return self.status in self.TRANSIENT_STATUSES


class PostageAuthError(PostageAPIError):
    """Credentials or token refused (401), or the account may not do this (403)."""


class DuplicateTransactionError(PostageAPIError):
    """The API refused a purchase because its idempotency key was used before: the earlier purchase
    with that key stands, and nothing new was bought."""


class PostageResponseError(PostageAPIError):
    """A reply the provider cannot read: HTML, empty, malformed, or in an unexpected shape."""


class PurchaseOutcomeUnknownError(PostageError):
    """A purchase may or may not have gone through; it must not be repeated blindly."""


class TransactionReplayedError(PostageError):
    """The API answered a refill with an earlier refill's result: its transaction id was used before,
    so nothing new was bought. Use a new transaction id for a new refill."""

    def __init__(self, transaction_id: str, *, requested: Decimal, confirmed: Decimal) -> None:
        self.transaction_id = transaction_id
        self.requested = requested
        self.confirmed = confirmed
        super().__init__(
            f"transaction id {transaction_id} was used before: the API confirmed {confirmed}, not the {requested} "
            "asked for, so it replayed an earlier refill and nothing new was bought. Use a new transaction id."
        )
