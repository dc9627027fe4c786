"""The tags audit: every checkable tag of a caption asked about, with probes.

Pure functions. For each image the model is asked, in a shuffled order,
about the caption's *checkable* tags and a few *probe* tags (tags other
captions of the dataset use and this one does not), each answered
`present`, `absent` or `cannot determine`. It cannot tell which tags are
the caption's, so:

- a caption tag called absent is refuted (a fix item `tags`);
- a probe called present is a suggestion (reported, never applied);
- the share of probes called present measures how readily the model says
  yes to what no caption claims, and the share of caption tags called
  absent is its disagreement rate: the two trust rates of a run;
- when a large share of a caption's tags are refuted, the caption may
  belong to another image: the other mismatched images are searched for
  the one whose caption this image's answers confirm best (a likely swap).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from captions.caption import Caption
from captions.policy import Policy
from captions.trigger import guess_trigger
from captions.visual import CAP, not_asked
from captions.vocab import Vocabulary, with_builtin
from verifier.core.observation import ABSENT, CANNOT, PRESENT

TAGS = "tags"  # the aspect name the audit goes by (--aspects framing,tags)
NOT_ASKED = "not_asked"  # a verdict's claims: the caption's tokens not asked, and why
ANSWERS = (PRESENT, ABSENT, CANNOT)
PROBES = 4  # probe tags per image
MISMATCH_SHARE = 0.5  # this share of a caption's answered tags refuted: it may be another image's caption
MISMATCH_MIN = 3  # ...counted only when at least this many of its tags were answered

MAX_ASKED = 64  # caption tags asked per image: a 5,750-tag caption must not become one 1.2 MB request


def checkable(tag: str, policy: Policy, vocab: Vocabulary | None = None, aspect_tags: frozenset[str] = frozenset(),
              trigger: str | None = None) -> bool:
    """Can a model check this tag against the image? Only a visual Danbooru
    general tag (`captions.visual.not_asked` says why any other is not: the
    trigger, quality, rating, count, the policy's, names, unknown tokens),
    and not a tag a checked aspect owns (that aspect checks it). Without a
    tag CSV the vocabulary capcheck ships decides."""
    return tag not in aspect_tags and not_asked(tag, policy, with_builtin(vocab), trigger) is None


def unasked(refuted: list[str], claims: dict, policy: Policy, vocab: Vocabulary | None, trigger: str | None
            ) -> dict[str, str]:
    """The refuted tags of a verdict that must not be removed, and why: a tag its
    question did not hold (`claims`), or one today's rules would not ask (a report
    from an older run that asked about the trigger, say). What was never asked as
    a visual tag is never taken out of a caption."""
    asked = set(claims.get(TAGS) or [])
    out: dict[str, str] = {}
    for tag in refuted:
        why = not_asked(tag, policy, with_builtin(vocab), trigger or policy.trigger)
        if why is not None or tag not in asked:
            out[tag] = why or "not among the tags asked"
    return out


def aspect_owned(policy: Policy, aspects: Iterable[str]) -> frozenset[str]:
    """The tags the checked aspects' values write (`cowboy shot` when framing is checked)."""
    out: set[str] = set()
    for name in aspects:
        spec = policy.aspect(name)
        for value in spec.values.values() if spec else []:
            out.update(value.tags)
    return frozenset(out)


def sort_tags(caption: Caption, policy: Policy, vocab: Vocabulary | None = None,
              aspect_tags: frozenset[str] = frozenset(), trigger: str | None = None, cap: int = MAX_ASKED
              ) -> tuple[list[str], dict[str, str]]:
    """The caption's checkable tags, each once, in caption order (the first `cap`),
    and every other token with why it is not asked (an aspect's tags are asked as the aspect)."""
    known = with_builtin(vocab)
    asked: list[str] = []
    skipped: dict[str, str] = {}
    for tag in dict.fromkeys(caption.tags):
        if tag in aspect_tags:
            continue
        why = not_asked(tag, policy, known, trigger)
        if why is None and len(asked) >= cap:
            why = CAP
        if why is None:
            asked.append(tag)
        else:
            skipped[tag] = why
    return asked, skipped


def caption_tags(caption: Caption, policy: Policy, vocab: Vocabulary | None = None,
                 aspect_tags: frozenset[str] = frozenset(), trigger: str | None = None) -> list[str]:
    """The caption's checkable tags, each once, in caption order."""
    return sort_tags(caption, policy, vocab, aspect_tags, trigger)[0]


