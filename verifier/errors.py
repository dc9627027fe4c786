"""Typed errors of the verifier, rendered once at the CLI boundary.

They extend `CaptionsError` so the CLI has one place that turns any bad
input into `error: <file or url>: <problem>`.
"""

from __future__ import annotations

from captions.errors import CaptionsError


class VerifierError(CaptionsError):
    """Bad input to a verifier command (dataset, options)."""


class BackendUnavailable(CaptionsError):
    """The vision model cannot be used at all: bad key, unknown model,
    missing executable, or every request failed. The run stops."""


class ReportError(CaptionsError):
    """A report file is missing or unreadable."""


class SampleError(VerifierError):
    """An eval sample whose metadata cannot be read, or whose epoch cannot be determined."""


class StoreError(VerifierError):
    """The store (`.capcheck/capcheck.db`) cannot be used: not a capcheck
    store, a newer schema, damaged, or the disk under it is full."""
