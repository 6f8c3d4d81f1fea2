"""The sandbox's two families of errors.

* :class:`SandboxError` (``UnknownEntityError``, ``InvalidSettingError``): a refused control call, from
  Python or from a ``/_sandbox/*`` route (answered 404 / 400 ``{"error": …}``).
* :class:`RuleError`: a request refused by a rule of an emulated API; the route answers it in that
  API's own error shape with ``description`` (and, for Pitney Bowes, ``code``).
"""

from __future__ import annotations

__all__ = ["InvalidSettingError", "RuleError", "SandboxError", "UnknownEntityError"]


class SandboxError(Exception):
    """Base class of errors raised by the sandbox control API."""


class UnknownEntityError(SandboxError, LookupError):
    """An account, merchant or endpoint name that the sandbox does not know (HTTP 404)."""


class InvalidSettingError(SandboxError, ValueError):
    """A control value that the sandbox refuses (HTTP 400)."""


class RuleError(Exception):
    """A request rejected by an API rule; ``description`` is what the API says."""

    def __init__(self, description: str, code: str = "") -> None:
        super().__init__(description)
        self.description = description
        self.code = code
