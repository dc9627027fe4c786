"""What lint's rules look up for every caption, derived once per policy and vocabulary.

A rule asks the same questions of every caption of a dataset: is this tag
exempt, absorbed, a subject tag; what is its rank in Anima's tag order;
which phrases are risky; which words name an outfit. The answers depend only
on the policy and the vocabulary, so `Tables` derives them once and keeps
the per-tag answers as tags are met (a dataset repeats a few hundred tags).
Deriving them per caption was half of linting 10,000 captions
(bench/captions_bench.py: 4.81 s before, 2.51 s after for 10,000 captions, findings unchanged).
"""

from __future__ import annotations

import re
from functools import lru_cache

from captions.caption import TagLine
from captions.compose import QUALITY_WORDS
from captions.policy import BUILTIN_RISKY, RATINGS, Policy
from captions.tags import is_score_tag
from captions.vocab import ARTIST, CHARACTER, COPYRIGHT, META, Vocabulary

YEAR = re.compile(r"^year \d{4}$")
# Anima's tag order, rank by rank (`Tables.rank`).
ORDER = ("quality/rating", "subject", "character", "series", "artist", "general")
LINES_KEPT = 65536  # tag lines whose order `Tables.line_order` remembers at once
_SUBJECT = re.compile(r"^(\d\+?|multiple|no) ?(girls?|boys?|others?|humans)$")
SUBJECT_WORDS = frozenset({"solo", "solo focus", "multiple girls", "multiple boys", "no humans"})
TIME_WORDS = frozenset({"newest", "recent", "mid", "early", "old"})
BUILTIN_FRAMINGS = ("portrait", "close-up", "upper body", "cowboy shot", "full body", "lower body")
# File-name words for outfits when no policy names them.
BUILTIN_OUTFITS = {
    "nude": ("nude", "naked"), "bikini": ("bikini",), "swimsuit": ("swimsuit", "school swimsuit"),
    "leotard": ("leotard",), "yukata": ("yukata",), "dress": ("dress",), "uniform": ("uniform", "school uniform"),
}


class Tables:
    def __init__(self, policy: Policy | None, vocab: Vocabulary | None):
        self.policy, self.vocab = policy, vocab
        p = policy
        self.exempt = frozenset([p.trigger, *p.quality, *p.allowed_tags] if p else []) - {None}
        self.quality = frozenset(p.quality if p else [])
        self.subject = frozenset(p.subject if p else [])
        self.absorbed = frozenset(p.absorbed if p else [])
        risky = p.risky() if p else BUILTIN_RISKY
        # (phrase, why, lowercased, as a whole-word regex)
        self.risky = [(phrase, why, phrase.lower(), re.compile(rf"\b{re.escape(phrase.lower())}\b"))
                      for phrase, why in risky.items()]
        self.framing_sets = _framing_sets(p)
        self.outfit_words = _outfit_words(p)
        self.outfit_spaced = {o: tuple(f" {k} " for k in kws) for o, kws in self.outfit_words.items()}  # whole words
        spaced = [k for kws in self.outfit_spaced.values() for k in kws]
        # any of them at all, in one search: most file names name no outfit
        self.outfit_named = re.compile("|".join(map(re.escape, spaced))) if spaced else None
        self._ranks: dict[str, int] = {}
        self._line_orders: dict[object, tuple[int, int, str | None]] = {}
        self.answers: dict[str, dict[str, tuple]] = {}  # rule -> tag -> what it found for that tag
        self.clean: set[str] = set()  # tags unknown-tag has met and found nothing to say of

    def rank(self, tag: str) -> int:
        """The tag's place in Anima's order (quality/rating 0, subject, character, series, artist, general 5)."""
        rank = self._ranks.get(tag)
        if rank is None:
            rank = self._ranks[tag] = _rank(tag, self)
        return rank

    def line_order(self, line: TagLine) -> tuple[int, int, str | None]:
        """(lowest rank, highest rank, the first tag of the highest) of a line whose ranks never go down;
        lowest -1 for a line out of order within itself, which the caller reads tag by tag."""
        key = line.raw if line.raw is not None else line.items  # parsed lines keep their text; built ones not
        found = self._line_orders.get(key)
        if found is None:
            ranks = [self.rank(tag) for tag in line.tags]
            if not ranks:
                found = (len(ORDER), -1, None)
            elif ranks != sorted(ranks):
                found = (-1, -1, None)
            else:
                found = (ranks[0], ranks[-1], line.tags[ranks.index(ranks[-1])])
            if len(self._line_orders) >= LINES_KEPT:  # a tagger's one line per image never repeats: bounded
                self._line_orders.clear()
            self._line_orders[key] = found
        return found


_last: list[Tables] = []


def tables_for(policy: Policy | None, vocab: Vocabulary | None) -> Tables:
    """The tables of the pair being linted: one dataset's captions share one policy and
    vocabulary, so the last pair's are kept (the pair itself held, so identity is safe)."""
    if not _last or _last[0].policy is not policy or _last[0].vocab is not vocab:
        _last[:] = [Tables(policy, vocab)]
    return _last[0]


@lru_cache(maxsize=65536)  # pure, asked of every tag (tag order and unknown-tag): tags repeat across a dataset
def is_meta_word(tag: str) -> bool:
    """Quality, score, rating and time words: Anima's own, not Danbooru tags."""
    return tag in QUALITY_WORDS or tag in RATINGS or tag in TIME_WORDS or is_score_tag(tag) or bool(YEAR.match(tag))


def _rank(tag: str, tables: Tables) -> int:
    kind = tables.vocab.kind(tag) if tables.vocab else None
    p = tables.policy
    if is_meta_word(tag):
        return 0
    if tag in tables.quality or kind == META:
        return 0
    if tag in SUBJECT_WORDS or _SUBJECT.match(tag) or tag in tables.subject:
        return 1
    if (p and tag == p.trigger) or kind == CHARACTER:
        return 2
    return {COPYRIGHT: 3, ARTIST: 4}.get(kind, 5)


def _framing_sets(p: Policy | None) -> list[tuple[str, list[str]]]:
    if p is None:
        return [("framing", list(BUILTIN_FRAMINGS))]
    out = []
    for aspect in ("framing", "view"):
        spec = p.aspect(aspect)
        if spec:
            out.append((aspect, list(dict.fromkeys(t for v in spec.values.values() for t in v.tags))))
    return out


def _outfit_words(p: Policy | None) -> dict[str, tuple[str, ...]]:
    spec = p.aspect("outfit") if p else None
    if spec is None:
        return BUILTIN_OUTFITS
    return {name: (name, *v.tags, *v.keywords) for name, v in spec.values.items()}
