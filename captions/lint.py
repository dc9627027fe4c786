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
from captions.dataset import caption_files, iter_images
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


@lru_cache(maxsize=65536)  # pure, asked of every tag (tag order and unknown-tag): tags repeat across a dataset
def _is_meta_word(tag: str) -> bool:
    """Quality, score, rating and time words: Anima's own, not Danbooru tags."""
    return tag in QUALITY_WORDS or tag in RATINGS or tag in TIME_WORDS or is_score_tag(tag) or bool(_YEAR.match(tag))


def _exempt(tag: str, ctx: Context) -> bool:
    """Tags that are not Danbooru tags by design: quality, rating, time, trigger."""
    if _is_meta_word(tag):
        return True
    p = ctx.policy
    return bool(p) and (tag == p.trigger or tag in p.quality or tag in p.allowed_tags)


def unknown_tag(ctx: Context) -> Yield:
    if ctx.vocab is None:
        return
    for tag in dict.fromkeys(ctx.tags):
        if tag in ctx.vocab or _exempt(tag, ctx):
            continue
        canonical = ctx.vocab.canonical(tag)
        if canonical:
            yield WARNING, f"'{tag}' is a Danbooru alias; the tag is '{canonical}'"
            continue
        hint = ctx.vocab.suggest(tag)
        yield ERROR, f"'{tag}' is not a Danbooru tag" + (f"; did you mean '{hint}'?" if hint else "")


def weight_syntax(ctx: Context) -> Yield:
    for item in ctx.caption.raw_tags:
        if has_emphasis(item):
            flat = normalize_tag(strip_emphasis(item))
            yield ERROR, f"'{item}' carries prompt weight syntax, which a trainer reads literally; write '{flat}'"


def underscore(ctx: Context) -> Yield:
    for item in ctx.caption.raw_tags:
        tag = strip_emphasis(item).strip().lower()
        if not underscore_free(tag):
            yield WARNING, f"'{item}' uses underscores; write '{normalize_tag(tag)}' (only score_* keeps them)"


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


def _framing_sets(ctx: Context) -> list[tuple[str, list[str]]]:
    p = ctx.policy
    if p is None:
        return [("framing", list(BUILTIN_FRAMINGS))]
    out = []
    for aspect in ("framing", "view"):
        spec = p.aspect(aspect)
        if spec:
            out.append((aspect, [t for v in spec.values.values() for t in v.tags]))
    return out


def conflicting_tags(ctx: Context) -> Yield:
    present = set(ctx.tags)
    for aspect, tags in _framing_sets(ctx):
        hits = [t for t in dict.fromkeys(tags) if t in present]
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
    risky = ctx.policy.risky() if ctx.policy else BUILTIN_RISKY
    text = (ctx.caption.nl_text + " , " + ", ".join(ctx.tags)).lower()
    for phrase, why in risky.items():
        if re.search(rf"\b{re.escape(phrase.lower())}\b", text):
            yield ERROR, f"'{phrase}': {why}"


def absorbed_leak(ctx: Context) -> Yield:
    if ctx.policy is None:
        return
    for tag in dict.fromkeys(ctx.tags):
        if tag in ctx.policy.absorbed:
            yield ERROR, f"'{tag}' is absorbed by the trigger '{ctx.policy.trigger}'; remove the tag"


def missing_trigger(ctx: Context) -> Yield:
    if ctx.policy and ctx.policy.trigger and ctx.policy.trigger not in ctx.tags:
        yield ERROR, f"the trigger '{ctx.policy.trigger}' is not among the tags"


def year_tag(ctx: Context) -> Yield:
    for tag in ctx.tags:
        if _YEAR.match(tag):
            yield WARNING, f"'{tag}' ties the character to that era's style; add it at inference instead"


ORDER_NAMES = ("quality/rating", "subject", "character", "series", "artist", "general")


def _rank(tag: str, ctx: Context) -> int:
    kind = ctx.vocab.kind(tag) if ctx.vocab else None
    p = ctx.policy
    if _is_meta_word(tag):
        return 0
    if (p and tag in p.quality) or kind == META:
        return 0
    if tag in SUBJECT_WORDS or _SUBJECT.match(tag) or (p and tag in p.subject):
        return 1
    if (p and tag == p.trigger) or kind == CHARACTER:
        return 2
    return {COPYRIGHT: 3, ARTIST: 4}.get(kind, 5)


def tag_order(ctx: Context) -> Yield:
    best, best_tag = 0, None
    for tag in ctx.tags:
        rank = _rank(tag, ctx)
        if rank < best:
            yield WARNING, (
                f"'{tag}' ({ORDER_NAMES[rank]}) comes after '{best_tag}' ({ORDER_NAMES[best]}); "
                "Anima's order is quality/rating, subject, character, series, artist, general"
            )
            return
        if rank > best:
            best, best_tag = rank, tag


def _outfit_words(ctx: Context) -> dict[str, tuple[str, ...]]:
    spec = ctx.policy.aspect("outfit") if ctx.policy else None
    if spec is None:
        return BUILTIN_OUTFITS
    return {name: (name, *v.tags, *v.keywords) for name, v in spec.values.items()}


def filename_hint(ctx: Context) -> Yield:
    """The file is named for an outfit that the caption contradicts: the
    second article's swapped `bikini` / `nude` captions."""
    words = _outfit_words(ctx)
    stem = " " + re.sub(r"[_\-.\s]+", " ", ctx.path.stem.lower()) + " "
    named = [o for o, kws in words.items() if any(f" {k} " in stem for k in kws)]
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
    """Every caption under `root` (or `root` itself when it is a file)."""
    findings: list[Finding] = []
    base = root.parent if root.is_file() else root

    def show(path: Path) -> str:
        return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)

    for path in caption_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            findings.append(Finding(show(path), "unreadable", ERROR, f"cannot read: {exc}"))
            continue
        findings.extend(lint_text(path, text, policy, vocab, show(path)))
    if root.is_dir():
        for item in iter_images(root):
            if not item.caption.exists():
                findings.append(Finding(show(item.image), "missing-caption", WARNING, "no caption beside this image"))
    return findings
