"""Atomic, journaled caption writes: the journal and the file change as one unit.

A write is four steps, each durable before the next:

1. `record`: the intent (path, text before, text after) is committed, marked pending;
2. the new text goes to a temp file beside the caption (`.<name>.<random>.tmp`), fsynced;
3. the temp file is renamed over the caption (all of the text or none);
4. `done`: the intent is marked done.

A crash (kill -9, power) between any two steps leaves a pending intent whose
file holds either its `before` (the rename never happened: the intent is
dropped, the temp file removed) or its `after` (it did: marked done). So
recovery, at the next journaled command (`recover_intent`), knows which,
and the journal is never ahead of the disk. A file holding neither was
edited after the crash: the intent stays pending and is named. The journal
itself lives outside this package (the verifier keeps it in SQLite).
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Protocol

from captions.errors import CaptionWriteError

_UNSET = object()


class Journal(Protocol):
    def record(self, path: Path, before: str | None, after: str | None, reason: str) -> object:
        """Commit the intent (step 1); `after` None: the file is to be removed. Returns its token."""

    def done(self, token: object) -> None:
        """Mark the intent done (step 4)."""


# What atomic_write's mkstemp leaves behind when a crash comes between steps 2 and 3.
TEMP_FILE = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


def recover_intent(path: Path, before: str | None, after: str | None) -> str:
    """What a pending intent's file says about it after a crash: 'done' (it
    holds `after`), 'rolled back' (it holds `before`: the rename never came),
    or 'unknown' (neither: edited since, or unreadable)."""
    try:
        now = read_caption(path)
    except CaptionWriteError:
        return "unknown"
    if now == after:
        return "done"
    if now == before:
        return "rolled back"
    return "unknown"


def orphaned_temps(root: Path, skip: frozenset[str]) -> list[Path]:
    """Temp files a crash left between the temp write and the rename (never the
    caption itself: the rename is the only step that touches it)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        found += [Path(dirpath) / n for n in filenames if TEMP_FILE.match(n)]
    return sorted(found)


def read_caption(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            return fh.read()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise CaptionWriteError(path, f"not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                                      "re-save the caption as UTF-8") from None
    except OSError as exc:
        raise CaptionWriteError(path, f"cannot read caption: {exc}") from None


def read_only(path: Path) -> bool:
    """No write bit at all: the person locked this file (0444). Checked by the
    mode, not os.access, which says yes to root whatever the mode."""
    return not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def atomic_write(path: Path, text: str) -> None:
    """Temp file in the same folder, fsync, rename: all of the text or none."""
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise CaptionWriteError(path, f"cannot write caption: {exc.strerror or exc}") from None


def write_caption(path: Path, text: str, journal: Journal | None, reason: str, expect: object = _UNSET) -> bool:
    """Write `text` to `path` unless it already holds it; journal first.

    `expect`, when given, is the text the caller last read: if the file
    changed since, nothing is written (someone edited it by hand).
    Returns True when the file changed.
    """
    before = read_caption(path)
    if expect is not _UNSET and before != expect:
        raise CaptionWriteError(path, "caption changed on disk since it was read; not overwritten")
    if before == text:
        return False
    if before is not None and read_only(path):  # os.replace would swap it out regardless of its mode
        raise CaptionWriteError(path, "caption is read-only; not overwritten")
    token = journal.record(path, before, text, reason) if journal is not None else None
    atomic_write(path, text)
    if journal is not None:
        journal.done(token)
    return True


def remove_caption(path: Path, journal: Journal, reason: str, expect: str) -> None:
    """Delete a caption (undo of a run that created it), journaled like a write:
    intent, unlink, done."""
    if read_caption(path) != expect:
        raise CaptionWriteError(path, "caption changed on disk since it was read; not removed")
    token = journal.record(path, expect, None, reason)
    try:
        path.unlink()
    except OSError as exc:
        raise CaptionWriteError(path, f"cannot remove caption: {exc.strerror or exc}") from None
    journal.done(token)
