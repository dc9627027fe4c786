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

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from captions.aspects import ASPECTS, STRICT, Aspect, Aspects, normalized, regexes
from captions.errors import PolicyError
from captions.tags import normalize_tag
from captions.yamlfile import read_yaml

RATINGS = ("safe", "sensitive", "explicit")
PLACEHOLDERS = {*ASPECTS, "trigger"}

BUILTIN_RISKY = {
    "bound hair": "Anima reads 'bound' as a tied-up person; say 'half-up braid' or 'side ponytail'",
}


class _Model(BaseModel):
    model_config = STRICT


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
    _norm_kw = field_validator("body_keywords")(normalized)


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
                            "unchecked")(normalized)

    @field_validator("trigger")
    @classmethod
    def _trigger(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = normalize_tag(v)
        if not v:
            raise ValueError("trigger must not be empty (leave the key out for no trigger)")
        return v

    _patterns = field_validator("dropped_patterns")(regexes)

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
