"""The Click2Mail half of the sandbox: :mod:`.rules` (pure API rules), :mod:`.state` (accounts, balances,
purchases) and :mod:`.routes` (``GET /molpro/credit``, ``POST /molpro/credit/purchase``).

Nothing is imported here, so that :mod:`..state` can load :mod:`.state` without the HTTP layer.
"""
