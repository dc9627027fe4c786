"""Atomic, journaled caption writes.

A caption is written by temp file + fsync + rename, so a crash leaves either
the old text or the new, never half of each; and the before/after text is
recorded in a journal *before* the rename, so every write can be undone.
The journal itself lives outside this package (the verifier keeps it in
SQLite); anything with a `record` method will do.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Protocol

from captions.errors import CaptionWriteError

_UNSET = object()


class Journal(Protocol):
    def record(self, path: Path, before: str | None, after: str, reason: str) -> None: ...


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
    if journal is not None:
        journal.record(path, before, text, reason)
    atomic_write(path, text)
    return True
