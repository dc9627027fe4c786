"""A1111 / Forge samples: the PNG's `parameters` text chunk.

    keichan, 1girl, solo, upper body <lora:keichan_ep20:0.8>
    Negative prompt: ahoge, antenna hair, worst quality
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 832x1216, Model: ...

The LoRAs are `<lora:NAME:WEIGHT>` in the prompt (removed from the text the
facts are read from); the seed is the settings line's `Seed:`. A JPEG or
WebP keeps the same text in its EXIF UserComment (piexif's `UNICODE` + NUL
prefix and UTF-16, as A1111 writes it).
"""

from __future__ import annotations

import re
from pathlib import Path

from captions.sidecar import positive_from_parameters
from verifier.errors import SampleError
from verifier.eval.sample import A1111, Sample, character_lora

CHUNK = "parameters"
EXIF_IFD, USER_COMMENT = 0x8769, 0x9286
_LORA = re.compile(r"<(?:lora|lyco):([^:>]+)(?::([-+]?[\d.]+))?[^>]*>", re.I)
_NEGATIVE = re.compile(r"^\s*Negative prompt:(.*?)(?=^\s*Steps:|\Z)", re.M | re.S)
_SEED = re.compile(r"(?:^|,)\s*Seed:\s*(-?\d+)", re.M)


def user_comment(im) -> str | None:
    """The EXIF UserComment of an opened JPEG / WebP as text, or None."""
    raw = im.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT)
    if isinstance(raw, str):
        return raw.strip("\x00") or None
    if not isinstance(raw, bytes) or len(raw) <= 8:
        return None
    head, body = raw[:8], raw[8:]
    if head == b"UNICODE\x00":
        # piexif writes big-endian; a writer that went little-endian leaves ASCII's zero byte second
        order = "utf-16-le" if len(body) > 1 and body[1] == 0 and body[0] != 0 else "utf-16-be"
        return body.decode(order, errors="replace").strip("\x00") or None
    return body.decode("utf-8", errors="replace").strip("\x00") or None


def strip_loras(prompt: str) -> str:
    """The prompt without its `<lora:…>` terms (and the commas they leave)."""
    text = _LORA.sub("", prompt)
    return re.sub(r"\s*,\s*(?:,\s*)+", ", ", text).strip(" ,\n")


def from_parameters(path: Path, text: str) -> Sample:
    positive = positive_from_parameters(text)
    if not strip_loras(positive):
        raise SampleError(path, "A1111 'parameters' chunk has no positive prompt")
    loras = [(m.group(1).strip(), float(m.group(2)) if m.group(2) else 1.0) for m in _LORA.finditer(positive)]
    negative = _NEGATIVE.search(text)
    seed = _SEED.search(text)
    lora, strength, epoch = character_lora(path, loras)
    return Sample(path, A1111, strip_loras(positive), negative.group(1).strip() if negative else "",
                  int(seed.group(1)) if seed else None, lora, strength, epoch)
