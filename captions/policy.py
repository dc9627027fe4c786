"""The caption policy: one YAML file per character/dataset.

It says how facts become caption text: trigger, quality prefix, subject
tags, what the trigger absorbs, what is kept and dropped, each aspect's
vocabulary, the rating rule, the breast-size rule and the NL templates.
Validated by pydantic; an unknown key is an error that names the key and
the file, because a misspelt key silently ignored is a policy not applied.
"""

from __future__ import annotations

import re
import string
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from captions.errors import PolicyError
from captions.tags import normalize_tag
from captions.yamlfile import read_yaml

ASPECTS = ("framing", "view", "facing", "expression", "outfit")
RATINGS = ("safe", "sensitive", "explicit")
PLACEHOLDERS = {*ASPECTS, "trigger"}

BUILTIN_RISKY = {
    "bound hair": "Anima reads 'bound' as a tied-up person; say 'half-up braid' or 'side ponytail'",
}


def squash(text: str) -> str:
    """A spelling reduced for comparison: tag-normalised, hyphens as spaces
    (`three-quarter` = `three quarter`), no surrounding quotes or dots."""
    return re.sub(r"\s+", " ", normalize_tag(text).replace("-", " ")).strip(" .\"'`*")


def _tags(values: list[str]) -> list[str]:
    return [normalize_tag(v) for v in values]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AspectValue(_Model):
    tags: list[str] = []  # Danbooru tags this value writes into a caption
    phrase: str | None = None  # words the NL templates use for it
    keywords: list[str] = []  # prompt tags that detect it in a sidecar prompt
    nl_keywords: list[str] = []  # regexes that detect it in hand-written NL
    definition: str | None = None  # one line for the verification prompt
    implies: dict[str, str] = {}  # aspect -> value, when that aspect has no evidence
    visible_in: list[str] | None = None  # outfit only: framings in which it shows

    _norm = field_validator("tags", "keywords")(_tags)

    @field_validator("nl_keywords")
    @classmethod
    def _regexes(cls, values: list[str]) -> list[str]:
        for v in values:
            re.compile(v)
        return values

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

    def matching(self, tags: list[str]) -> list[str]:
        """Values with a tag or keyword among `tags`, in priority order. Called for
        every aspect of every caption (lint, verify)."""
        detected, hits = self._detected, set()
        for tag in tags:
            found = detected.get(tag)
            hits |= found if found is not None else self._detects(tag)
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

    def found_in(self, aspect: str, tags: list[str]) -> set[str]:
        """The values of `aspect` that any of `tags` detects (`detects`, for one aspect)."""
        hits: set[str] = set()
        silent = self._silent.setdefault(aspect, set())  # tags met that detect nothing in `aspect`
        for tag in set(tags).difference(silent):  # most of a caption's tags, after its first few captions
            said = False
            for name, values in self.detects(tag):
                if name == aspect:
                    hits.update(values)
                    said = True
            if not said:
                silent.add(tag)
        return hits

    @cached_property
    def implied(self) -> frozenset[str]:
        """The aspects some value implies (`from behind` -> view: back): a caption's facts may
        fill them without evidence of their own."""
        return frozenset(other for _, spec in self.items() for value in spec.values.values() for other in value.implies)

    @cached_property
    def _detected(self) -> dict[str, tuple[tuple[str, frozenset[str]], ...]]:
        return {}  # on the aspects, not the policy: a policy copied with other aspects gets its own

    @cached_property
    def _silent(self) -> dict[str, set[str]]:
        return {}  # aspect -> tags that detect none of its values (`found_in`); kept beside `_detected`

    def detects(self, tag: str) -> tuple[tuple[str, frozenset[str]], ...]:
        """(aspect, the values `tag` detects) for each aspect it detects any in: most tags detect none,
        so reading a caption's facts asks one look-up per tag, not one per tag and aspect."""
        found = self._detected.get(tag)
        if found is None:
            found = self._detected[tag] = tuple((name, hits) for name, spec in self.items()
                                                if (hits := spec._detects(tag)))
        return found


