"""Prompt templates as package data, and a tiny loader.

Templates are plain text with `{name}` fields (str.format); they live in
`prompts/templates/` so that a prompt change is a reviewable diff of text,
not of code.
"""

from __future__ import annotations

from importlib import resources


def load(name: str) -> str:
    """The text of template `name` (without the .txt suffix)."""
    try:
        return resources.files(__package__).joinpath("templates", f"{name}.txt").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyError(f"no prompt template '{name}'") from None


def names() -> list[str]:
    folder = resources.files(__package__).joinpath("templates")
    return sorted(p.name.removesuffix(".txt") for p in folder.iterdir() if p.name.endswith(".txt"))
