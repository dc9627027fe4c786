"""Generation sidecars: the JSON file beside an image that holds its prompt."""

from __future__ import annotations

import json
import re
from pathlib import Path

from captions.errors import SidecarError

PROMPT_KEYS = ("prompt", "positive", "positive_prompt", "parameters")
_A1111_END = re.compile(r"^\s*(Negative prompt:|Steps:)", re.MULTILINE)


def positive_from_parameters(text: str) -> str:
    """A1111 `parameters`: the positive prompt is everything before the
    `Negative prompt:` line (or the `Steps:` line when there is no negative)."""
    match = _A1111_END.search(text)
    return (text[: match.start()] if match else text).strip()


def prompt_from_sidecar(data: object, path: Path | str = "") -> str:
    """The positive prompt of a parsed sidecar, or a SidecarError naming the file."""
    if not isinstance(data, dict):
        raise SidecarError(path, "expected a JSON object")
    for key in PROMPT_KEYS:
        value = data.get(key)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = ", ".join(value)
        if isinstance(value, str) and value.strip():
            return positive_from_parameters(value) if key == "parameters" else value.strip()
    # ComfyUI stores its node graph under `prompt`: a dict, not a prompt.
    raise SidecarError(path, f"no positive prompt (looked for {', '.join(PROMPT_KEYS)} as text)")


def read_sidecar(path: Path) -> str:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SidecarError(path, f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SidecarError(path, f"cannot read: {exc}") from None
    return prompt_from_sidecar(data, path)
