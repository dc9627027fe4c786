"""What a preparing worker process runs (`preparing.Preparer` starts them): one image at a time.

Kept apart from `preparing`, which is the run's side (asyncio, the pool), so
that a worker imports only this, the image code and Pillow: the forkserver
preloads it once and every worker is a fork of that, ready (no asyncio,
SQLite or CLI in a worker: about 5 MiB less each).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from pathlib import Path

from verifier.core import thumbs
from verifier.core.images import Prepared, prepare
from verifier.errors import VerifierError

# The run's own process is the critical path: every request leaves from its event loop, and at the
# start it imports the SDK while the workers begin preparing. Workers a step below it in the
# scheduler's eyes (nice +5: a third of its weight) take what it leaves instead of queueing it
# behind them. `capcheck verify`, 832x1216 PNGs on 2 cores, two runs each: 256 at concurrency 32,
# 20.9 and 20.6 s -> 20.1 and 20.3 s (nice +10: 20.0 and 19.9 s); 512 at 128, 21.9 and 22.0 s ->
# 21.5 and 20.6 s with nice +10 (issue 19). +5, not more: on a machine busy with other work the
# workers still get a fair share.
WORKER_NICE = 5


def prepare_one(path: Path, max_side: int, fmt: str, reports: Path, sha: str) -> Prepared | str:
    """The image to send (and the report's thumbnail, saved, when it has none yet), or why
    the file cannot be sent (a string: it crosses the process boundary)."""
    side = thumbs.THUMB_SIDE if thumbs.wanted(reports, sha) else None
    try:
        image = prepare(path, max_side, fmt, side)
    except VerifierError as exc:
        return exc.message
    if image.thumb is not None:
        thumbs.save(reports, sha, image.thumb)
    return image


def ready() -> None:
    """A task that does nothing: submitting it starts a worker."""
    return None


def start() -> None:
    """Each worker's initializer."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the run; the parent stops the pool
    if hasattr(os, "nice"):  # POSIX; on Windows the workers keep the run's priority
        os.nice(WORKER_NICE)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent) -> None:
    """A run killed with -9 cannot stop its pool, and a worker blocked on the task queue would
    wait for ever (each holds that queue's write end too, so it never reads EOF): it follows its run."""
    parent.join()
    os._exit(0)
