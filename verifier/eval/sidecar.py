"""capcheck's own sample sidecar: `<stem>.json` beside each PNG the eval renderer writes.

    {"capcheck_sample": 1, "prompt": ..., "negative": ..., "format": "K", "seed": 42, "steps": 25,
     "cfg": 4.0, "width": 1024, "height": 1024, "lora": "keichan_epoch020.safetensors" | null,
     "strength": 1.0, "epoch": 20}

The epoch is the file's own word (the renderer knows it); a LoRA named
without an epoch field still gets one from its name.
"""

from __future__ import annotations

import json
from pathlib import Path

from verifier.errors import SampleError
from verifier.eval.epochs import BASELINE, epoch_of
from verifier.eval.sample import CAPCHECK, Sample

MARK = "capcheck_sample"


def sidecar_path(image: Path) -> Path:
    return image.with_suffix(".json")


def is_sample_sidecar(path: Path) -> bool:
    """A JSON file beside the image that says it is one of ours (a build sidecar is not)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return path.exists()  # ours or not, it is broken: read_sidecar names the problem
    return isinstance(data, dict) and MARK in data


def read_sidecar(image: Path) -> Sample:
    path = sidecar_path(image)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SampleError(path, f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SampleError(path, f"cannot read: {exc}") from None
    if not isinstance(data, dict) or data.get(MARK) != 1:
        raise SampleError(path, f"not a capcheck sample sidecar (no \"{MARK}\": 1)")
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise SampleError(path, "no prompt")
    lora = data.get("lora")
    if lora is not None and not isinstance(lora, str):
        raise SampleError(path, f"lora: expected a file name or null, not {lora!r}")
    epoch = data.get("epoch", BASELINE if lora is None else epoch_of(lora))
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise SampleError(path, f"epoch: expected a whole number (0: the baseline), not {epoch!r}")
    seed = data.get("seed")
    strength = data.get("strength", 1.0 if lora else 0.0)
    if not isinstance(strength, int | float):
        raise SampleError(path, f"strength: expected a number, not {strength!r}")
    fmt = data.get("format")
    return Sample(image, CAPCHECK, prompt.strip(), str(data.get("negative") or ""),
                  seed if isinstance(seed, int) else None, lora, float(strength), epoch,
                  fmt if isinstance(fmt, str) and fmt else None)
