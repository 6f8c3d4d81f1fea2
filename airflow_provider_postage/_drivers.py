"""The two drivers that run any flow (``protocol.flow``): :func:`run` with requests for hooks, and
:func:`arun` with aiohttp on the triggerer's loop. They hold no API logic: they send what a flow yields,
answer its token requests from the shared cache, and apply the one retry policy, which depends only on
the request: a read is retried through transient failures; a request that moves money is resent only
when it surely never left this machine."""

from __future__ import annotations

import asyncio
import logging
import random
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.providers.common.compat.sdk import mask_secret
from tenacity import (
    AsyncRetrying,
    Retrying,
    retry_if_exception,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from airflow_provider_postage._masking import amask_all
from airflow_provider_postage._tokens import TOKENS, TokenCache
from airflow_provider_postage._transport import Verify, new_async_client
from airflow_provider_postage.protocol.errors import PostageAPIError, PostageError, PostageTransportError
from airflow_provider_postage.protocol.flow import Flow, NeedToken, Token
from airflow_provider_postage.protocol.http import HttpRequest, HttpResponse

if TYPE_CHECKING:
    import aiohttp

T = TypeVar("T")
Exchange = Callable[[HttpRequest], HttpResponse]
AsyncExchange = Callable[[HttpRequest], Awaitable[HttpResponse]]


@dataclass(frozen=True)
class RetryPolicy:
    """Tries of one read through transient failures, with exponential backoff and jitter."""

    max_attempts: int = 4
    backoff_initial: float = 0.5
    backoff_max: float = 8.0


#: Triggers poll again after their interval: their loop is the retry.
ONE_ATTEMPT = RetryPolicy(max_attempts=1)


def _transient_reply(reply: HttpResponse) -> bool:
    return reply.status in PostageAPIError.TRANSIENT_STATUSES


def _retryable(request: HttpRequest) -> Callable[[BaseException], bool]:
    if request.moves_money:
        return lambda error: isinstance(error, PostageTransportError) and not error.request_sent
    return lambda error: isinstance(error, PostageTransportError)


def _retrying_kwargs(request: HttpRequest, policy: RetryPolicy, log: logging.Logger, label: str) -> dict[str, Any]:
    initial, maximum = policy.backoff_initial, policy.backoff_max

    def before_sleep(state: Any) -> None:
        outcome = state.outcome
        why = outcome.exception() if outcome and outcome.failed else f"HTTP {outcome.result().status}"
        log.warning("%s: attempt %d failed (%s); retrying", label, state.attempt_number + 1, why)

    retry: Any = retry_if_exception(_retryable(request))
    if not request.moves_money:
        retry = retry | retry_if_result(_transient_reply)
    return {
        "stop": stop_after_attempt(policy.max_attempts - 1),
        "wait": wait_exponential(multiplier=2 * initial, max=maximum) + wait_random(0, initial),
        "retry": retry,
        "reraise": True,
        "retry_error_callback": lambda state: state.outcome.result(),  # a transient reply, passed on as is
        "before_sleep": before_sleep,
    }


def _first_failed(request: HttpRequest, outcome: HttpResponse | BaseException) -> bool:
    if isinstance(outcome, BaseException):
        return _retryable(request)(outcome)
    return not request.moves_money and _transient_reply(outcome)


def with_retries(
    send: Exchange, policy: RetryPolicy, log: logging.Logger, label: str, sleep: Callable[[float], None]
) -> Exchange:
    """``send`` under the policy. The first try runs bare: the usual, successful call pays nothing for
    the retry machinery, which tenacity provides only once it is needed."""

    def exchange(request: HttpRequest) -> HttpResponse:
        try:
            reply = send(request)
        except PostageTransportError as error:
            if policy.max_attempts < 2 or not _first_failed(request, error):
                raise
            log.warning("%s: attempt 1 failed (%s); retrying", label, error)
        else:
            if policy.max_attempts < 2 or not _first_failed(request, reply):
                return reply
            log.warning("%s: attempt 1 failed (HTTP %s); retrying", label, reply.status)
        sleep(policy.backoff_initial + random.uniform(0, policy.backoff_initial))
        return Retrying(sleep=sleep, **_retrying_kwargs(request, policy, log, label))(send, request)

    return exchange


def with_async_retries(send: AsyncExchange, policy: RetryPolicy, log: logging.Logger, label: str) -> AsyncExchange:
    """The same policy for the async driver."""

    async def exchange(request: HttpRequest) -> HttpResponse:
        try:
            reply = await send(request)
        except PostageTransportError as error:
            if policy.max_attempts < 2 or not _first_failed(request, error):
                raise
        else:
            if policy.max_attempts < 2 or not _first_failed(request, reply):
                return reply
        await asyncio.sleep(policy.backoff_initial + random.uniform(0, policy.backoff_initial))
        return await AsyncRetrying(**_retrying_kwargs(request, policy, log, label))(send, request)

    return exchange


def _fetch_token(effect: NeedToken, exchange: Exchange, tokens: TokenCache) -> Token:
    token = run(effect.fetch(), exchange, tokens)
    mask_secret(token.access_token)  # a bearer token is a secret from the moment it arrives
    return token


def _advance(flow: Flow[T], answer: Any, error: BaseException | None) -> tuple[bool, Any]:
    """One step of a flow: (False, its next effect) or (True, its result)."""
    try:
        return False, (flow.throw(error) if error is not None else flow.send(answer))
    except StopIteration as stop:
        return True, stop.value


def run(flow: Flow[T], exchange: Exchange, tokens: TokenCache = TOKENS) -> T:
    """Drive ``flow`` to its result with blocking I/O."""
    answer: Any = None
    error: BaseException | None = None
    while True:
        done, effect = _advance(flow, answer, error)
        if done:
            return effect
        answer, error = None, None
        try:
            if isinstance(effect, NeedToken):
                if effect.refused is not None:
                    tokens.invalidate(effect.key, effect.refused)
                answer = tokens.get(effect.key, partial(_fetch_token, effect, exchange, tokens))
            else:
                answer = exchange(effect)
        except PostageError as failure:
            error = failure


async def arun(flow: Flow[T], exchange: AsyncExchange, tokens: TokenCache = TOKENS) -> T:
    """Drive ``flow`` to its result on the running event loop."""
    answer: Any = None
    error: BaseException | None = None
    while True:
        done, effect = _advance(flow, answer, error)
        if done:
            return effect
        answer, error = None, None
        try:
            if not isinstance(effect, NeedToken):
                answer = await exchange(effect)
                continue
            if effect.refused is not None:
                tokens.invalidate(effect.key, effect.refused)

            async def fetch_token(fetch: Any = effect.fetch) -> Token:
                token: Token = await arun(fetch(), exchange, tokens)
                await amask_all([(token.access_token, None)])  # never the blocking call on the loop
                return token

            answer = await tokens.aget(effect.key, fetch_token)
        except PostageError as failure:
            error = failure


# --- what one triggerer loop shares ---------------------------------------------------------------------

_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[Verify, tuple[aiohttp.ClientSession, AsyncIterator[None]]]
] = weakref.WeakKeyDictionary()
_reads: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, tuple[float, asyncio.Future[Any]]]] = (
    weakref.WeakKeyDictionary()
)


