"""One writer per dataset: `DATASET/.capcheck/lock`.

Two `apply` runs at once once journaled the same captions twice and made
undo refuse for good; two `verify` runs paid for every request twice. So
every command that writes a dataset (build, verify, apply, undo, route,
ingest; later eval and train) holds this lock while it works.

- The lock is the OS's (`fcntl.flock` on POSIX, `msvcrt.locking` on
  Windows), on an open file: the OS drops it when the holder exits, kill -9
  included, so a crashed run never leaves a lock for a person to delete.
- The file's text names the holder (pid, command, since when), for the
  message of whoever waits.
- A second writer waits: it says once, on `on_wait`, who holds the lock,
  and after `CAPCHECK_LOCK_WAIT` seconds (default 10) it gives up with a
  `LockError` naming the holder. A second `verify` that got the lock finds
  the first one's answers in the store and asks nothing again.
- Re-entrant within one process (`capcheck run` builds, verifies and
  applies under one lock): a nested take of the same dataset is free.

This module imports nothing of ours but the errors, so every room can use it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from captions.errors import LockError

LOCK_NAME = "lock"
WAIT_ENV = "CAPCHECK_LOCK_WAIT"
DEFAULT_WAIT = 10.0
_POLL = 0.1
_WIN_OFFSET = 1 << 20  # Windows locks are mandatory: lock a byte past the holder text, which stays readable

_held: dict[Path, int] = {}  # lock file -> nesting depth, for this process
_guard = threading.Lock()


def lock_path(root: Path) -> Path:
    return Path(root).resolve() / ".capcheck" / LOCK_NAME


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WIN_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WIN_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


@contextmanager
def held(path: Path, poll: float = 0.02) -> Iterator[None]:
    """The same OS lock on `path`, held for a section that lasts milliseconds
    (opening the store): waited for as long as it takes, no holder written."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while not _try_lock(fd):
            time.sleep(poll)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


def holder(path: Path) -> str:
    """Who holds the lock, as its file says (`pid 123 (capcheck apply) since 21:04:05`)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    return text or "another capcheck process"


def _wait_limit() -> float:
    raw = os.environ.get(WAIT_ENV)
    if raw is None:
        return DEFAULT_WAIT
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise LockError(None, f"${WAIT_ENV} must be a number of seconds, not {raw!r}") from None


class DatasetLock:
    """`with DatasetLock(root, "apply"):` — held until the block ends (see the module doc)."""

    def __init__(self, root: Path, command: str, on_wait: Callable[[str], None] | None = None,
                 wait: float | None = None):
        self.path = lock_path(root)
        self.command = command
        self.on_wait = on_wait
        self.wait = wait
        self._fd: int | None = None
        self._nested = False

    def __enter__(self) -> DatasetLock:
        with _guard:
            if self.path in _held:
                _held[self.path] += 1
                self._nested = True
                return self
        limit = _wait_limit() if self.wait is None else self.wait
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LockError(self.path, f"cannot open the dataset lock: {exc.strerror or exc}") from None
        deadline = time.monotonic() + limit
        told = False
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                os.close(fd)
                raise LockError(self.path, f"the dataset is busy: {holder(self.path)} is writing it; "
                                           f"run again when it is done (waited {limit:g} s; ${WAIT_ENV} sets how long)")
            if not told and self.on_wait is not None:
                told = True
                self.on_wait(f"waiting for {holder(self.path)} to finish (it holds {self.path}) …")
            time.sleep(_POLL)
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"pid {os.getpid()} (capcheck {self.command}) since {time.strftime('%H:%M:%S')}\n".encode())
        except OSError:
            pass  # the lock holds without its label; a waiter then says "another capcheck process"
        self._fd = fd
        with _guard:
            _held[self.path] = 1
        return self

    def __exit__(self, *exc: object) -> None:
        with _guard:
            if self._nested:
                _held[self.path] -= 1
                return
            _held.pop(self.path, None)
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                _unlock(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None
