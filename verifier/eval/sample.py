"""One generated sample: the image, the prompt it was made from, and the epoch of its LoRA.

Every reader (capcheck's sidecar, ComfyUI's graph, A1111's parameters)
ends here, so what is scored does not depend on where the image came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from verifier.errors import SampleError
from verifier.eval.epochs import BASELINE, epoch_of, lora_stem

CAPCHECK, COMFYUI, A1111 = "capcheck", "comfyui", "a1111"


@dataclass(frozen=True)
class Sample:
    path: Path
    source: str  # capcheck | comfyui | a1111
    prompt: str  # the positive prompt, LoRA syntax removed
    negative: str
    seed: int | None
    lora: str | None  # the character LoRA's file name; None: the baseline
    strength: float
    epoch: int  # 0: the baseline (no LoRA)
    format: str | None = None  # the prompt format's name (K, KT, N) where the sample says it


def character_lora(path: Path, loras: list[tuple[str, float]]) -> tuple[str | None, float, int]:
    """(LoRA, strength, epoch) of an image from the LoRAs it was made with.

    The character's is the one whose name carries an epoch; no LoRA at all
    is the baseline. Several with an epoch, or LoRAs but none with one: the
    epoch cannot be determined, and the image is named and left out."""
    if not loras:
        return None, 0.0, BASELINE
    dated = [(name, weight, e) for name, weight in loras if (e := epoch_of(name)) is not None]
    if len(dated) > 1:
        names = ", ".join(lora_stem(n) for n, _, _ in dated)
        raise SampleError(path, f"several LoRAs carry an epoch ({names}); cannot tell which one is evaluated")
    if not dated:
        names = ", ".join(lora_stem(n) for n, _ in loras)
        raise SampleError(path, f"no epoch in the LoRA name ({names}); expected _epochNNN, -NNNNNN, _epNN, -epNN "
                                "or _eNN")
    return dated[0]
