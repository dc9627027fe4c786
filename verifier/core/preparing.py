"""Where images are prepared for the model: worker processes, one per core.

Preparing (decode, resize, JPEG, the report's thumbnail) is nearly all of
the client's CPU, and in threads it could not use the cores it had. py-spy
(`--gil`) on `capcheck verify` at concurrency 128 showed why: the GIL is
held through pyspng's decode (2,036 of 6,908 GIL-holding samples) and
Pillow's JPEG encoder (858), and Pillow's own PNG decoder gives it back
and takes it again for every 64 KiB block, so every worker and the event
loop (the SDK's request path) queued behind one another: 1.4 of 2 cores
used, 76 of 128 requests in flight (issue 19). Processes share no GIL.

Workers are started by the `forkserver` (`spawn` where there is none):
never `fork` from this process, whose threads (rich's progress refresh,
asyncio's resolver) could hold a lock at the moment of the fork. They
ignore Ctrl-C, which the person means for the run (it stops the pool and
keeps what is stored). A run with only a few images to prepare uses
threads: starting processes would cost more than it saves; so does the
rest of a run whose worker died (killed, out of memory). Like any use of
multiprocessing, a script that calls `verify_dataset` needs the
`if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from collections.abc import Iterable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from verifier.core import worker
from verifier.core.images import Prepared
from verifier.errors import VerifierError

PROCESSES_FROM = 16  # images to prepare before worker processes pay for their start (~0.2 s each)


class Preparer:
    """`await preparer.prepare(...)` from the event loop; `close()` when the run ends."""

    def __init__(self, images: int, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 2
        self.processes = images >= PROCESSES_FROM and self.workers > 1
        self._pool: Executor
        self._broken: list[dict] = []  # the worker table of each pool that broke (`_stop_broken`)
        if self.processes:
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            context = multiprocessing.get_context(method)
            if method == "forkserver":  # the server imports these once; each worker is a fork of it, ready
                context.set_forkserver_preload([worker.__name__])
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=worker.start)
        else:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="capcheck-prepare")

    def warm(self) -> None:
        """Start the workers now, not at the first image: the forkserver's start and its imports
        (Pillow, this module) run on another core while this process still hashes the dataset.
        From a thread: starting a worker waits for the forkserver, and the hashing need not."""
        if self.processes:
            threading.Thread(target=self._start_workers, name="capcheck-warm", daemon=True).start()

    def _start_workers(self) -> None:
        try:
            for _ in range(self.workers):
                self._pool.submit(worker.ready)
        except RuntimeError:  # the run ended first (closed): nothing to warm
            pass

    async def prepare(self, path: Path, max_side: int, fmt: str, reports: Path, sha: str) -> Prepared:
        """Raises VerifierError naming the file when it cannot be sent."""
        loop = asyncio.get_running_loop()
        try:
            done = await loop.run_in_executor(self._pool, worker.prepare_one, path, max_side, fmt, reports, sha)
        except BrokenProcessPool:  # a worker died (out of memory, killed): the run goes on, in threads
            if self.processes:
                self._broken.append(self._pool._processes)  # before shutdown(), which forgets it
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool, self.processes = ThreadPoolExecutor(self.workers, "capcheck-prepare"), False
                self._stop_broken()
            done = await loop.run_in_executor(self._pool, worker.prepare_one, path, max_side, fmt, reports, sha)
        if isinstance(done, str):
            raise VerifierError(path, done)
        return done

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._stop_broken()

    def _stop_broken(self) -> None:
        """Kill whatever is left of a broken pool's workers.

        When a worker dies, the pool's manager thread marks the pool broken and
        terminates the other workers, but a submit racing it can start one more
        that it never terminates (CPython 3.11 takes no lock there). If the
        dead worker held a queue's lock (killed while sending its result), that
        one blocks for ever, and so does the interpreter's exit, which joins the
        manager thread, which joins the worker: CI hung that way once, after
        every test had passed. The table is the pool's own (private, and the
        only handle on its processes), read again at `close`, by when a racing
        start has long registered there."""
        for table in self._broken:
            for process in list(table.values()):
                if process.is_alive():
                    process.kill()


class Ahead:
    """The first images prepared before anything asks for them: while the backend opens.

    Opening the OpenAI-compatible backend imports the `openai` SDK, about 1.1 s
    of one core (its 660 pydantic classes), and until then no request can
    leave. The workers are other processes, so they prepare the first wave
    meanwhile; when the backend is open its requests go out at once instead of
    one per prepared image (`capcheck verify`, 256 PNGs at concurrency 32 on 2
    cores: the first request left 2.2 s after the start and the 32nd 1.2 s
    after that; issue 19). `prepare(key, ...)` hands over a head start or
    prepares as usual; `cancel()` drops what nobody took (a backend that would
    not open)."""

    def __init__(self, preparer: Preparer, jobs: Iterable[tuple[str, tuple]]):
        self.preparer = preparer
        self._tasks = {key: asyncio.ensure_future(preparer.prepare(*args)) for key, args in jobs}

    async def started(self) -> Ahead:
        await asyncio.sleep(0)  # one turn of the loop: every head start reaches the pool before we block
        return self

    async def prepare(self, key: str, *args) -> Prepared:
        task = self._tasks.pop(key, None)
        return await task if task is not None else await self.preparer.prepare(*args)

    def cancel(self) -> None:
        for task in self._tasks.values():
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: an unreadable file nobody asked for is not an error to log
            task.cancel()
        self._tasks.clear()
