"""lint: caption checks, each a small pure function.

A rule takes a `Context` (one caption, and the policy and vocabulary when
there are any) and yields `(severity, message)` pairs. `lint_text` runs
them all; `lint_dataset` runs them over a folder. What the rules look up
for every caption (exempt and absorbed tags, tag ranks, risky phrases) is
derived once per policy and vocabulary, in `lint_tables`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from captions.caption import Caption, parse
from captions.dataset import iter_images
from captions.facts import outfit_from_caption
from captions.lint_tables import ORDER, YEAR, Tables, is_meta_word, tables_for
from captions.policy import RATINGS, Policy
from captions.tags import SYNTAX, has_emphasis, normalize_tag, strip_emphasis, underscore_free
from captions.vocab import Vocabulary

ERROR, WARNING = "error", "warning"
_RATING_SET = frozenset(RATINGS)
Yield = Iterator[tuple[str, str]]

# Garments: worn with `nude` they contradict it (accessories such as ribbons
# or thighhighs do not).
GARMENTS = frozenset({
    "shirt", "t-shirt", "skirt", "dress", "swimsuit", "bikini", "uniform", "jacket", "blazer", "coat",
    "sweater", "hoodie", "pants", "shorts", "leotard", "yukata", "kimono", "serafuku", "buruma",
    "cardigan", "vest", "bodysuit", "overalls", "sundress", "tracksuit",
})


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


class Context:
    """One caption as every rule sees it. What several rules read (the tags, the items as written, the
    tables) is taken once here; the outfit only when a rule asks."""

    __slots__ = ("_outfit", "caption", "joined", "path", "policy", "raw_tags", "tables", "tag_lines", "tags", "vocab")

    def __init__(self, path: Path, caption: Caption, policy: Policy | None = None, vocab: Vocabulary | None = None):
        self.path, self.caption, self.policy, self.vocab = path, caption, policy, vocab
        self.tags: list[str] = caption.tags
        self.tag_lines = caption.tag_lines
        self.raw_tags: list[str] = [item for line in self.tag_lines for item in line.items]
        self.joined = ", ".join(self.tags)  # one string to look into before looking tag by tag
        self.tables: Tables = tables_for(policy, vocab)
        self._outfit: str | bool | None = False  # False: not read yet

    @property
    def outfit(self) -> str | None:
        """The outfit the caption claims, as its facts would say (`facts.outfit_from_caption`)."""
        if self._outfit is False:
            self._outfit = outfit_from_caption(self.caption, self.policy) if self.policy else None
        return self._outfit


def _unknown(tag: str, tables: Tables) -> Yield:
    vocab = tables.vocab
    # not Danbooru tags by design: quality, rating, time, trigger, the policy's allowed tags
    if tag in vocab or is_meta_word(tag) or tag in tables.exempt:
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
    clean = tables.clean
    if clean.issuperset(ctx.tags):  # the usual caption: every tag already met, and fine
        return
    seen = tables.answers.setdefault("unknown-tag", {})  # a tag's finding is the same in every caption
    for tag in dict.fromkeys(ctx.tags):
        found = seen.get(tag)
        if found is None:
            found = seen[tag] = tuple(_unknown(tag, tables))
            if not found:
                clean.add(tag)
        if found:
            yield from found


@lru_cache(maxsize=65536)  # pure, asked of every tag as written
def _weighted(item: str) -> str | None:
    return normalize_tag(strip_emphasis(item)) if has_emphasis(item) else None


def weight_syntax(ctx: Context) -> Yield:
    if SYNTAX.isdisjoint("".join(ctx.raw_tags)):  # no bracket or colon anywhere: no weight to find
        return
    for item in ctx.raw_tags:
        if (flat := _weighted(item)) is not None:
            yield ERROR, f"'{item}' carries prompt weight syntax, which a trainer reads literally; write '{flat}'"


@lru_cache(maxsize=65536)  # pure, asked of every tag as written
def _underscored(item: str) -> str | None:
    tag = strip_emphasis(item).strip().lower()
    return None if underscore_free(tag) else normalize_tag(tag)


def underscore(ctx: Context) -> Yield:
    for item in ctx.raw_tags:
        if "_" in item and (flat := _underscored(item)) is not None:
            yield WARNING, f"'{item}' uses underscores; write '{flat}' (only score_* keeps them)"


def rating(ctx: Context) -> Yield:
    tags = ctx.tags
    if "general" in tags:
        yield ERROR, "'general' is the SDXL-era rating; Anima uses 'safe'"
    for old, new in (("questionable", "sensitive"), ("nsfw", "explicit")):
        if old in tags:
            yield ERROR, f"'{old}' is not an Anima rating; use '{new}'"
    found = list(dict.fromkeys(t for t in tags if t in RATINGS)) if not _RATING_SET.isdisjoint(tags) else []
    if len(found) > 1:
        yield ERROR, f"more than one rating: {', '.join(found)}"
    elif not found and "general" not in tags:
        yield ERROR, "no rating tag (safe, sensitive or explicit)"
    outfit = ctx.outfit
    if ctx.policy and outfit and len(found) == 1:
        want = ctx.policy.rating_for(outfit)
        if found[0] != want:
            yield ERROR, f"rated '{found[0]}' but the outfit '{outfit}' is rated '{want}' by the policy"


def duplicate_tag(ctx: Context) -> Yield:
    tags = ctx.tags
    if len(set(tags)) == len(tags):  # the usual caption: nothing to count
        return
    for tag, n in Counter(tags).items():
        if n > 1:
            yield WARNING, f"'{tag}' appears {n} times"


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
    text = (ctx.caption.nl_text + " , " + ctx.joined).lower()
    for phrase, why, lowered, pattern in ctx.tables.risky:
        if lowered in text and pattern.search(text):  # the plain look first: the regex only where it can match
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
    if "year " not in ctx.joined:  # the usual caption: no tag holds the word
        return
    for tag in ctx.tags:
        if tag.startswith("year ") and YEAR.match(tag):  # the plain look first: most tags are not years
            yield WARNING, f"'{tag}' ties the character to that era's style; add it at inference instead"


def tag_order(ctx: Context) -> Yield:
    best, best_tag = 0, None
    tables = ctx.tables
    for line in ctx.tag_lines:
        # A line in order that starts no lower than what came before moves only the highest rank seen:
        # one look per line (a dataset repeats its lines), not one per tag.
        lowest, highest, highest_tag = tables.line_order(line)
        if lowest >= best:
            if highest > best:
                best, best_tag = highest, highest_tag
            continue
        for tag in line.tags:
            rank = tables.rank(tag)
            if rank < best:
                yield WARNING, (
                    f"'{tag}' ({ORDER[rank]}) comes after '{best_tag}' ({ORDER[best]}); "
                    "Anima's order is quality/rating, subject, character, series, artist, general"
                )
                return
            if rank > best:
                best, best_tag = rank, tag


_SEPARATORS = re.compile(r"[_\-.\s]+")


def filename_hint(ctx: Context) -> Yield:
    """The file is named for an outfit that the caption contradicts: the
    second article's swapped `bikini` / `nude` captions."""
    tables = ctx.tables
    stem = " " + _SEPARATORS.sub(" ", ctx.path.stem.lower()) + " "
    if tables.outfit_named is None or not tables.outfit_named.search(stem):
        return
    named = [o for o, spaced in tables.outfit_spaced.items() if any(k in stem for k in spaced)]
    words = tables.outfit_words
    if ctx.policy is not None:
        said = ctx.outfit
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
