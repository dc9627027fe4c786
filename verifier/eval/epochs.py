"""The epoch a LoRA file was saved at, read from its name.

The names trainers write: capcheck's `NAME_epoch020`, kohya's `NAME-000020`
(six digits), and the hand-renamed `NAME_ep20`, `NAME-ep20`, `NAME_e20`.
No LoRA at all is the baseline, epoch 0. A name none of these match says
no epoch: the caller names the image and leaves it out (never a guess).
"""

from __future__ import annotations

import re

BASELINE = 0
_PATTERNS = (
    re.compile(r"_epoch(\d+)$", re.I),  # capcheck (trainer/checkpoint.py lora_path)
    re.compile(r"-(\d{6})$"),  # kohya sd-scripts
    re.compile(r"[_-]ep(\d+)$", re.I),
    re.compile(r"_e(\d+)$", re.I),
)
_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".bin")


def lora_stem(name: str) -> str:
    """`loras\\chars/keichan_epoch020.safetensors` -> `keichan_epoch020` (ComfyUI names carry sub-folders)."""
    base = re.split(r"[\\/]", name.strip())[-1]
    for ext in _EXTENSIONS:
        if base.lower().endswith(ext):
            return base[: -len(ext)]
    return base


def epoch_of(name: str) -> int | None:
    """The epoch in a LoRA file name, or None when the name says none."""
    stem = lora_stem(name)
    for pattern in _PATTERNS:
        if match := pattern.search(stem):
            return int(match.group(1))
    return None
