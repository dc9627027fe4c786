"""What the scores say: the recommendation, the epochs tied with it, and the warnings.

Every sentence carries its counts and names its test, so a reader can
check it: "ep125 falls below ep20: 30/36 vs 36/36 checks pass, p = 0.012".
The warnings are the articles' lessons, looked for in every sweep:

- a later epoch significantly below the recommended one (overtraining; the
  first article's ep125 rebound), naming the checks that fell;
- a prompt format that scores significantly better than another at the
  same epoch (the built-in N prompt hiding what trigger-only K shows);
- a must_show tag the baseline already shows about as well as the recommended
  epoch (at least half its known checks, not significantly fewer): the LoRA
  does not earn it;
- a check no epoch passes, or one the model could never determine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from verifier.eval.epochs import BASELINE
from verifier.eval.stats import (
    ALPHA,
    TEST,
    Comparison,
    Counts,
    EpochScore,
    Outcome,
    compare,
    fisher_greater,
    recommend,
    score_epochs,
)


@dataclass
class Findings:
    epochs: dict[int, EpochScore]
    recommended: int | None
    tied: list[int]
    comparisons: list[Comparison]  # the best against every other scored LoRA epoch
    warnings: list[str] = field(default_factory=list)
    seeds: int = 0

    def recommendation(self) -> str:
        if self.recommended is None:
            return "no recommendation: no LoRA epoch has a known check (every answer was unknown)"
        best = self.epochs[self.recommended].total
        text = f"recommended: ep{self.recommended} ({best.passed}/{best.known} known checks pass"
        text += f", {best.score:.0%})" if best.score is not None else ")"
        others = [e for e in self.tied if e != self.recommended]
        if others:
            scored = [n for n, e in self.epochs.items() if n != BASELINE and e.total.known]
            text += f"; tied with it: {_span(self.tied, scored)} ({TEST}, α = {ALPHA}"
            unseparated = [c for c in self.comparisons if c.other in others and c.seeds_needed is not None]
            if unseparated:
                text += f"; with {self.seeds} seed(s) these differences are not significant"
            text += ")"
        else:
            text += f"; every other epoch scores significantly lower ({TEST}, α = {ALPHA})" if self.comparisons \
                else "; the only LoRA epoch scored"
        return text

    def details(self) -> list[str]:
        return [c.line(self.seeds) for c in self.comparisons]


def _span(epochs: list[int], scored: list[int]) -> str:
    """`ep20–50` when the tied epochs are a run of neighbours among those scored, else a list (`ep5, ep20`)."""
    start = scored.index(epochs[0])
    if len(epochs) > 2 and scored[start:start + len(epochs)] == epochs:
        return f"ep{epochs[0]}–{epochs[-1]}"
    return ", ".join(f"ep{e}" for e in epochs)


def _rate(c: Counts) -> float:
    return c.passed / c.known if c.known else 0.0


def analyse(outcomes: list[Outcome], earned: set[str] | None = None) -> Findings:
    """`earned`: the check names a LoRA should earn (the baseline warning looks at these; not must_not tags)."""
    epochs = score_epochs(outcomes)
    seeds = max((len({o.seed for o in outcomes if o.epoch == e}) for e in epochs), default=0)
    best = recommend(epochs)
    if best is None:
        found = Findings(epochs, None, [], [], seeds=seeds)
        found.warnings += _never(epochs)
        return found
    top = epochs[best]
    comparisons = [compare(top, e, seeds) for n, e in epochs.items()
                   if n not in (best, BASELINE) and e.total.known]
    tied = sorted([best, *(c.other for c in comparisons if c.p >= ALPHA)])
    found = Findings(epochs, best, tied, comparisons, seeds=seeds)
    found.warnings += _decline(epochs, top, comparisons)
    found.warnings += _formats(epochs)
    found.warnings += _baseline(epochs, top, earned)
    found.warnings += _never(epochs)
    return found


def _decline(epochs: dict[int, EpochScore], top: EpochScore, comparisons: list[Comparison]) -> list[str]:
    out = []
    for c in comparisons:
        if c.other < top.epoch or c.p >= ALPHA:
            continue
        later = epochs[c.other]
        fell = [f"{name} {later.checks[name].words()} vs {counts.words()}" for name, counts in top.checks.items()
                if later.checks[name].known and _rate(later.checks[name]) < _rate(counts)]
        out.append(f"ep{c.other} falls below ep{top.epoch} (overtraining?): {c.other_counts[0]}/{c.other_counts[1]} "
                   f"vs {c.best_counts[0]}/{c.best_counts[1]} checks pass, p = {c.p:.3g} ({TEST})"
                   + (f"; fell: {', '.join(fell)}" if fell else ""))
    return out


def _formats(epochs: dict[int, EpochScore]) -> list[str]:
    out = []
    for n, e in epochs.items():
        for hi, a in e.formats.items():
            for lo, b in e.formats.items():
                if hi == lo or not a.known or not b.known or _rate(a) <= _rate(b):
                    continue
                p = fisher_greater(a.passed, a.failed, b.passed, b.failed)
                if p < ALPHA:
                    out.append(f"ep{n}: format {hi} passes {a.words()} checks but {lo} {b.words()} (p = {p:.3g}, "
                               f"{TEST}): {hi} hides what {lo} shows")
    return out


def _baseline(epochs: dict[int, EpochScore], top: EpochScore, earned: set[str] | None) -> list[str]:
    base = epochs.get(BASELINE)
    if base is None:
        return []
    out = []
    for name, b in base.checks.items():
        r = top.checks.get(name)
        if (earned is not None and name not in earned) or r is None or not b.known or not r.known:
            continue
        p = fisher_greater(r.passed, r.failed, b.passed, b.failed)
        if b.passed * 2 >= b.known and p >= ALPHA:
            out.append(f"the baseline already shows {name}: {b.words()} pass without the LoRA vs {r.words()} at "
                       f"ep{top.epoch} (p = {p:.3g}, {TEST}): the LoRA does not earn it")
    return out


def _never(epochs: dict[int, EpochScore]) -> list[str]:
    totals: dict[str, Counts] = {}
    for e in epochs.values():
        for name, c in e.checks.items():
            totals.setdefault(name, Counts()).merge(c)
    out = []
    for name, c in totals.items():
        if c.known and not c.passed:
            out.append(f"no epoch passes {name}: 0 of {c.known} known checks (baseline included)")
        elif not c.known:
            out.append(f"{name} was never determined ({c.unknown} checks unknown): not scored")
    return out
