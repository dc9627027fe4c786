"""Typed errors of the trainer; the CLI renders each as one line."""

from __future__ import annotations

from captions.errors import CaptionsError


class TrainError(CaptionsError):
    """A training input we cannot use: config, model files, dataset."""


class PreflightFailed(TrainError):
    """A preflight check failed; `fix` says what to do, in one line."""

    def __init__(self, check: str, problem: str, fix: str):
        self.check, self.problem, self.fix = check, problem, fix
        super().__init__(None, f"{check}: {problem} — fix: {fix}")