def shared_client(verify: Verify = True) -> aiohttp.ClientSession:
    """The loop's one client per TLS setting: thousands of triggers share its connection pool. It is
    closed, on its loop, when the loop shuts down (``asyncio.run`` and the triggerer close the loop's
    async generators first: one of them holds the client)."""
    loop = asyncio.get_running_loop()
    clients = _clients.setdefault(loop, {})
    entry = clients.get(verify)
    if entry is None:
        client = new_async_client(verify)
        keeper = _closed_at_shutdown(client.close, clients, verify)
        _start(keeper)
        entry = clients[verify] = (client, keeper)
    return entry[0]


async def _closed_at_shutdown(
    close: Callable[[], Awaitable[Any]], clients: dict[Verify, Any], verify: Verify
) -> AsyncIterator[None]:
    try:
        yield
    finally:
        clients.pop(verify, None)  # the entry holds its loop: left in place, the loop would never be freed
        await close()


def _start(generator: AsyncIterator[None]) -> None:
    """Run ``generator`` to its first ``yield`` (it awaits nothing before it), which registers it with the
    running loop's async-generator hooks: ``loop.shutdown_asyncgens()`` then runs its ``finally``."""
    step = generator.__anext__()
    try:
        step.send(None)  # type: ignore[attr-defined]
    except StopIteration:
        pass
    else:  # pragma: no cover - it never suspends before its yield
        raise RuntimeError("the client keeper suspended before its first yield")


async def coalesced(key: str, start: Callable[[], Awaitable[T]], max_age: float = 0.0) -> T:
    """One read per ``key`` on this loop, shared by every caller while it is in flight or younger than the
    caller's ``max_age`` (seconds since it was sent): N triggers polling one account every ``max_age``
    seconds cost one request per interval however their polls are spread, and a failing API gets one
    request per interval too (its error is shared the same way)."""
    loop = asyncio.get_running_loop()
    reads = _reads.setdefault(loop, {})
    now = loop.time()
    entry = reads.get(key)
    if entry is None or (entry[1].done() and now - entry[0] >= max_age):
        future: asyncio.Future[Any] = asyncio.ensure_future(start())
        future.add_done_callback(_retrieve)
        reads[key] = entry = (now, future)
        if len(reads) > 1024:  # forget accounts nobody asked about for long
            for old in [k for k, (sent, f) in reads.items() if f.done() and now - sent > 3600]:
                del reads[old]
    return await asyncio.shield(entry[1])


def _retrieve(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()  # retrieved here so an error nobody awaits any more is not logged as lost
