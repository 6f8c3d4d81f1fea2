"""The Pitney Bowes half of the sandbox.

* :mod:`.rules`: pure API rules (refill body, transaction id, auto-refill rule body, report query, paging);
* :mod:`.records`: immutable records (refills, tokens, balance views, auto-refill rules, transactions);
* :mod:`.tokens`, :mod:`.ledger`, :mod:`.state`: the state (credentials and tokens; balances, refills,
  auto refill and transaction history; merchants and their controls);
* :mod:`.replies`, :mod:`.routes`: the HTTP side (error shapes, authorisation; the routes).

Nothing is imported here, so that :mod:`..state` can load the state modules without the HTTP layer.
"""
