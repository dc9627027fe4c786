"""Tag text rules: emphasis stripping, normalisation, splitting.

Pure functions. Training captions want flat, lowercase, space-separated
Danbooru tags; generation prompts are full of inference-time syntax
(`(tag:1.5)`, `((tag))`, `[tag]`, `<lora:x:0.8>`, `BREAK`) that must not leak
into a caption, because a trainer reads those characters literally.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

# `\(` and `\)` are literal parentheses in A1111 prompts (`saber \(fate\)`).
_ESC_OPEN, _ESC_CLOSE = "\x00", "\x01"
_WEIGHT = re.compile(r":\s*-?(?:\d+\.?\d*|\.\d+)\s*(?=[)\]}>]|$)")
_LORA = re.compile(r"<[^<>]*>")
_BRACKETS = re.compile(r"[()\[\]{}]")
SYNTAX = frozenset("()[]{}<>:")  # a character every pattern above needs (with BREAK)
_SPACES = re.compile(r"\s+")
_BREAK = re.compile(r"\bBREAK\b")
# `score_7`, `score_8_up`: the only tags that keep their underscores.
_SCORE = re.compile(r"^score_\d+(?:_up)?$")
# Weighted or bracketed syntax left in a caption (used by lint).
_EMPHASIS = re.compile(r"(?<!\\)[()\[\]{}]|:\s*-?\d*\.?\d+\s*$")


def strip_emphasis(text: str) -> str:
    """Remove prompt emphasis syntax from a prompt or a single tag.

    Works on whole prompts so that a weight spanning several tags,
    `(blue eyes, blonde hair:1.2)`, is removed before splitting on commas.
    """
    if SYNTAX.isdisjoint(text) and "BREAK" not in text:
        return text  # nothing to strip: most caption tags (41,776 calls of a 2,000-caption lint, four regexes each)
    text = text.replace(r"\(", _ESC_OPEN).replace(r"\)", _ESC_CLOSE)
    text = _LORA.sub("", text)
    text = _BREAK.sub(",", text)
    text = _WEIGHT.sub("", text)
    text = _BRACKETS.sub("", text)
    return text.replace(_ESC_OPEN, "(").replace(_ESC_CLOSE, ")")


@lru_cache(maxsize=65536)  # pure; lint asks it of every tag of every caption, and tags repeat
def has_emphasis(tag: str) -> bool:
    """True when a caption tag still carries weight or bracket syntax."""
    unescaped = tag.replace(r"\(", "").replace(r"\)", "")
    return bool(_EMPHASIS.search(unescaped)) and not _is_name_with_qualifier(tag)


def _is_name_with_qualifier(tag: str) -> bool:
    # `saber (fate)`: a Danbooru name with a qualifier, not emphasis.
    return bool(re.fullmatch(r"[^()\[\]{}:]+ \([^()\[\]{}:]+\)", tag.strip()))


@lru_cache(maxsize=65536)
def is_score_tag(tag: str) -> bool:
    return bool(_SCORE.match(tag.strip().lower()))


@lru_cache(maxsize=65536)  # pure, and the same few hundred tags repeat across a dataset
def normalize_tag(raw: str) -> str:
    """One tag as a caption should hold it: flat, lowercase, spaces."""
    tag = raw.strip()
    if not _is_name_with_qualifier(tag):
        tag = strip_emphasis(tag)
    tag = _SPACES.sub(" ", tag.strip()).lower()
    if not is_score_tag(tag):
        tag = tag.replace("_", " ").strip()
        tag = _SPACES.sub(" ", tag)
    return tag


def dedupe(tags: Iterable[str]) -> list[str]:
    """Drop repeats, keeping each tag at its first position."""
    seen: set[str] = set()
    out = []
    for tag in tags:
        if tag and tag not in seen:
            seen.add(tag)
            out.append(tag)
    return out


def split_raw(line: str) -> list[str]:
    """Split a tag line on commas, keeping each item as written (stripped)."""
    return [item.strip() for item in line.split(",") if item.strip()]


def prompt_tags(prompt: str) -> list[str]:
    """A generation prompt as a de-duplicated list of normalised tags."""
    flat = strip_emphasis(prompt)
    return dedupe(normalize_tag(item) for item in re.split(r"[,\n]", flat))


def underscore_free(tag: str) -> bool:
    """Only `score_*` may keep underscores in a caption."""
    return "_" not in tag or is_score_tag(tag)