class RatingRule(_Model):
    default: Literal["safe", "sensitive", "explicit"] = "safe"
    by_outfit: dict[str, Literal["safe", "sensitive", "explicit"]] = {}


class BreastRule(_Model):
    tag: str = "medium breasts"
    always: list[str] = []  # outfits that always get the tag (when visible)
    revealing: list[str] = []  # outfits that get it when the framing shows the body
    framings: list[str] = []  # framings that show the body
    body_keywords: list[str] = []  # if set, a revealing outfit also needs one in the prompt
    hidden_views: list[str] = []  # views that hide the silhouette of a revealing outfit

    _norm = field_validator("tag")(lambda v: normalize_tag(v))
    _norm_kw = field_validator("body_keywords")(_tags)


class Template(_Model):
    when: dict[str, str | list[str]] = {}
    text: str

    def placeholders(self) -> list[str]:
        return [f for _, f, _, _ in string.Formatter().parse(self.text) if f]

    def matches(self, facts: dict[str, str | None]) -> bool:
        for aspect, want in self.when.items():
            wanted = [want] if isinstance(want, str) else want
            if facts.get(aspect) not in wanted:
                return False
        return True


class Policy(_Model):
    trigger: str | None = None  # None: no trigger (the generic policy; a tagger's captions)
    quality: list[str] = ["masterpiece", "best quality", "score_7"]
    subject: list[str] = ["1girl", "solo"]
    absorbed: list[str] = []  # character core: the trigger absorbs it, never a tag
    kept: list[str] = []  # structure tags written on their own line, in this order
    dropped: list[str] = []  # always dropped (silhouette, age, style noise)
    dropped_patterns: list[str] = []  # regexes over normalised tags, always dropped
    unchecked: list[str] = []  # tags the tags audit never asks about (exempt)
    background: list[str] = ["white background", "simple background"]
    allowed_tags: list[str] = []  # not on Danbooru but wanted (lint accepts them)
    risky_phrases: dict[str, str] = {}  # phrase -> why, added to the built-in ones
    tags_csv: str | None = None  # Danbooru tag CSV, relative to the policy file
    aspects: Aspects = Field(default_factory=Aspects)
    rating: RatingRule = Field(default_factory=RatingRule)
    breasts: BreastRule | None = None
    nl: list[list[Template]] = []  # sentence slots; first matching template per slot

    # Where the policy was loaded from; not a YAML key.
    source: Path | None = Field(default=None, exclude=True)

    _norm = field_validator("quality", "subject", "absorbed", "kept", "dropped", "background", "allowed_tags",
                            "unchecked")(_tags)

    @field_validator("trigger")
    @classmethod
    def _trigger(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = normalize_tag(v)
        if not v:
            raise ValueError("trigger must not be empty (leave the key out for no trigger)")
        return v

    @field_validator("dropped_patterns")
    @classmethod
    def _patterns(cls, values: list[str]) -> list[str]:
        for v in values:
            re.compile(v)
        return values

    @model_validator(mode="after")
    def _cross_check(self) -> Policy:
        aspects = dict(self.aspects.items())
        for name, aspect in aspects.items():
            for vname, value in aspect.values.items():
                for other, target in value.implies.items():
                    if other not in aspects or target not in aspects[other].values:
                        raise ValueError(f"aspects.{name}.values.{vname}.implies: no value '{target}' in '{other}'")
                for framing in value.visible_in or []:
                    self._need("framing", framing, f"aspects.{name}.values.{vname}.visible_in")
        for outfit in self.rating.by_outfit:
            self._need("outfit", outfit, "rating.by_outfit")
        if self.breasts:
            for outfit in [*self.breasts.always, *self.breasts.revealing]:
                self._need("outfit", outfit, "breasts")
            for framing in self.breasts.framings:
                self._need("framing", framing, "breasts.framings")
            for view in self.breasts.hidden_views:
                self._need("view", view, "breasts.hidden_views")
        for i, slot in enumerate(self.nl):
            for j, tpl in enumerate(slot):
                where = f"nl[{i}][{j}]"
                for field in tpl.placeholders():
                    if field not in PLACEHOLDERS:
                        raise ValueError(f"{where}: unknown placeholder {{{field}}}")
                for aspect, want in tpl.when.items():
                    for value in [want] if isinstance(want, str) else want:
                        self._need(aspect, value, f"{where}.when")
        return self

    @cached_property
    def nl_patterns(self) -> list[re.Pattern[str]]:
        """The NL templates as regexes, one named group per aspect placeholder,
        so a caption's sentences can be read back into facts (compiled once)."""
        out = []
        for slot in self.nl:
            for tpl in slot:
                if "{" in tpl.text and (regex := self._template_regex(tpl.text)) is not None:
                    out.append(regex)
        return out

    def _template_regex(self, text: str) -> re.Pattern[str] | None:
        out = []
        seen: set[str] = set()
        for part in re.split(r"(\{[a-z]+\})", text):
            m = re.fullmatch(r"\{([a-z]+)\}", part)
            if not m:
                out.append(re.escape(part))
                continue
            name = m.group(1)
            if name in seen:
                out.append(f"(?P={name})")
                continue
            seen.add(name)
            if name == "trigger":
                if self.trigger is None:
                    return None
                out.append(re.escape(self.trigger))
                continue
            spec = self.aspect(name)
            if spec is None:
                return None
            phrases = sorted({v.phrase or k for k, v in spec.values.items()}, key=len, reverse=True)
            out.append(f"(?P<{name}>" + "|".join(re.escape(p) for p in phrases) + ")")
        return re.compile("".join(out))

    def _need(self, aspect: str, value: str, where: str) -> None:
        a = getattr(self.aspects, aspect, None) if aspect in ASPECTS else None
        if a is None or value not in a.values:
            raise ValueError(f"{where}: '{value}' is not a value of aspect '{aspect}'")

    def aspect(self, name: str) -> Aspect | None:
        return getattr(self.aspects, name, None) if name in ASPECTS else None

    def detects(self, tag: str) -> tuple[tuple[str, frozenset[str]], ...]:
        """(aspect, the values `tag` detects) for each aspect it detects any in (`Aspects.detects`)."""
        return self.aspects.detects(tag)

    def risky(self) -> dict[str, str]:
        return {**BUILTIN_RISKY, **{k.lower(): v for k, v in self.risky_phrases.items()}}

    def tags_csv_path(self) -> Path | None:
        if not self.tags_csv:
            return None
        path = Path(self.tags_csv).expanduser()
        if not path.is_absolute() and self.source is not None:
            path = self.source.parent / path
        return path

    def rating_for(self, outfit: str | None) -> str:
        return self.rating.by_outfit.get(outfit or "", self.rating.default)

    def is_dropped(self, tag: str) -> bool:
        return tag in self.dropped or any(re.fullmatch(p, tag) for p in self.dropped_patterns)


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; errors name the file and the key."""
    path = Path(path)
    data = read_yaml(path, PolicyError, "policy")
    if not isinstance(data, dict):
        raise PolicyError(path, "expected a mapping of policy keys at the top level")
    if "source" in data:
        raise PolicyError(path, "unknown key 'source'")
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(path, describe_validation_error(exc)) from None
    return policy.model_copy(update={"source": path.resolve()})


def describe_validation_error(exc: ValidationError) -> str:
    """pydantic's first error as one line: `unknown key 'a.b'`, `missing key 'x'`, `loc: message`."""
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown key '{loc}'"
    if err["type"] == "missing":
        return f"missing key '{loc}'"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg
