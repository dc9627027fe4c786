"""A policy's aspects: framing, view, facing, expression and outfit, each a set of named values.

A value says which Danbooru tags it writes, which prompt tags and NL wordings
detect it, what it implies for another aspect, and its one-line definition
for the verification prompt. `Aspects` answers, for any tag, which values of
which aspects it detects; the answers are remembered per tag, because every
caption of a dataset asks them again. The rest of the policy is `policy`.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from captions.tags import normalize_tag

ASPECTS = ("framing", "view", "facing", "expression", "outfit")
# Every part of a policy: an unknown key is an error (a misspelt key silently ignored is a policy not
# applied), and a part once read does not change.
STRICT = ConfigDict(extra="forbid", frozen=True)


def squash(text: str) -> str:
    """A spelling reduced for comparison: tag-normalised, hyphens as spaces
    (`three-quarter` = `three quarter`), no surrounding quotes or dots."""
    return re.sub(r"\s+", " ", normalize_tag(text).replace("-", " ")).strip(" .\"'`*")


def normalized(values: list[str]) -> list[str]:
    """Each of `values` as a caption holds a tag (`tags.normalize_tag`)."""
    return [normalize_tag(v) for v in values]


def regexes(values: list[str]) -> list[str]:
    """`values`, each checked to compile as a regular expression (a bad one is the policy's error)."""
    for v in values:
        re.compile(v)
    return values


class _Model(BaseModel):
    model_config = STRICT


class AspectValue(_Model):
    tags: list[str] = []  # Danbooru tags this value writes into a caption
    phrase: str | None = None  # words the NL templates use for it
    keywords: list[str] = []  # prompt tags that detect it in a sidecar prompt
    nl_keywords: list[str] = []  # regexes that detect it in hand-written NL
    definition: str | None = None  # one line for the verification prompt
    implies: dict[str, str] = {}  # aspect -> value, when that aspect has no evidence
    visible_in: list[str] | None = None  # outfit only: framings in which it shows

    _norm = field_validator("tags", "keywords")(normalized)

    _regexes = field_validator("nl_keywords")(regexes)

    @cached_property
    def nl_regexes(self) -> tuple[re.Pattern[str], ...]:
        """`nl_keywords` compiled (case-insensitive) once, not looked up in re's cache per caption."""
        return tuple(re.compile(v, re.IGNORECASE) for v in self.nl_keywords)


class Aspect(_Model):
    values: dict[str, AspectValue]
    priority: list[str] = []  # first wins when several values match; default: listed order
    default: str | None = None
    # `exact`: a keyword matches a tag equal to it. `suffix`: also a tag that
    # ends with it (`blue dress` is a `dress`): right for garments, wrong for
    # framing (`looking back` is not `from behind`).
    match: Literal["exact", "suffix"] = "exact"

    @model_validator(mode="after")
    def _check(self) -> Aspect:
        for name in [*self.priority, *([self.default] if self.default else [])]:
            if name not in self.values:
                raise ValueError(f"'{name}' is not one of the values {sorted(self.values)}")
        phrases = [v.phrase for v in self.values.values() if v.phrase]
        if len(phrases) != len(set(phrases)):
            raise ValueError("two values share one NL phrase, so a caption could not be read back")
        return self

    def ordered(self) -> list[str]:
        rest = [v for v in self.values if v not in self.priority]
        return [*self.priority, *rest]

    @cached_property
    def _index(self) -> dict[str, set[str]]:
        """tag or keyword -> the values it detects."""
        index: dict[str, set[str]] = {}
        for name, value in self.values.items():
            for word in (*value.tags, *value.keywords):
                index.setdefault(word, set()).add(name)
        return index

    @cached_property
    def _ordered(self) -> tuple[str, ...]:
        return tuple(self.ordered())

    @cached_property
    def _detected(self) -> dict[str, frozenset[str]]:
        """tag -> the values it detects (with `suffix`, through its endings too), filled in as tags are met:
        a dataset repeats a few hundred tags, and splitting each into its endings was a tenth of lint."""
        return {}

    def _detects(self, tag: str) -> frozenset[str]:
        found = self._detected.get(tag)
        if found is None:
            index = self._index
            hits = set(index.get(tag, ()))
            if self.match == "suffix" and " " in tag:
                words = tag.split()
                for k in range(1, len(words)):
                    hits |= index.get(" ".join(words[k:]), set())
            found = self._detected[tag] = frozenset(hits)
        return found

    def first(self, hits: set[str] | frozenset[str]) -> str | None:
        """The highest-priority value among `hits`."""
        return next((name for name in self._ordered if name in hits), None)

    @cached_property
    def _silent(self) -> set[str]:
        """Tags met that detect none of the values (most of a caption's tags, after its first few)."""
        return set()

    def matching(self, tags: list[str]) -> list[str]:
        """Values with a tag or keyword among `tags`, in priority order. Called for
        every aspect of every caption (lint, verify): the tags known to detect
        nothing are set aside in one set operation, and only the rest looked up."""
        silent, hits = self._silent, set()
        for tag in set(tags).difference(silent):
            found = self._detects(tag)
            if found:
                hits |= found
            else:
                silent.add(tag)
        return [name for name in self._ordered if name in hits] if hits else []

    @cached_property
    def spellings(self) -> dict[str, str]:
        """Every way of writing each value (name, phrase, tags, keywords),
        squashed -> the value; a value's own name wins over another's keyword."""
        out: dict[str, str] = {}
        for name, value in self.values.items():
            for word in (*value.keywords, *value.tags, value.phrase or ""):
                if word:
                    out.setdefault(squash(word), name)
        for name in self.values:
            out[squash(name)] = name
        return out

    def value_for_phrase(self, phrase: str) -> str | None:
        for name, value in self.values.items():
            if (value.phrase or name) == phrase:
                return name
        return None


class Aspects(_Model):
    framing: Aspect | None = None
    view: Aspect | None = None
    facing: Aspect | None = None
    expression: Aspect | None = None
    outfit: Aspect | None = None

    def items(self) -> list[tuple[str, Aspect]]:
        return [(name, a) for name in ASPECTS if (a := getattr(self, name)) is not None]

    @cached_property
    def implied(self) -> frozenset[str]:
        """The aspects some value implies (`from behind` -> view: back): a caption's facts may
        fill them without evidence of their own."""
        return frozenset(other for _, spec in self.items() for value in spec.values.values() for other in value.implies)

    @cached_property
    def _detected(self) -> dict[str, tuple[tuple[str, frozenset[str]], ...]]:
        return {}  # on the aspects, not the policy: a policy copied with other aspects gets its own

    def detects(self, tag: str) -> tuple[tuple[str, frozenset[str]], ...]:
        """(aspect, the values `tag` detects) for each aspect it detects any in: most tags detect none,
        so reading a caption's facts asks one look-up per tag, not one per tag and aspect."""
        found = self._detected.get(tag)
        if found is None:
            found = self._detected[tag] = tuple((name, hits) for name, spec in self.items()
                                                if (hits := spec._detects(tag)))
        return found
