"""build: sidecar prompts -> captions, for a whole dataset."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from captions.aspects import ASPECTS
from captions.compose import caption_from_prompt
from captions.dataset import iter_images
from captions.errors import CaptionsError, SidecarError
from captions.facts import Facts
from captions.journal import Journal, read_caption, write_caption
from captions.policy import Policy
from captions.sidecar import read_sidecar

WRITTEN, UNCHANGED, DIFFERS, SKIPPED, INVALID = "written", "unchanged", "differs", "skipped", "invalid"


@dataclass(frozen=True)
class Outcome:
    image: Path
    status: str
    reason: str = ""
    facts: Facts | None = None
    text: str | None = None


@dataclass
class BuildReport:
    root: Path
    dry_run: bool
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def of(self, status: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]

    def distribution(self) -> dict[str, Counter[str]]:
        """Per aspect, how many built captions hold each value (None: not stated)."""
        out: dict[str, Counter[str]] = {a: Counter() for a in (*ASPECTS, "rating")}
        for o in self.outcomes:
            if o.facts is not None:
                for aspect, value in o.facts.as_dict().items():
                    out[aspect][value or "-"] += 1
        return out


def build_dataset(
    root: Path,
    policy: Policy,
    *,
    dry_run: bool = False,
    force: bool = False,
    missing_only: bool = False,
    journal: Journal | None = None,
) -> BuildReport:
    """Write `<stem>.txt` for every image with a JSON sidecar under `root`.

    An existing caption that differs from what build would write is left
    alone unless `force` (it may hold hand edits); `missing_only` leaves
    every existing caption alone. A bad sidecar is reported, not fatal.
    """
    report = BuildReport(root, dry_run)
    for item in iter_images(root):
        if not item.sidecar.exists():
            report.outcomes.append(Outcome(item.image, SKIPPED, "no JSON sidecar"))
            continue
        try:
            prompt = read_sidecar(item.sidecar)
        except SidecarError as exc:
            report.outcomes.append(Outcome(item.image, INVALID, str(exc)))
            continue
        facts, text = caption_from_prompt(prompt, policy)
        try:
            before = read_caption(item.caption)
        except CaptionsError as exc:  # that image alone, and never written over: it may hold someone's words
            report.outcomes.append(Outcome(item.image, INVALID, str(exc)))
            continue
        if before == text:
            status, reason = UNCHANGED, ""
        elif before is not None and (missing_only or not force):
            status = DIFFERS
            reason = "caption exists" if missing_only else "existing caption differs (use --force to overwrite)"
        else:
            status, reason = WRITTEN, "overwritten" if before is not None else ""
            if not dry_run:
                write_caption(item.caption, text, journal, "build", expect=before)
        report.outcomes.append(Outcome(item.image, status, reason, facts, text))
    return report
