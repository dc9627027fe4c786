"""The caption model: parse and render, tag rules, the policy, facts, build, lint.

Pure functions over plain data; the only I/O is reading and writing dataset
files. Imports nothing else of capcheck.

The names below are imported when first used (PEP 562), not when the
package is: `from captions.errors import ...` (every CLI module does) would
otherwise load the policy's pydantic models and PyYAML, a third of
`capcheck --help`'s start-up (issue 19).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_WHERE = {
    "BuildReport": "build", "build_dataset": "build",
    "Caption": "caption", "TagLine": "caption", "TextLine": "caption", "parse": "caption", "render": "caption",
    "caption_from_prompt": "compose", "compose_caption": "compose",
    "CaptionsError": "errors", "PolicyError": "errors", "SidecarError": "errors", "VocabularyError": "errors",
    "Facts": "facts", "facts_from_caption": "facts", "facts_from_prompt": "facts",
    "Finding": "lint", "lint_dataset": "lint", "lint_text": "lint",
    "Policy": "policy", "load_policy": "policy",
    "normalize_tag": "tags", "prompt_tags": "tags",
    "Vocabulary": "vocab",
}

__all__ = [
    "BuildReport", "Caption", "CaptionsError", "Facts", "Finding", "Policy", "PolicyError", "SidecarError",
    "TagLine", "TextLine", "Vocabulary", "VocabularyError", "build_dataset", "caption_from_prompt",
    "compose_caption", "facts_from_caption", "facts_from_prompt", "lint_dataset", "lint_text", "load_policy",
    "normalize_tag", "parse", "prompt_tags", "render",
]

if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from captions.build import BuildReport, build_dataset
    from captions.caption import Caption, TagLine, TextLine, parse, render
    from captions.compose import caption_from_prompt, compose_caption
    from captions.errors import CaptionsError, PolicyError, SidecarError, VocabularyError
    from captions.facts import Facts, facts_from_caption, facts_from_prompt
    from captions.lint import Finding, lint_dataset, lint_text
    from captions.policy import Policy, load_policy
    from captions.tags import normalize_tag, prompt_tags
    from captions.vocab import Vocabulary


def __getattr__(name: str) -> object:
    if name not in _WHERE:
        raise AttributeError(f"module 'captions' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"captions.{_WHERE[name]}"), name)
    globals()[name] = value  # once: later look-ups are ordinary
    return value
