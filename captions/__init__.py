"""The caption model: parse and render, tag rules, the policy, facts, build, lint.

Pure functions over plain data; the only I/O is reading and writing dataset
files. Imports nothing else of capcheck.
"""

from captions.build import BuildReport, build_dataset
from captions.caption import Caption, TagLine, TextLine, parse, render
from captions.compose import caption_from_prompt, compose_caption
from captions.errors import CaptionsError, PolicyError, SidecarError, VocabularyError
from captions.facts import Facts, facts_from_caption, facts_from_prompt
from captions.lint import Finding, lint_dataset, lint_text
from captions.policy import Policy, load_policy
from captions.tags import normalize_tag, prompt_tags
from captions.vocab import Vocabulary

__all__ = [
    "BuildReport", "Caption", "CaptionsError", "Facts", "Finding", "Policy", "PolicyError", "SidecarError",
    "TagLine", "TextLine", "Vocabulary", "VocabularyError", "build_dataset", "caption_from_prompt",
    "compose_caption", "facts_from_caption", "facts_from_prompt", "lint_dataset", "lint_text", "load_policy",
    "normalize_tag", "parse", "prompt_tags", "render",
]
