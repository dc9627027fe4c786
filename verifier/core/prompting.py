"""Verification prompts: the templates in `prompts/`, filled from the policy.

The aspect definitions (full body: feet visible; cowboy shot: mid-thigh up,
no knees; ...) come from the policy, so the model judges by the same words
the caption was built with. `PromptSpec.sha` fingerprints everything that
shapes a request except the caption and the image (those are keyed on their
own), so changing a definition, a template or the image size re-asks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property

import prompts
from captions.policy import Policy
from verifier.core.defaults import DEFAULT_ASPECTS  # noqa: F401  (its old home: importers elsewhere keep working)
from verifier.core.fixline import letters
from verifier.core.observation import CANNOT, observe_schema, observe_schema_tags, vocabulary
from verifier.core.tags import TAGS
from verifier.errors import VerifierError

OBSERVE, FIXLINE = "observe", "fixline"
PROTOCOLS = (OBSERVE, FIXLINE)

# The article's aspect names (its prompt lettered A. FRAMING, B. BODY FACING, C. EXPRESSION).
HEADINGS = {
    "framing": "FRAMING",
    "view": "VIEW (the camera's angle on the body)",
    "facing": "BODY FACING (viewer's perspective)",
    "expression": "EXPRESSION",
    "outfit": "OUTFIT",
}


@dataclass(frozen=True)
class PromptSpec:
    protocol: str
    aspects: tuple[str, ...]
    text: str  # the prompt; a fixline prompt keeps a `{caption}` slot
    schema: dict | None = field(default=None, hash=False)
    image_size: int = 1024
    image_format: str = "jpeg"
    tags: bool = False  # the tags audit: each request also lists tags to answer (a `{tags}` slot)

    @cached_property
    def sha(self) -> str:
        blob = {"protocol": self.protocol, "aspects": self.aspects, "text": self.text, "schema": self.schema,
                "image": [self.image_size, self.image_format]}
        if self.tags:
            blob["tags"] = True
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()

    @property
    def checked(self) -> list[str]:
        """What the run checks, as the user named it (`framing, tags`)."""
        return [*self.aspects, *([TAGS] if self.tags else [])]

    def request(self, caption: str, tags: list[str]) -> tuple[str, dict | None]:
        """The prompt and schema for one image; with the tags audit, its tags to answer."""
        text = self.render(caption)
        if not self.tags:
            return text, self.schema
        listed = "\n".join(f"- {t}" for t in tags)
        schema = observe_schema_with_tags(self.schema, tags)
        return text.replace("{tags}", listed), schema

    @property
    def sends_caption(self) -> bool:
        return "{caption}" in self.text

    def render(self, caption: str) -> str:
        return self.text.replace("{caption}", caption.strip()) if self.sends_caption else self.text


def observe_schema_with_tags(schema: dict | None, tags: list[str]) -> dict:
    """The run's schema with this image's `tags` object in it."""
    assert schema is not None
    props = {k: v for k, v in schema["properties"].items() if k != "note"}
    props[TAGS] = observe_schema_tags(tags)
    props["note"] = schema["properties"]["note"]
    required = [*(r for r in schema["required"] if r != "note"), TAGS, "note"]
    return {**schema, "properties": props, "required": required}


def check_aspects(policy: Policy, aspects: list[str]) -> list[str]:
    """The requested aspects, in order; an aspect the policy lacks is an error.
    `tags` (the tags audit) is always one: it needs no vocabulary of the policy."""
    missing = [a for a in aspects if a != TAGS and policy.aspect(a) is None]
    if missing:
        where = policy.source or "policy"
        raise VerifierError(where, f"no aspect {', '.join(repr(m) for m in missing)} in the policy "
                                   f"(it has {', '.join([*(n for n, _ in policy.aspects.items()), TAGS])})")
    return list(dict.fromkeys(aspects))


def _definitions(policy: Policy, aspect: str, indent: str) -> list[str]:
    spec = policy.aspect(aspect)
    assert spec is not None
    return [f"{indent}{name}: {value.definition}" for name, value in spec.values.items() if value.definition]


def _observe_block(policy: Policy, aspects: list[str]) -> str:
    lines = []
    for aspect in aspects:
        lines.append(f'"{aspect}": {HEADINGS.get(aspect, aspect.upper())} — one of: '
                     f"{', '.join(vocabulary(policy, aspect))}")
        lines += _definitions(policy, aspect, "  - ")
    return "\n".join(lines)


def _fixline_block(policy: Policy, aspects: list[str]) -> str:
    lines = []
    for letter, aspect in letters(aspects).items():
        lines.append(f"{letter}. {HEADINGS.get(aspect, aspect.upper())} — {' / '.join(vocabulary(policy, aspect))}")
        lines += _definitions(policy, aspect, "   ")
    return "\n".join(lines)


def build_prompt(policy: Policy, protocol: str, aspects: list[str], image_size: int = 1024,
                 image_format: str = "jpeg") -> PromptSpec:
    if protocol not in PROTOCOLS:
        raise VerifierError(None, f"protocol must be one of {', '.join(PROTOCOLS)}, not '{protocol}'")
    tags = TAGS in aspects
    aspects = [a for a in check_aspects(policy, aspects) if a != TAGS]
    if not aspects and not tags:
        raise VerifierError(None, "no aspects to check")
    if tags and protocol != OBSERVE:
        raise VerifierError(None, "the tags audit needs the observe protocol (JSON answers); "
                                  f"drop '{TAGS}' from --aspects or use --protocol {OBSERVE}")
    if protocol == OBSERVE:
        # Placeholders, not real values: an example value would bias the answer.
        example: dict[str, object] = {a: {"value": f"<one of the {a} values or {CANNOT}>", "borderline": False}
                                      for a in aspects}
        block = _observe_block(policy, aspects)
        if tags:
            example[TAGS] = {"<each listed tag>": f"<present, absent or {CANNOT}>"}
            block = (block + "\n" if block else "") + prompts.load("verify_tags").strip()
        example["note"] = None
        text = (prompts.load("verify_observe").replace("{aspects}", block)
                .replace("{example}", json.dumps(example)))
        schema = observe_schema(policy, aspects)
    else:
        text = prompts.load("verify_fixline").replace("{aspects}", _fixline_block(policy, aspects))
        schema = None
    return PromptSpec(protocol, tuple(aspects), text.strip() + "\n", schema, image_size, image_format, tags)
