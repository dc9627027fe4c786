"""Facts: what a caption asserts about its image, one value per aspect.

`facts_from_prompt` reads a generation prompt (for build); `facts_from_caption`
reads a caption back (so hand-written captions can be verified and fixed).
Both go through the policy's vocabulary, never through free text matching
of our own invention.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

from captions.aspects import ASPECTS, Aspect
from captions.caption import Caption, TextLine
from captions.policy import RATINGS, Policy
from captions.tags import prompt_tags


@dataclass(frozen=True)
class Facts:
    framing: str | None = None
    view: str | None = None
    facing: str | None = None
    expression: str | None = None
    outfit: str | None = None
    rating: str | None = None

    def get(self, aspect: str) -> str | None:
        return getattr(self, aspect)

    def with_value(self, aspect: str, value: str | None) -> Facts:
        return replace(self, **{aspect: value})

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


def _evidence(policy: Policy, aspect: str, tags: list[str]) -> list[str]:
    """Values of `aspect` whose tags or keywords appear in `tags`, by priority."""
    spec = policy.aspect(aspect)
    return spec.matching(tags) if spec else []


def _first_matches(policy: Policy, tags: list[str]) -> dict[str, str | None]:
    """Per aspect, the highest-priority value that the tags show (or None): `Aspect.matching`'s first,
    for every aspect in one pass over the tags."""
    hits: dict[str, set[str]] = {}
    for tag in tags:
        for aspect, found in policy.detects(tag):
            hits.setdefault(aspect, set()).update(found)
    return {aspect: spec.first(hits[aspect]) if aspect in hits else None for aspect, spec in policy.aspects.items()}


def _apply_implications(policy: Policy, found: dict[str, str | None]) -> None:
    """Fill aspects without evidence from what the others imply (`from behind` -> back)."""
    for aspect in ASPECTS:
        value = found.get(aspect)
        spec = policy.aspect(aspect)
        if value is None or spec is None:
            continue
        for other, target in spec.values[value].implies.items():
            if found.get(other) is None:
                found[other] = target


def visible_outfit(policy: Policy, outfit: str | None, framing: str | None) -> str | None:
    """The outfit as the image shows it: a nude bust-up shows bare shoulders, not nudity."""
    spec = policy.aspect("outfit")
    if outfit is None or spec is None:
        return outfit
    shown = spec.values[outfit].visible_in
    return outfit if shown is None or framing in shown else None


def prompt_outfit(tags: list[str], policy: Policy) -> str | None:
    """The outfit the prompt asked for, before the framing hides it."""
    spec = policy.aspect("outfit")
    matches = _evidence(policy, "outfit", tags)
    return matches[0] if matches else (spec.default if spec else None)


def facts_from_prompt(prompt: str | list[str], policy: Policy) -> Facts:
    tags = prompt_tags(prompt) if isinstance(prompt, str) else list(prompt)
    found = _first_matches(policy, tags)
    _apply_implications(policy, found)
    for aspect, spec in policy.aspects.items():
        if found.get(aspect) is None:
            found[aspect] = spec.default
    found["outfit"] = visible_outfit(policy, found.get("outfit"), found.get("framing"))
    found["rating"] = policy.rating_for(found.get("outfit"))
    return Facts(**{k: found.get(k) for k in (*ASPECTS, "rating")})


@dataclass(frozen=True)
class NLFact:
    """Where an NL template placed a fact: line index and character span."""

    aspect: str
    value: str
    line: int
    start: int
    end: int


def nl_facts(caption: Caption, policy: Policy) -> list[NLFact]:
    """Facts stated by the policy's own NL templates, with their spans."""
    return list(_nl_facts(caption, policy))


def _nl_facts(caption: Caption, policy: Policy, only: str | None = None) -> Iterator[NLFact]:
    """`nl_facts` in their order (line, template, match); with `only`, that aspect's alone, read
    through only the templates that can state it."""
    regexes = [regex for regex in policy.nl_patterns if only is None or only in regex.groupindex]
    for index, line in enumerate(caption.lines):
        if not isinstance(line, TextLine):
            continue
        for regex in regexes:
            for match in regex.finditer(line.value):
                for name, phrase in match.groupdict().items():
                    if only is not None and name != only:
                        continue
                    value = policy.aspect(name).value_for_phrase(phrase)  # type: ignore[union-attr]
                    if value is not None:
                        yield NLFact(name, value, index, match.start(name), match.end(name))


def facts_from_caption(caption: Caption, policy: Policy) -> Facts:
    """What the caption claims: its tags first, then its NL sentences."""
    tags = caption.tags
    found = _first_matches(policy, tags)
    from_nl = nl_facts(caption, policy)
    nl = caption.nl_text
    for aspect, spec in policy.aspects.items():
        if found[aspect] is not None:
            continue
        stated = [f.value for f in from_nl if f.aspect == aspect]
        found[aspect] = stated[0] if stated else _worded(spec, nl)
    _apply_implications(policy, found)
    ratings = [t for t in tags if t in RATINGS]
    found["rating"] = ratings[0] if ratings else None
    return Facts(**{k: found.get(k) for k in (*ASPECTS, "rating")})


def outfit_from_caption(caption: Caption, policy: Policy) -> str | None:
    """`facts_from_caption(caption, policy).outfit`, reading only what the outfit needs (lint's
    rules ask for nothing else, and all the facts were a third of lint's time: issue 19). Where
    neither its tags nor its sentences say, and a value of another aspect may imply an outfit,
    all the facts are read after all."""
    spec = policy.aspect("outfit")
    if spec is not None:
        said = next(iter(spec.matching(caption.tags)), None)
        if said is None and (stated := next(_nl_facts(caption, policy, "outfit"), None)) is not None:
            said = stated.value
        if said is None:
            said = _worded(spec, caption.nl_text)
        if said is not None:
            return said
    return facts_from_caption(caption, policy).outfit if "outfit" in policy.aspects.implied else None


def _worded(spec: Aspect, nl: str) -> str | None:
    """The highest-priority value whose own NL wordings appear in the caption's sentences."""
    for name in spec.ordered():
        if any(p.search(nl) for p in spec.values[name].nl_regexes):
            return name
    return None
