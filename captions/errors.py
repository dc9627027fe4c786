"""Typed errors of the captions package.

Each names the file it is about; the CLI renders them once, as one line.
"""

from __future__ import annotations

from pathlib import Path


class CaptionsError(Exception):
    """Bad input: a file we cannot use, and why."""

    def __init__(self, path: str | Path | None, message: str):
        self.path = str(path) if path is not None else None
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class PolicyError(CaptionsError):
    """The policy YAML is unreadable or invalid."""


class SidecarError(CaptionsError):
    """A generation sidecar has no usable positive prompt."""


class VocabularyError(CaptionsError):
    """The Danbooru tag CSV is unreadable."""


class CaptionWriteError(CaptionsError):
    """A caption could not be written safely."""


class LockError(CaptionsError):
    """Another capcheck process is writing this dataset (it holds the dataset lock)."""