def rivals(policy: Policy, tag: str) -> list[str]:
    """Tags of the other values of the aspect `tag` belongs to: a bikini
    caption's rivals are `nude`, `school swimsuit`, … (asked as probes first,
    so a swapped caption is caught from both sides)."""
    out: list[str] = []
    for _, spec in policy.aspects.items():
        owner = [name for name, v in spec.values.items() if tag in v.tags]
        if owner:
            out += [t for name, v in spec.values.items() if name not in owner for t in v.tags]
    return out


def choose_probes(own: list[str], used: Counter[str], policy: Policy, seed: str, n: int = PROBES) -> list[str]:
    """Up to `n` tags other captions of the dataset use and this one does not:
    first the rivals of its own tags that the dataset uses, then others drawn
    (seeded, so a re-run asks the same) in proportion to how often they appear."""
    mine = set(own)
    rng = random.Random(seed)
    picked: list[str] = []
    for tag in own:
        for rival in rivals(policy, tag):
            if rival in used and rival not in mine and rival not in picked:
                picked.append(rival)
    rng.shuffle(picked)
    picked = picked[:n]
    rest = sorted(t for t in used if t not in mine and t not in picked)
    while len(picked) < n and rest:
        tag = rng.choices(rest, weights=[used[t] for t in rest])[0]
        picked.append(tag)
        rest.remove(tag)
    return picked


def ask_order(own: list[str], probes: list[str], seed: str) -> list[str]:
    """The tags as the model sees them: caption tags and probes mixed."""
    tags = list(dict.fromkeys([*own, *probes]))
    random.Random(seed + ":order").shuffle(tags)
    return tags


@dataclass(frozen=True)
class TagAudit:
    claimed: list[str]
    refuted: list[str] = field(default_factory=list)  # caption tags called absent
    confirmed: list[str] = field(default_factory=list)  # caption tags called present
    suggested: list[str] = field(default_factory=list)  # probes called present
    probes_answered: int = 0  # probes called present or absent
    undetermined: list[str] = field(default_factory=list)
    share: float = MISMATCH_SHARE
    not_asked: dict[str, str] = field(default_factory=dict)  # the caption's other tokens -> why not

    @property
    def answered(self) -> int:
        return len(self.refuted) + len(self.confirmed)

    @property
    def mismatch(self) -> bool:
        """So many of its tags refuted that the caption may be another image's."""
        return self.answered >= MISMATCH_MIN and len(self.refuted) >= self.share * self.answered


def audit(answers: dict[str, str], claimed: list[str], probes: list[str], share: float = MISMATCH_SHARE) -> TagAudit:
    """The caption's tags and the probes, judged by the model's answers."""
    refuted = [t for t in claimed if answers.get(t) == ABSENT]
    confirmed = [t for t in claimed if answers.get(t) == PRESENT]
    unknown = [t for t in [*claimed, *probes] if answers.get(t, CANNOT) == CANNOT]
    suggested = [t for t in probes if answers.get(t) == PRESENT and t not in claimed]
    answered = sum(1 for t in probes if answers.get(t) in (PRESENT, ABSENT) and t not in claimed)
    return TagAudit(list(claimed), refuted, confirmed, suggested, answered, unknown, share)


def fit(answers: dict[str, str], tags: list[str]) -> tuple[int, int]:
    """(tags confirmed, tags answered) of a caption against one image's answers."""
    said = [answers[t] for t in tags if answers.get(t) in (PRESENT, ABSENT)]
    return sum(1 for a in said if a == PRESENT), len(said)


def _fits(answers: dict[str, str], tags: list[str], own: list[str]) -> float | None:
    """How well a caption fits an image: the share of its answered tags
    confirmed, when at least one tag its own caption lacks is confirmed
    (shared tags alone say nothing about which caption is whose)."""
    yes, asked = fit(answers, tags)
    distinct = [t for t in tags if t not in own and answers.get(t) == PRESENT]
    return yes / asked if asked and distinct else None


