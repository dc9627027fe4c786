"""What a verify run found, image by image: the results `verify_dataset` returns and the reports read.

Apart from `verify`, so that what only reads results (the reports, the
review page, eval's summary) does not import the run's machinery.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from verifier.core.observation import Observation
from verifier.core.verdict import ERROR, FixItem, Verdict

ASKED, STORED, DERIVED = "asked", "store", "derived"


@dataclass
class ItemResult:
    image: str
    image_sha: str
    caption_sha: str
    verdict: Verdict
    source: str  # asked | store | derived
    attempts: int = 0
    latency_s: float | None = None
    raw: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None  # where the backend reports only a total (codex)
    model: str | None = None  # the model that answered, where it differs from the planned one (codex)


@dataclass
class RunResult:
    run_id: int
    backend: str
    model: str
    protocol: str
    results: list[ItemResult]
    skipped: dict[str, str]  # image -> why it was not checked
    wall_s: float
    requests: int
    max_in_flight: int
    unreadable: dict[str, str] = field(default_factory=dict)  # image -> why its file could not be read
    pending: int = 0  # images whose answers wait in a submitted batch
    others: list[str] = field(default_factory=list)  # pictures that are not images of the dataset (.gif, …)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.verdict.status == status)

    @property
    def asked(self) -> list[ItemResult]:
        return [r for r in self.results if r.source == ASKED]

    @property
    def could_not_run(self) -> bool:
        """Every item asked ended in error and nothing was answered."""
        asked = self.asked
        return bool(asked) and all(r.verdict.status == ERROR for r in asked) and not any(
            r.source != ASKED and r.verdict.status != ERROR for r in self.results)

    def tokens(self) -> tuple[int, int]:
        asked = self.asked
        return sum(r.prompt_tokens or 0 for r in asked), sum(r.completion_tokens or 0 for r in asked)

    def total_tokens(self) -> int:
        """Usage reported only as a total (codex), apart from the split above."""
        return sum(r.total_tokens or 0 for r in self.asked if r.prompt_tokens is None)


def verdict_from_row(row) -> Verdict:
    """A verdict as the store holds it (a `verdicts` row)."""
    fixes = tuple(FixItem(**f) for f in json.loads(row["fixes"] or "[]"))
    observation = Observation.from_dict(json.loads(row["observation"])) if row["observation"] else None
    return Verdict(row["status"], fixes, row["reason"], observation, json.loads(row["claims"]) if row["claims"] else {})


def result_from_row(row, source: str) -> ItemResult:
    return ItemResult(row["image"], row["image_sha"], row["caption_sha"], verdict_from_row(row), source,
                      row["attempts"], row["latency_s"], row["raw"], row["prompt_tokens"], row["completion_tokens"],
                      row["total_tokens"])
