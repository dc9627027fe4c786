"""The request pool: bounded concurrency, a rate limit, retries with backoff.

Built on `asyncio.TaskGroup` + a semaphore + `aiolimiter`, not on
`asyncio-pool`: that package (0.6.0, 2022, unmaintained) does not cancel its
jobs when the task that owns the pool is cancelled. Measured on Python 3.11
(`bench/aiopool_cancel_check.py`): after a cancel at 0.1 s its exit waited
2.5 s while 15 more jobs started, so Ctrl-C would have kept sending requests.
A TaskGroup cancels every child when its owner is cancelled or one child
raises.

- Never more than `concurrency` requests in flight: each attempt holds the
  `flight` semaphore; a task waiting out a backoff holds nothing.
- At most `prefetch` items admitted at once (prepared image in memory), so
  5,000 images cost the memory of a few dozen.
- Retries with exponential backoff and jitter on what `Retryable` marks;
  `Retry-After` is honoured, and pauses every worker, not just the one
  that was told (the provider meant all of us).
- `BackendUnavailable` from any item cancels the whole run.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from aiolimiter import AsyncLimiter

from verifier.core.backends import Backend, ItemFailed, Reply, Request, Retryable

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    base: float = 1.0  # first backoff, seconds; doubles each attempt
    cap: float = 60.0
    max_retry_after: float = 120.0  # longer Retry-After values are cut to this (and the attempt counts)

    def delay(self, attempt: int, told: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if told is not None:
            return min(told, self.max_retry_after) + rng.uniform(0, 0.25)
        backoff = min(self.cap, self.base * 2 ** (attempt - 1))
        return backoff / 2 + rng.uniform(0, backoff / 2)  # "equal jitter": never ~0, never in lockstep


@dataclass(frozen=True)
class Outcome:
    reply: Reply | None
    error: str | None
    attempts: int
    latency_s: float  # of the attempt that answered (or the last one)


class Pool:
    def __init__(self, backend: Backend, *, concurrency: int = 6, rpm: float | None = None, timeout: float = 120.0,
                 retry: RetryPolicy | None = None, seed: int | None = None):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.backend = backend
        self.concurrency = concurrency
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.flight = asyncio.Semaphore(concurrency)
        # N per minute, released in sixths so a run does not open with a burst of N.
        self.limiter = AsyncLimiter(max(1.0, rpm / 6), 10) if rpm else None
        self.rng = random.Random(seed)
        self.pause_until = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests = 0

    async def ask(self, request: Request) -> Outcome:
        """One item: attempts until an answer, a non-retryable failure, or max_attempts."""
        attempt = 0
        while True:
            attempt += 1
            if (wait := self.pause_until - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            async with self.flight:
                if self.limiter is not None:
                    await self.limiter.acquire()
                self.in_flight += 1
                self.requests += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                started = time.monotonic()
                try:
                    # a backend that times itself (codex keeps its stderr) gets a grace period
                    async with asyncio.timeout(self.timeout + getattr(self.backend, "timeout_grace", 0.0)):
                        reply = await self.backend.ask(request)
                    return Outcome(reply, None, attempt, time.monotonic() - started)
                except TimeoutError:
                    failure = Retryable(f"no answer within {self.timeout:g} s")
                except Retryable as exc:
                    failure = exc
                except ItemFailed as exc:
                    return Outcome(None, exc.reason, attempt, time.monotonic() - started)
                finally:
                    self.in_flight -= 1
                latency = time.monotonic() - started
            if attempt >= self.retry.max_attempts:
                return Outcome(None, f"{failure.reason} (gave up after {attempt} attempts)", attempt, latency)
            delay = self.retry.delay(attempt, failure.retry_after, self.rng)
            if failure.retry_after is not None:
                self.pause_until = max(self.pause_until, time.monotonic() + delay)
            await asyncio.sleep(delay)

    async def map(self, items: Iterable[T], run: Callable[[T], Awaitable[None]], prefetch: int | None = None) -> None:
        """Run `run(item)` for every item, at most `prefetch` admitted at once.

        `run` must handle its item's own failures; an exception out of it
        (BackendUnavailable, a store that cannot be written) cancels the rest.
        """
        admission = asyncio.Semaphore(prefetch or 2 * self.concurrency)

        async def one(item: T) -> None:
            try:
                await run(item)
            finally:
                admission.release()

        async with asyncio.TaskGroup() as group:
            for item in items:
                await admission.acquire()
                group.create_task(one(item))
