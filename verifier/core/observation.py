"""What the vision model says the IMAGE shows, aspect by aspect.

The model answers from the policy's closed vocabulary; `resolve` maps the
words it actually wrote (a value name, its NL phrase, a Danbooru tag, a
prompt keyword, `three quarters view`, `softly smiling`) back to a value.
`None` as a value means the model could not determine it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from captions.aspects import squash
from captions.policy import Policy

CANNOT = "cannot determine"
TAGS_KEY = "tags"  # the observation's tag answers (the tags audit)
PRESENT, ABSENT = "present", "absent"  # a tag's answers, beside CANNOT
_YES = frozenset({"present", "yes", "true", "visible", "shown"})
_NO = frozenset({"absent", "no", "false", "not present", "not shown"})
TAG_ANSWERS = ("present", "absent", CANNOT)
# Ways models say "cannot determine"; all mean the same to us.
UNDETERMINED = frozenset({
    CANNOT, "cannot be determined", "can't determine", "undetermined", "unknown", "unclear", "not visible",
    "n/a", "na", "none", "not applicable", "indeterminate", "not determinable", "can not determine",
})
# Words models add around a value that do not change it.
_NOISE = re.compile(r"^(?:the |a |an )|(?: view| shot| framing| expression| facing| shown| visible)$")


class ObservationError(ValueError):
    """The answer has no observation we can read."""


@dataclass(frozen=True)
class AspectObservation:
    value: str | None  # a vocabulary value; None: the model could not determine it
    borderline: bool = False
    implicit: bool = False  # fixline: not mentioned, so the model agreed with the caption

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"value": self.value, "borderline": self.borderline}
        if self.implicit:
            out["implicit"] = True
        return out


@dataclass(frozen=True)
class Observation:
    aspects: dict[str, AspectObservation] = field(default_factory=dict)
    note: str | None = None
    tags: dict[str, str] | None = None  # the tags audit: tag -> present / absent / cannot determine

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {name: obs.as_dict() for name, obs in self.aspects.items()}
        if self.note:
            out["note"] = self.note
        if self.tags is not None:
            out[TAGS_KEY] = dict(self.tags)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Observation:
        aspects = {
            name: AspectObservation(v.get("value"), bool(v.get("borderline")), bool(v.get("implicit")))
            for name, v in data.items() if isinstance(v, dict) and name != TAGS_KEY
        }
        tags = data.get(TAGS_KEY)
        return cls(aspects, data.get("note") if isinstance(data.get("note"), str) else None,
                   dict(tags) if isinstance(tags, dict) else None)


def is_undetermined(text: str) -> bool:
    return squash(text) in UNDETERMINED


def resolve(policy: Policy, aspect: str, text: str) -> str | None:
    """The value of `aspect` that `text` names, or None when it names none."""
    spec = policy.aspect(aspect)
    if spec is None:
        return None
    words = spec.spellings
    squashed = squash(text)
    if squashed in words:
        return words[squashed]
    stripped = _NOISE.sub("", squashed).strip()
    while stripped != squashed:
        if stripped in words:
            return words[stripped]
        squashed, stripped = stripped, _NOISE.sub("", stripped).strip()
    return None


def vocabulary(policy: Policy, aspect: str) -> list[str]:
    spec = policy.aspect(aspect)
    return list(spec.values) if spec else []


def observe_schema(policy: Policy, aspects: list[str], tags: list[str] | None = None) -> dict:
    """JSON schema for the observe protocol: per aspect the value the image
    shows (the policy's vocabulary, or `cannot determine`) and a borderline
    flag; an optional short note; with `tags` (the tags audit) an object
    with one property per asked tag, named by its text exactly, each
    present / absent / cannot determine. Strict-mode compatible (OpenAI):
    every property required, no extra properties, the optional note nullable."""
    props: dict[str, object] = {}
    for aspect in aspects:
        props[aspect] = {
            "type": "object",
            "properties": {
                "value": {"type": "string", "enum": [*vocabulary(policy, aspect), CANNOT]},
                "borderline": {"type": "boolean"},
            },
            "required": ["value", "borderline"],
            "additionalProperties": False,
        }
    required = [*aspects]
    if tags is not None:
        props[TAGS_KEY] = observe_schema_tags(tags)
        required.append(TAGS_KEY)
    props["note"] = {"type": ["string", "null"], "description": "optional, one short sentence"}
    return {"type": "object", "properties": props, "required": [*required, "note"], "additionalProperties": False}


def observe_schema_tags(tags: list[str]) -> dict:
    """The `tags` property: one property per asked tag, named by its text exactly."""
    return {
        "type": "object",
        "properties": {t: {"type": "string", "enum": list(TAG_ANSWERS)} for t in tags},
        "required": list(tags),
        "additionalProperties": False,
    }


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)


def extract_json(text: str) -> dict:
    """The first JSON object in a reply: bare, fenced, or inside chatter."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for chunk in candidates:
        for start in (i for i, ch in enumerate(chunk) if ch == "{"):
            try:
                obj, _ = decoder.raw_decode(chunk[start:])
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                return obj
    raise ObservationError("no JSON object in the answer")


def parse_tags(data: dict, tags: list[str]) -> dict[str, str]:
    """The answers for the asked tags; a tag left out is `cannot determine`
    (never counted either way), a key matched in any spelling of the tag."""
    from captions.tags import normalize_tag

    entry = data.get(TAGS_KEY)
    if not isinstance(entry, dict):
        raise ObservationError("the answer has no 'tags' object")
    given = {normalize_tag(str(k)): v for k, v in entry.items()}
    out = {}
    for tag in tags:
        raw = entry.get(tag, given.get(normalize_tag(tag)))
        word = CANNOT if raw is None else answer_word(raw)
        if word is None:
            raise ObservationError(f"tags: '{tag}': {raw!r} is not present, absent or {CANNOT}")
        out[tag] = word
    return out


def parse_observe(text: str, policy: Policy, aspects: list[str], tags: list[str] | None = None) -> Observation:
    """An observe-protocol answer -> Observation. Tolerates fences, chatter,
    `{"framing": "cowboy shot"}` without the inner object, and spellings
    of values that `resolve` knows."""
    data = extract_json(text)
    lowered = {str(k).strip().lower(): v for k, v in data.items()}
    out: dict[str, AspectObservation] = {}
    for aspect in aspects:
        if aspect not in lowered:
            raise ObservationError(f"the answer has no '{aspect}'")
        entry = lowered[aspect]
        borderline = False
        if isinstance(entry, dict):
            raw_value = entry.get("value")
            borderline = bool(entry.get("borderline", False))
        else:
            raw_value = entry
        if raw_value is None or (isinstance(raw_value, str) and is_undetermined(raw_value)):
            out[aspect] = AspectObservation(None, borderline)
            continue
        if not isinstance(raw_value, str):
            raise ObservationError(f"{aspect}: expected a value, got {raw_value!r}")
        value = resolve(policy, aspect, raw_value)
        if value is None:
            raise ObservationError(f"{aspect}: '{raw_value}' is not one of {', '.join(vocabulary(policy, aspect))}")
        out[aspect] = AspectObservation(value, borderline)
    note = lowered.get("note")
    answers = parse_tags(data, tags) if tags is not None else None
    return Observation(out, note.strip()[:500] if isinstance(note, str) and note.strip() else None, answers)


def answer_word(value: object) -> str | None:
    """A model's answer for one tag as present / absent / cannot determine; None when unreadable."""
    if isinstance(value, bool):
        return PRESENT if value else ABSENT
    if not isinstance(value, str):
        return None
    word = value.strip().lower().strip(".")
    if word in _YES:
        return PRESENT
    if word in _NO:
        return ABSENT
    return CANNOT if is_undetermined(word) else None
