"""The eval spec, and what each sample must show: its checklist.

A check is one (sample, aspect or tag) pair:

- the aspects the sample's own prompt names, read through the policy as
  `build` reads a sidecar prompt (`facts_from_prompt`); an aspect the prompt
  does not name (only the policy's default would fill it) is not scored;
- `must_show`: tags that must be present (default: the policy's
  trigger-absorbed tags, the character's core);
- `must_not_show`: tags that must be absent (default: the visual tags of the
  sample's negative prompt; quality, score and meta words are not visual).

The spec is the trainer's `EvalConfig` (the `eval:` section of train.yaml,
or `--spec eval.yaml`), imported only when eval runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from captions.facts import facts_from_prompt
from captions.policy import Policy, describe_validation_error
from captions.tags import normalize_tag, prompt_tags
from captions.vocab import Vocabulary
from captions.yamlfile import read_yaml
from verifier.core.tags import TAGS, checkable
from verifier.errors import VerifierError
from verifier.eval.sample import Sample

SHOW, HIDE = "must_show", "must_not_show"


def load_spec(path: Path):
    """`--spec eval.yaml` as an `EvalConfig`; an unknown key is named with the file."""
    from pydantic import ValidationError

    from trainer.config import EvalConfig

    data = read_yaml(Path(path), VerifierError, "spec") or {}
    if isinstance(data, dict) and isinstance(data.get("eval"), dict) and len(data) == 1:
        data = data["eval"]  # a train.yaml-shaped file holding only its eval: section
    if not isinstance(data, dict):
        raise VerifierError(path, "expected a mapping of spec keys (prompts, seeds, must_show, must_not_show, …)")
    try:
        return EvalConfig.model_validate(data)
    except ValidationError as exc:
        raise VerifierError(path, describe_validation_error(exc)) from None


def tag_list(tags: list[str] | str | None) -> list[str] | None:
    """`--must-show "blonde hair, blue eyes"` (or a spec list) normalised; None: not said."""
    if tags is None:
        return None
    items = tags.split(",") if isinstance(tags, str) else tags
    return list(dict.fromkeys(t for t in (normalize_tag(i) for i in items) if t))


@dataclass(frozen=True)
class Wanted:
    """What the spec and the command line say every sample must (not) show; None: the defaults."""

    show: list[str] | None = None
    hide: list[str] | None = None

    def check(self, where: str | Path | None = None) -> None:
        both = sorted(set(self.show or []) & set(self.hide or []))
        if both:
            raise VerifierError(where, f"{', '.join(both)}: in both must_show and must_not_show")


@dataclass(frozen=True)
class Checklist:
    aspects: dict[str, str]  # aspect -> the value the prompt asks for
    show: tuple[str, ...]
    hide: tuple[str, ...]

    @property
    def tags(self) -> tuple[str, ...]:
        return (*self.show, *self.hide)

    @property
    def names(self) -> list[str]:
        """The check names, as the report counts them: aspect names, then tags as written."""
        return [*self.aspects, *self.tags]

    def text(self) -> str:
        """The question in words: the caption half of the verdict key (a new checklist asks again,
        or re-judges a stored answer that covered it)."""
        aspects = "; ".join(f"{a}={v}" for a, v in self.aspects.items())
        return f"capcheck eval\naspects: {aspects}\n{SHOW}: {', '.join(self.show)}\n{HIDE}: {', '.join(self.hide)}\n"


def visual_tags(negative: str, policy: Policy, vocab: Vocabulary | None) -> list[str]:
    """The negative prompt's tags a model can check in an image (`ahoge`, not `worst quality`)."""
    return [t for t in prompt_tags(negative) if checkable(t, policy, vocab)]


def asked_aspects(prompt: str, policy: Policy, aspects: list[str]) -> dict[str, str]:
    """The aspect values the prompt itself names (or implies through a named one), for the checked aspects."""
    tags = prompt_tags(prompt)
    facts = facts_from_prompt(tags, policy)
    named = {name for name, spec in policy.aspects.items() if spec.matching(tags)}
    implied = set()
    for name in named:
        spec, value = policy.aspect(name), facts.get(name)
        if spec is not None and value in spec.values:
            implied.update(spec.values[value].implies)
    return {a: v for a in aspects if a != TAGS and a in named | implied and (v := facts.get(a)) is not None}


def checklist(sample: Sample, policy: Policy, wanted: Wanted, aspects: list[str],
              vocab: Vocabulary | None = None) -> Checklist:
    show = wanted.show if wanted.show is not None else tag_list(list(policy.absorbed)) or []
    hide = wanted.hide if wanted.hide is not None else visual_tags(sample.negative, policy, vocab)
    hide = [t for t in hide if t not in show]
    return Checklist(asked_aspects(sample.prompt, policy, aspects), tuple(show), tuple(hide))