def find_swaps(mismatched: dict[str, tuple[list[str], dict[str, str]]]) -> list[tuple[str, str]]:
    """Likely swaps among mismatched images: {image: (its caption tags, its answers)}.

    For each image, the other mismatched caption its answers confirm best
    (better than its own); a pair that each pick the other is a likely swap."""
    best: dict[str, str] = {}
    for image, (own, answers) in mismatched.items():
        own_yes, own_asked = fit(answers, own)
        own_score = own_yes / own_asked if own_asked else 0.0
        scored = [(s, other) for other, (tags, _) in mismatched.items() if other != image
                  and (s := _fits(answers, tags, own)) is not None and s > own_score]
        if scored:
            best[image] = max(scored, key=lambda x: (x[0], x[1]))[1]
    return sorted({tuple(sorted((a, b))) for a, b in best.items() if best.get(b) == a})  # type: ignore[misc]


@dataclass(frozen=True)
class TrustRates:
    probes: int  # probes the model answered present or absent
    probes_present: int
    tags: int  # caption tags it answered present or absent
    tags_absent: int

    @property
    def yes_rate(self) -> float | None:
        """Share of probes called present: saying yes to what the caption does not claim."""
        return self.probes_present / self.probes if self.probes else None

    @property
    def disagreement_rate(self) -> float | None:
        return self.tags_absent / self.tags if self.tags else None

    def as_dict(self) -> dict[str, object]:
        return {"probes_answered": self.probes, "probes_present": self.probes_present,
                "probe_yes_rate": self.yes_rate, "caption_tags_answered": self.tags,
                "caption_tags_absent": self.tags_absent, "disagreement_rate": self.disagreement_rate}

    def line(self) -> str:
        def pct(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.0%}"

        return (f"tags: probe yes-rate {pct(self.yes_rate)} ({self.probes_present} of {self.probes} probes called "
                f"present) · disagreement rate {pct(self.disagreement_rate)} ({self.tags_absent} of {self.tags} "
                f"caption tags called absent)")


def trust_rates(audits: Iterable[TagAudit]) -> TrustRates:
    probes = present = tags = absent = 0
    for a in audits:
        probes += a.probes_answered
        present += len(a.suggested)
        tags += a.answered
        absent += len(a.refuted)
    return TrustRates(probes, present, tags, absent)


class Question(NamedTuple):
    tags: list[str]  # the caption's checkable tags
    probes: list[str]
    not_asked: dict[str, str]  # the caption's other tokens -> why not (captions.visual.WHY)


def questions(captions: dict[str, Caption], policy: Policy, vocab: Vocabulary | None, aspects: Iterable[str],
              n_probes: int = PROBES, dataset: Iterable[Caption] | None = None, cap: int = MAX_ASKED
              ) -> dict[str, Question]:
    """Per image (key: any id, also the probe seed): its checkable tags, its probes,
    and what it does not ask. The probe pool is every checkable tag the dataset's
    captions use (`dataset`: all of them, when `captions` are only the images
    being checked). With no trigger in the policy, the dataset's is guessed
    (`captions.trigger`), as `capcheck init` would: it is never asked about."""
    owned = aspect_owned(policy, aspects)
    everyone = list(captions.values()) if dataset is None else list(dataset)
    trigger = policy.trigger or guess_trigger([c.tags for c in everyone], vocab)
    own = {key: sort_tags(c, policy, vocab, owned, trigger, cap) for key, c in captions.items()}
    pool = [tags for tags, _ in own.values()] if dataset is None else \
        [sort_tags(c, policy, vocab, owned, trigger, cap)[0] for c in everyone]
    used: Counter[str] = Counter(t for tags in pool for t in tags)
    return {key: Question(tags, choose_probes(tags, used, policy, key, n_probes), skipped)
            for key, (tags, skipped) in own.items()}


def result_audit(claims: dict, observation_tags: dict[str, str] | None, share: float = MISMATCH_SHARE
                 ) -> TagAudit | None:
    """The tags audit of one stored verdict (its claims and observation), or None without one."""
    if TAGS not in claims or observation_tags is None:
        return None
    done = audit(observation_tags, list(claims[TAGS]), list(claims.get("probes", [])), share)
    return replace(done, not_asked=dict(claims.get(NOT_ASKED) or {}))


def run_swaps(audited: dict[str, tuple[TagAudit, dict[str, str]]], mismatched: set[str]) -> dict[str, str]:
    """image -> the image whose caption it likely carries (both ways), among the mismatched ones."""
    mismatched = {image: (a.claimed, answers) for image, (a, answers) in audited.items() if image in mismatched}
    out: dict[str, str] = {}
    for a, b in find_swaps(mismatched):
        out[a], out[b] = b, a
    return out
