"""The pool's own rules, with a scripted in-process backend (the loopback
server tests cover the same through real HTTP)."""

import asyncio
import random
import time

import pytest

from verifier.core.backends import ItemFailed, Reply, Request, Retryable, retry_after
from verifier.core.images import Prepared
from verifier.core.pool import Pool, RetryPolicy
from verifier.errors import BackendUnavailable

REQ = Request("p", Prepared(b"", "image/jpeg", (1, 1)))


class Scripted:
    """Answers after `delay`; each request pops the next scripted failure."""

    name, model = "scripted", "m"

    def __init__(self, script=(), delay=0.01):
        self.script, self.delay = list(script), delay
        self.calls, self.times, self.live, self.most = 0, [], 0, 0

    async def ask(self, request):
        self.calls += 1
        self.times.append(time.monotonic())
        self.live += 1
        self.most = max(self.most, self.live)
        try:
            await asyncio.sleep(self.delay)
            if self.script:
                step = self.script.pop(0)
                if isinstance(step, Exception):
                    raise step
            return Reply("OK")
        finally:
            self.live -= 1

    async def aclose(self):
        pass


def test_retry_policy_backoff_grows_with_jitter_and_honours_retry_after():
    policy, rng = RetryPolicy(base=1.0, cap=8.0), random.Random(1)
    for attempt, (low, high) in enumerate([(0.5, 1), (1, 2), (2, 4), (4, 8), (4, 8)], start=1):
        assert low <= policy.delay(attempt, None, rng) <= high
    assert 3.0 <= policy.delay(1, 3.0, rng) <= 3.25
    assert policy.delay(1, 9999, rng) <= policy.max_retry_after + 0.25


def test_retry_after_header_forms():
    assert retry_after({"Retry-After": "2"}) == 2.0
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480) == 10.0
    assert retry_after({"Retry-After": "soon"}) is None and retry_after(None) is None


def test_retries_then_answers_and_gives_up():
    async def go():
        backend = Scripted([Retryable("429"), Retryable("500"), Retryable("500"), Retryable("500")])
        pool = Pool(backend, retry=RetryPolicy(max_attempts=3, base=0.01))
        first = await pool.ask(REQ)
        assert first.reply is None and first.attempts == 3 and "gave up after 3 attempts" in first.error
        second = await pool.ask(REQ)  # one more 500 left, then an answer
        assert second.reply.content == "OK" and second.attempts == 2
        failed = await Pool(Scripted([ItemFailed("HTTP 400")]), retry=RetryPolicy(base=0.01)).ask(REQ)
        assert failed.error == "HTTP 400" and failed.attempts == 1  # not retried
    asyncio.run(go())


def test_timeout_is_retried():
    async def go():
        pool = Pool(Scripted(delay=0.5), timeout=0.05, retry=RetryPolicy(max_attempts=2, base=0.01))
        out = await pool.ask(REQ)
        assert out.reply is None and "no answer within 0.05 s" in out.error
    asyncio.run(go())


def test_retry_after_pauses_every_worker():
    async def go():
        backend = Scripted([Retryable("429", retry_after=0.4)], delay=0.01)
        pool = Pool(backend, concurrency=2, retry=RetryPolicy(base=0.01), seed=0)
        t0 = time.monotonic()
        first = asyncio.create_task(pool.ask(REQ))  # gets the 429
        await asyncio.sleep(0.05)
        second = asyncio.create_task(pool.ask(REQ))  # must also wait out the pause
        await asyncio.gather(first, second)
        assert backend.times[1] - t0 >= 0.4 and backend.times[2] - t0 >= 0.4
    asyncio.run(go())


def test_in_flight_never_exceeds_concurrency_and_prefetch_bounds_admission():
    async def go():
        backend = Scripted(delay=0.02)
        pool = Pool(backend, concurrency=5)
        admitted = {"now": 0, "most": 0}

        async def run(i):
            admitted["now"] += 1
            admitted["most"] = max(admitted["most"], admitted["now"])
            await pool.ask(REQ)
            admitted["now"] -= 1

        await pool.map(range(60), run, prefetch=8)
        assert backend.calls == 60 and backend.most == 5 and pool.max_in_flight == 5
        assert admitted["most"] <= 8
    asyncio.run(go())


def test_cancelling_the_owner_cancels_the_requests():
    async def go():
        backend = Scripted(delay=10)
        pool = Pool(backend, concurrency=4)
        task = asyncio.create_task(pool.map(range(100), lambda i: pool.ask(REQ)))
        await asyncio.sleep(0.1)
        task.cancel()
        t0 = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - t0 < 1  # no one waits out the 10 s requests
        assert backend.live == 0 and backend.calls == 4  # nothing was started after the cancel
    asyncio.run(go())


def test_unavailable_backend_stops_the_run():
    async def go():
        backend = Scripted([BackendUnavailable("url", "HTTP 401")] + [None] * 50, delay=0.01)
        pool = Pool(backend, concurrency=2)

        async def run(i):
            await pool.ask(REQ)

        with pytest.raises(ExceptionGroup) as group:
            await pool.map(range(50), run)
        assert group.group_contains(BackendUnavailable)
        assert backend.calls < 10
    asyncio.run(go())


def test_rpm_limits_the_request_rate():
    async def go():
        backend = Scripted(delay=0.0)
        pool = Pool(backend, concurrency=12, rpm=60)  # released as 10 per 10 s: a burst of 10, then one a second
        t0 = time.monotonic()
        await pool.map(range(12), lambda i: pool.ask(REQ))
        offsets = sorted(t - t0 for t in backend.times)
        assert sum(1 for t in offsets if t < 0.5) <= 10
        assert offsets[10] >= 0.9 and offsets[11] >= 1.9  # never earlier than the limit allows
    asyncio.run(go())
