"""lint: caption checks, each a small pure function.

A rule takes a `Context` (one caption, and the policy and vocabulary when
there are any) and yields `(severity, message)` pairs. `lint_caption` runs
them all; `lint_dataset` runs them over a folder.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import cached_property, lru_cache
from pathlib import Path

from captions.caption import Caption, parse
from captions.compose import QUALITY_WORDS
from captions.dataset import iter_images
from captions.facts import Facts, facts_from_caption
from captions.policy import BUILTIN_RISKY, RATINGS, Policy
from captions.tags import has_emphasis, is_score_tag, normalize_tag, strip_emphasis, underscore_free
from captions.vocab import ARTIST, CHARACTER, COPYRIGHT, META, Vocabulary

ERROR, WARNING = "error", "warning"
Yield = Iterator[tuple[str, str]]

_YEAR = re.compile(r"^year \d{4}$")
_SUBJECT = re.compile(r"^(\d\+?|multiple|no) ?(girls?|boys?|others?|humans)$")
SUBJECT_WORDS = frozenset({"solo", "solo focus", "multiple girls", "multiple boys", "no humans"})
TIME_WORDS = frozenset({"newest", "recent", "mid", "early", "old"})
BUILTIN_FRAMINGS = ("portrait", "close-up", "upper body", "cowboy shot", "full body", "lower body")
# Garments: worn with `nude` they contradict it (accessories such as ribbons
# or thighhighs do not).
GARMENTS = frozenset({
    "shirt", "t-shirt", "skirt", "dress", "swimsuit", "bikini", "uniform", "jacket", "blazer", "coat",
    "sweater", "hoodie", "pants", "shorts", "leotard", "yukata", "kimono", "serafuku", "buruma",
    "cardigan", "vest", "bodysuit", "overalls", "sundress", "tracksuit",
})
# File-name words for outfits when no policy names them.
BUILTIN_OUTFITS = {
    "nude": ("nude", "naked"), "bikini": ("bikini",), "swimsuit": ("swimsuit", "school swimsuit"),
    "leotard": ("leotard",), "yukata": ("yukata",), "dress": ("dress",), "uniform": ("uniform", "school uniform"),
}


@dataclass(frozen=True)
class Finding:
    path: str
    rule: str
    severity: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.path}: {self.rule}: {self.message}"


@dataclass(frozen=True)
class Context:
    path: Path
    caption: Caption
    policy: Policy | None = None
    vocab: Vocabulary | None = None

    @property
    def tags(self) -> list[str]:
        return self.caption.tags

    @cached_property
    def facts(self) -> Facts | None:
        return facts_from_caption(self.caption, self.policy) if self.policy else None

    @cached_property
    def tables(self) -> Tables:
        return _tables(self.policy, self.vocab)


class Tables:
    """What the rules look up for every caption, derived once from a policy and a
    vocabulary, and the per-tag answers (a tag's rank, its unknown-tag finding)
    remembered as tags are met: a dataset repeats a few hundred tags. Deriving
    these per caption was a third of linting 10,000 captions (bench/captions_bench.py)."""

    def __init__(self, policy: Policy | None, vocab: Vocabulary | None):
        self.policy, self.vocab = policy, vocab
        p = policy
        self.exempt = frozenset([p.trigger, *p.quality, *p.allowed_tags] if p else []) - {None}
        self.quality = frozenset(p.quality if p else [])
        self.subject = frozenset(p.subject if p else [])
        self.absorbed = frozenset(p.absorbed if p else [])
        risky = p.risky() if p else BUILTIN_RISKY
        self.risky = [(phrase, why, re.compile(rf"\b{re.escape(phrase.lower())}\b")) for phrase, why in risky.items()]
        self.framing_sets = _framing_sets(p)
        self.outfit_words = _outfit_words(p)
        self.outfit_spaced = {o: tuple(f" {k} " for k in kws) for o, kws in self.outfit_words.items()}  # whole words
        self._ranks: dict[str, int] = {}
        self._unknown: dict[str, tuple[tuple[str, str], ...]] = {}

    def rank(self, tag: str) -> int:
        rank = self._ranks.get(tag)
        if rank is None:
            rank = self._ranks[tag] = _rank(tag, self)
        return rank

    def unknown(self, tag: str) -> tuple[tuple[str, str], ...]:
        """unknown-tag's finding for `tag` (none when it is known or exempt)."""
        found = self._unknown.get(tag)
        if found is None:
            found = self._unknown[tag] = tuple(_unknown(tag, self))
        return found


_last: list[Tables] = []


def _tables(policy: Policy | None, vocab: Vocabulary | None) -> Tables:
    """The tables of the pair being linted: one dataset's captions share one policy and
    vocabulary, so the last pair's are kept (the pair itself held, so identity is safe)."""
    if not _last or _last[0].policy is not policy or _last[0].vocab is not vocab:
        _last[:] = [Tables(policy, vocab)]
    return _last[0]


@lru_cache(maxsize=65536)  # pure, asked of every tag (tag order and unknown-tag): tags repeat across a dataset
def _is_meta_word(tag: str) -> bool:
    """Quality, score, rating and time words: Anima's own, not Danbooru tags."""
    return tag in QUALITY_WORDS or tag in RATINGS or tag in TIME_WORDS or is_score_tag(tag) or bool(_YEAR.match(tag))


def _unknown(tag: str, tables: Tables) -> Yield:
    vocab = tables.vocab
    # not Danbooru tags by design: quality, rating, time, trigger, the policy's allowed tags
    if tag in vocab or _is_meta_word(tag) or tag in tables.exempt:
        return
    canonical = vocab.canonical(tag)
    if canonical:
        yield WARNING, f"'{tag}' is a Danbooru alias; the tag is '{canonical}'"
        return
    hint = vocab.suggest(tag)
    yield ERROR, f"'{tag}' is not a Danbooru tag" + (f"; did you mean '{hint}'?" if hint else "")


def unknown_tag(ctx: Context) -> Yield:
    if ctx.vocab is None:
        return
    tables = ctx.tables
    for tag in dict.fromkeys(ctx.tags):
        yield from tables.unknown(tag)


def weight_syntax(ctx: Context) -> Yield:
    for item in ctx.caption.raw_tags:
        if has_emphasis(item):
            flat = normalize_tag(strip_emphasis(item))
            yield ERROR, f"'{item}' carries prompt weight syntax, which a trainer reads literally; write '{flat}'"


@lru_cache(maxsize=65536)  # pure, asked of every tag as written
def _underscored(item: str) -> str | None:
    tag = strip_emphasis(item).strip().lower()
    return None if underscore_free(tag) else normalize_tag(tag)


def underscore(ctx: Context) -> Yield:
    for item in ctx.caption.raw_tags:
        if "_" in item and (flat := _underscored(item)) is not None:
            yield WARNING, f"'{item}' uses underscores; write '{flat}' (only score_* keeps them)"


def rating(ctx: Context) -> Yield:
    tags = ctx.tags
    if "general" in tags:
        yield ERROR, "'general' is the SDXL-era rating; Anima uses 'safe'"
    for old, new in (("questionable", "sensitive"), ("nsfw", "explicit")):
        if old in tags:
            yield ERROR, f"'{old}' is not an Anima rating; use '{new}'"
    found = list(dict.fromkeys(t for t in tags if t in RATINGS))
    if len(found) > 1:
        yield ERROR, f"more than one rating: {', '.join(found)}"
    elif not found and "general" not in tags:
        yield ERROR, "no rating tag (safe, sensitive or explicit)"
    facts = ctx.facts
    if ctx.policy and facts and facts.outfit and len(found) == 1:
        want = ctx.policy.rating_for(facts.outfit)
        if found[0] != want:
            yield ERROR, f"rated '{found[0]}' but the outfit '{facts.outfit}' is rated '{want}' by the policy"


def duplicate_tag(ctx: Context) -> Yield:
    for tag, n in Counter(ctx.tags).items():
        if n > 1:
            yield WARNING, f"'{tag}' appears {n} times"


def _framing_sets(p: Policy | None) -> list[tuple[str, list[str]]]:
    if p is None:
        return [("framing", list(BUILTIN_FRAMINGS))]
    out = []
    for aspect in ("framing", "view"):
        spec = p.aspect(aspect)
        if spec:
            out.append((aspect, list(dict.fromkeys(t for v in spec.values.values() for t in v.tags))))
    return out


def conflicting_tags(ctx: Context) -> Yield:
    present = set(ctx.tags)
    for aspect, tags in ctx.tables.framing_sets:
        hits = [t for t in tags if t in present]
        if len(hits) > 1:
            yield ERROR, f"two {aspect} tags: {' and '.join(hits)}"
    if "nude" in present or "naked" in present:
        worn = [t for t in ctx.tags if t.split()[-1] in GARMENTS]
        if worn:
            yield ERROR, f"'nude' together with clothing: {', '.join(dict.fromkeys(worn))}"


def nl_sentences(ctx: Context) -> Yield:
    n = len(ctx.caption.sentences)
    if n < 2:
        yield WARNING, f"{n} natural-language sentence{'s' if n != 1 else ''}; the template wants two or more"


def risky_phrase(ctx: Context) -> Yield:
    text = (ctx.caption.nl_text + " , " + ", ".join(ctx.tags)).lower()
    for phrase, why, pattern in ctx.tables.risky:
        if phrase.lower() in text and pattern.search(text):  # the plain look first: the regex only where it can match
            yield ERROR, f"'{phrase}': {why}"


def absorbed_leak(ctx: Context) -> Yield:
    if ctx.policy is None:
        return
    absorbed = ctx.tables.absorbed
    for tag in dict.fromkeys(ctx.tags):
        if tag in absorbed:
            yield ERROR, f"'{tag}' is absorbed by the trigger '{ctx.policy.trigger}'; remove the tag"


def missing_trigger(ctx: Context) -> Yield:
    if ctx.policy and ctx.policy.trigger and ctx.policy.trigger not in ctx.tags:
        yield ERROR, f"the trigger '{ctx.policy.trigger}' is not among the tags"


def year_tag(ctx: Context) -> Yield:
    for tag in ctx.tags:
        if _YEAR.match(tag):
            yield WARNING, f"'{tag}' ties the character to that era's style; add it at inference instead"


ORDER_NAMES = ("quality/rating", "subject", "character", "series", "artist", "general")


def _rank(tag: str, tables: Tables) -> int:
    kind = tables.vocab.kind(tag) if tables.vocab else None
    p = tables.policy
    if _is_meta_word(tag):
        return 0
    if tag in tables.quality or kind == META:
        return 0
    if tag in SUBJECT_WORDS or _SUBJECT.match(tag) or tag in tables.subject:
        return 1
    if (p and tag == p.trigger) or kind == CHARACTER:
        return 2
    return {COPYRIGHT: 3, ARTIST: 4}.get(kind, 5)


def tag_order(ctx: Context) -> Yield:
    best, best_tag = 0, None
    rank_of = ctx.tables.rank
    for tag in ctx.tags:
        rank = rank_of(tag)
        if rank < best:
            yield WARNING, (
                f"'{tag}' ({ORDER_NAMES[rank]}) comes after '{best_tag}' ({ORDER_NAMES[best]}); "
                "Anima's order is quality/rating, subject, character, series, artist, general"
            )
            return
        if rank > best:
            best, best_tag = rank, tag


def _outfit_words(p: Policy | None) -> dict[str, tuple[str, ...]]:
    spec = p.aspect("outfit") if p else None
    if spec is None:
        return BUILTIN_OUTFITS
    return {name: (name, *v.tags, *v.keywords) for name, v in spec.values.items()}


def filename_hint(ctx: Context) -> Yield:
    """The file is named for an outfit that the caption contradicts: the
    second article's swapped `bikini` / `nude` captions."""
    words = ctx.tables.outfit_words
    stem = " " + re.sub(r"[_\-.\s]+", " ", ctx.path.stem.lower()) + " "
    named = [o for o, spaced in ctx.tables.outfit_spaced.items() if any(k in stem for k in spaced)]
    if not named:
        return
    facts = ctx.facts
    if facts is not None:
        said = facts.outfit
    else:
        tags = set(ctx.tags)
        said = next((o for o, kws in words.items() if tags.intersection(kws)), None)
    if said is not None and said not in named:
        yield ERROR, f"the file name says '{named[0]}' but the caption says '{said}'"


Rule = Callable[[Context], Yield]
RULES: dict[str, Rule] = {
    "unknown-tag": unknown_tag,
    "weight-syntax": weight_syntax,
    "underscore": underscore,
    "rating": rating,
    "duplicate-tag": duplicate_tag,
    "conflicting-tags": conflicting_tags,
    "nl-sentences": nl_sentences,
    "risky-phrase": risky_phrase,
    "absorbed-leak": absorbed_leak,
    "missing-trigger": missing_trigger,
    "year-tag": year_tag,
    "tag-order": tag_order,
    "filename-hint": filename_hint,
}


def lint_text(path: Path, text: str, policy: Policy | None = None, vocab: Vocabulary | None = None,
              display: str | None = None) -> list[Finding]:
    where = display or str(path)
    if not text.strip():
        return [Finding(where, "empty", ERROR, "the caption is empty")]
    ctx = Context(path, parse(text), policy, vocab)
    return [Finding(where, name, sev, msg) for name, rule in RULES.items() for sev, msg in rule(ctx)]


def lint_dataset(root: Path, policy: Policy | None = None, vocab: Vocabulary | None = None) -> list[Finding]:
    """Every caption under `root` (or `root` itself when it is a file), then the images without one."""
    base = root.parent if root.is_file() else root

    def show(path: Path) -> str:
        try:
            return str(path.relative_to(base))
        except ValueError:
            return str(path)

    findings: list[Finding] = []
    missing: list[Finding] = []
    # One walk, and each caption read without a look first (it was two walks and two looks per image).
    items = [(root, None)] if root.is_file() else [(item.caption, item.image) for item in iter_images(root)]
    for path, image in items:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            if image is not None and isinstance(exc, FileNotFoundError):
                missing.append(Finding(show(image), "missing-caption", WARNING, "no caption beside this image"))
            else:
                findings.append(Finding(show(path), "unreadable", ERROR, f"cannot read: {exc}"))
            continue
        findings.extend(lint_text(path, text, policy, vocab, show(path)))
    return findings + missing
