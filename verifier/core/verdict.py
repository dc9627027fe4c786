"""Verdicts: the model's observation compared with the caption's facts.

Code compares; the model never writes the diff, so its wording cannot drift
into a caption. A verdict is `ok`, `fix` (with fix items), `refused` (the
model declined, was filtered, answered nothing, or could not determine an
aspect the caption claims) or `error` (no usable answer after retries).
Neither `refused` nor `error` ever counts as OK.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from captions.facts import Facts
from verifier.core.observation import Observation
from verifier.core.tags import ABSENT, MISMATCH_SHARE, NOT_ASKED, TAGS, audit

OK, FIX, REFUSED, ERROR = "ok", "fix", "refused", "error"
MISMATCH = "mismatch"  # the verdict reason of a caption that may be another image's
STATUSES = (OK, FIX, REFUSED, ERROR)

# finish_reason values that mean "the model finished normally" (any case).
NORMAL_FINISH = frozenset({"stop", "length", "tool_calls", "function_call", "eos", "end_turn", "max_tokens",
                           "stop_sequence", "end"})
# An apology or a refusal written as prose instead of an answer.
_APOLOGY = re.compile(
    r"\b(?:i'?m sorry|i am sorry|sorry, but|i apologi[sz]e|i can(?:'|no)t (?:help|assist|comply|provide|do that"
    r"|process|analy[sz]e|view|evaluate|verify)|i cannot (?:help|assist|comply|provide|process|analy[sz]e)"
    r"|i(?:'m| am) (?:not able|unable) to|unable to (?:help|assist|comply)|as an ai\b|against (?:my|the) "
    r"(?:policy|policies|guidelines)|not (?:able|allowed) to (?:help|assist))",
    re.I,
)


@dataclass(frozen=True)
class FixItem:
    aspect: str
    caption: str | None  # what the caption claims
    image: str  # what the image shows
    borderline: bool = False

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def __str__(self) -> str:
        mark = " (borderline)" if self.borderline else ""
        return f"{self.aspect}: image shows {self.image} (caption says {self.caption}){mark}"


@dataclass(frozen=True)
class Verdict:
    status: str
    fixes: tuple[FixItem, ...] = ()
    reason: str | None = None  # why refused / error
    observation: Observation | None = None
    claims: dict = field(default_factory=dict)  # the caption's facts (and tags) that were checked


@dataclass(frozen=True)
class TagClaims:
    """The tags audit's question for one image: the caption's checkable tags and the probes."""

    tags: tuple[str, ...] = ()
    probes: tuple[str, ...] = ()
    share: float = MISMATCH_SHARE
    not_asked: tuple[tuple[str, str], ...] = ()  # the caption's other tokens, (tag, why not)


def checked_claims(claims: Facts, aspects, tags: TagClaims | None = None) -> dict:
    """What the caption claims for the aspects being checked (kept with every verdict);
    with the tags audit, also its checkable tags and the probes asked with them."""
    out: dict = {a: claims.get(a) for a in aspects if a != TAGS}
    if tags is not None:
        out[TAGS] = list(tags.tags)
        out["probes"] = list(tags.probes)
        out[NOT_ASKED] = dict(tags.not_asked)
    return out


def judge(observation: Observation, claims: Facts, aspects: list[str], tags: TagClaims | None = None) -> Verdict:
    """Compare what the image shows with what the caption claims.

    An aspect the caption makes no claim about (a view from behind states no
    expression) cannot be contradicted. An aspect the caption claims but the
    model could not determine makes the verdict `refused`: nobody checked it.
    A caption tag the model calls absent is a fix item (`tags`); `cannot
    determine` on a tag is neither (tags are many, and some are not visible
    in every framing). When so many tags are refuted that the caption may be
    another image's, its tag items are borderline: a person looks, nothing
    is removed automatically.
    """
    fixes: list[FixItem] = []
    undetermined: list[str] = []
    checked = checked_claims(claims, aspects, tags)
    mismatch = None
    if tags is not None:
        result = audit(observation.tags or {}, list(tags.tags), list(tags.probes), tags.share)
        fixes += [FixItem(TAGS, t, ABSENT, result.mismatch) for t in result.refuted]
        if result.mismatch:
            mismatch = (f"{MISMATCH}: {len(result.refuted)} of {result.answered} caption tags are absent from the "
                        "image; the caption may belong to another image")
    for aspect in (a for a in aspects if a != TAGS):
        claim = claims.get(aspect)
        seen = observation.aspects.get(aspect)
        if seen is None or seen.value is None:
            if claim is not None:
                undetermined.append(aspect)
            continue
        if claim is not None and seen.value != claim:
            fixes.append(FixItem(aspect, claim, seen.value, seen.borderline))
    if undetermined:
        reason = f"the model could not determine {', '.join(undetermined)}"
        return Verdict(REFUSED, tuple(fixes), reason, observation, checked)
    return Verdict(FIX if fixes else OK, tuple(fixes), mismatch, observation, checked)


def filtered_reason(refusal: str | None, finish_reason: str | None, content: str | None) -> str | None:
    """Why a reply is a refusal before we even read its content, or None."""
    if refusal and refusal.strip():
        return f"refused: {refusal.strip()[:200]}"
    if finish_reason and finish_reason.lower() not in NORMAL_FINISH:
        return f"filtered by the provider (finish_reason {finish_reason})"
    if content is None or not content.strip():
        return "empty answer"
    return None


def is_apology(text: str) -> bool:
    return bool(_APOLOGY.search(text))
