"""Scoring the epochs: counts, the exact test, the recommendation and the warnings.

Pure functions over plain data (one `Outcome` per sample). A check is
pass, fail or unknown; unknown (cannot determine, refused, error) is
counted but never scored. An epoch's score is the share of its known checks
that pass. The recommendation is the best-scoring LoRA epoch (the earliest
of equal scores); the epochs *tied* with it are those a one-sided Fisher's
exact test on the 2×2 pass/fail table cannot call worse at α = 0.05. A few
seeds rarely separate epochs, so each tied epoch also says how many seeds
would, were the rates what they are now (the counts scaled until p < α).
scipy is not a dependency: the hypergeometric tail is a few lines of
`math.comb`, exact in integers.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from math import comb

from verifier.eval.epochs import BASELINE

PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"
ALPHA = 0.05
TEST = "Fisher's exact test, one-sided, on known checks"
MAX_SEEDS = 1000  # past this many seeds we say "more than"


@dataclass
class Counts:
    passed: int = 0
    failed: int = 0
    unknown: int = 0

    def add(self, result: str) -> None:
        if result == PASS:
            self.passed += 1
        elif result == FAIL:
            self.failed += 1
        else:
            self.unknown += 1

    def merge(self, other: Counts) -> None:
        self.passed, self.failed, self.unknown = (self.passed + other.passed, self.failed + other.failed,
                                                  self.unknown + other.unknown)

    @property
    def known(self) -> int:
        return self.passed + self.failed

    @property
    def score(self) -> float | None:
        return self.passed / self.known if self.known else None

    def as_dict(self) -> dict[str, int]:
        return {"pass": self.passed, "fail": self.failed, "unknown": self.unknown}

    def words(self) -> str:
        return f"{self.passed}/{self.known}"


@dataclass(frozen=True)
class Outcome:
    """One sample's checks: check name -> pass / fail / unknown."""

    epoch: int
    format: str
    seed: int | None
    results: dict[str, str]


@dataclass
class EpochScore:
    epoch: int
    samples: int = 0
    total: Counts = field(default_factory=Counts)
    checks: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    formats: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))

    @property
    def score(self) -> float | None:
        return self.total.score


def fisher_greater(a_pass: int, a_fail: int, b_pass: int, b_fail: int) -> float:
    """P(A's passes >= observed) under the hypergeometric null (A no better than B): small when A is better."""
    n_a, total, passes = a_pass + a_fail, a_pass + a_fail + b_pass + b_fail, a_pass + b_pass
    if n_a == 0 or n_a == total:
        return 1.0
    top = min(n_a, passes)
    tail = sum(comb(passes, x) * comb(total - passes, n_a - x) for x in range(a_pass, top + 1))
    return float(Fraction(tail, comb(total, n_a)))


def score_epochs(outcomes: list[Outcome]) -> dict[int, EpochScore]:
    epochs: dict[int, EpochScore] = {}
    for o in outcomes:
        e = epochs.setdefault(o.epoch, EpochScore(o.epoch))
        e.samples += 1
        for name, result in o.results.items():
            e.checks[name].add(result)
            e.total.add(result)
            e.formats[o.format].add(result)
    return dict(sorted(epochs.items()))


@dataclass(frozen=True)
class Comparison:
    """The best epoch against another: counts, the p-value, and the seeds that would separate them."""

    best: int
    other: int
    best_counts: tuple[int, int]  # (pass, known)
    other_counts: tuple[int, int]
    p: float
    seeds_needed: int | None  # None: equal rates (no number of seeds separates them) or already separate

    def line(self, seeds: int) -> str:
        (bp, bk), (op, ok) = self.best_counts, self.other_counts
        text = f"ep{self.other} vs ep{self.best}: {op}/{ok} vs {bp}/{bk} checks pass, p = {self.p:.3g}"
        if self.p >= ALPHA:
            if self.seeds_needed is None:
                text += " (the same rate: no number of seeds separates them)"
            elif self.seeds_needed > MAX_SEEDS:
                text += f" (not separable with fewer than {MAX_SEEDS} seeds at these rates)"
            else:
                text += f" (not significant with {seeds} seeds; about {self.seeds_needed} would separate them " \
                        "at these rates)"
        return text


def seeds_to_separate(a: Counts, b: Counts, seeds: int) -> int | None:
    """Seeds at which these rates (counts scaled by seeds'/seeds) give p < α; None when the rates are equal."""
    if a.known == 0 or b.known == 0 or a.passed * b.known <= b.passed * a.known:
        return None
    seeds = max(seeds, 1)
    for more in range(seeds + 1, MAX_SEEDS + 2):
        scale = Fraction(more, seeds)
        scaled = [round(x * scale) for x in (a.passed, a.failed, b.passed, b.failed)]
        if fisher_greater(*scaled) < ALPHA:
            return more
    return MAX_SEEDS + 1


def compare(best: EpochScore, other: EpochScore, seeds: int) -> Comparison:
    a, b = best.total, other.total
    p = fisher_greater(a.passed, a.failed, b.passed, b.failed)
    return Comparison(best.epoch, other.epoch, (a.passed, a.known), (b.passed, b.known), p,
                      seeds_to_separate(a, b, seeds) if p >= ALPHA else None)


def recommend(epochs: dict[int, EpochScore]) -> int | None:
    """The best-scoring LoRA epoch (never the baseline), the earliest of equal scores; None when none was scored."""
    scored = [(Fraction(e.total.passed, e.total.known), -n) for n, e in epochs.items()
              if n != BASELINE and e.total.known]
    return -max(scored)[1] if scored else None
