"""Training data: aspect-ratio buckets, batches, and the caption each step sees.

- Buckets: area close to resolution^2, both sides multiples of 64. Each image
  goes to the bucket nearest its aspect ratio, scaled to cover it and
  centre-cropped by the few pixels the rounding leaves.
- Batches come from one bucket only (AnimaLoraToolkit crashes on mixed
  buckets at batch > 1). An epoch's order is a pure function of the seed and
  the epoch, so a resumed run can skip exactly the batches already done.
- Captions: `keep_tokens` and `shuffle_caption` (and `tag_dropout`) act on
  the tags only. The natural-language block stays whole and in place,
  because shuffling a sentence's comma-separated pieces would teach nonsense.
"""

from __future__ import annotations

import hashlib
import math
import random
import struct
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from captions.caption import TagLine, parse
from captions.dataset import image_repeats, iter_images
from captions.journal import read_caption
from captions.pixels import as_seen
from trainer.errors import TrainError

STEP = 64
MAX_RATIO = 2.5


@dataclass(frozen=True)
class Sample:
    image: Path
    caption: str  # the caption text as on disk
    sha: str  # sha256 of the image file: cache key
    bucket: tuple[int, int]  # (width, height)


def buckets(resolution: int, step: int = STEP, max_ratio: float = MAX_RATIO) -> list[tuple[int, int]]:
    area = resolution * resolution
    out = set()
    for w in range(step, int(resolution * max_ratio) + 1, step):
        h = area // w // step * step
        if h >= step and max(w, h) / min(w, h) <= max_ratio:
            out.add((w, h))
    return sorted(out)


def bucket_for(size: tuple[int, int], options: list[tuple[int, int]]) -> tuple[int, int]:
    w, h = size
    ratio = math.log(w / h)
    return min(options, key=lambda b: (abs(math.log(b[0] / b[1]) - ratio), -b[0] * b[1]))


def fit(image: Image.Image, bucket: tuple[int, int]) -> Image.Image:
    """Scale to cover the bucket, centre-crop the rounding remainder. The pixels
    are those a person sees (captions.pixels): 16-bit grey scaled, not clipped to white."""
    image = as_seen(image)
    bw, bh = bucket
    scale = max(bw / image.width, bh / image.height)
    size = (max(bw, round(image.width * scale)), max(bh, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.LANCZOS)
    left, top = (size[0] - bw) // 2, (size[1] - bh) // 2
    return image.crop((left, top, left + bw, top + bh))


def load_samples(root: Path, resolution: int) -> list[Sample]:
    """Every image under `root` with a caption; an image without one is an error."""
    options = buckets(resolution)
    out, missing = [], []
    for item in iter_images(root):
        text = read_caption(item.caption)
        if text is None:
            missing.append(item.image)
            continue
        try:  # decoded whole here, once: a truncated file is named now, not hours into the run
            with Image.open(item.image) as im:
                size = ImageOps.exif_transpose(im).size
        except (OSError, SyntaxError, ValueError, struct.error, Image.DecompressionBombError) as exc:
            raise TrainError(item.image, f"not a readable image ({exc}): replace it or move it out of the "
                                         "dataset") from None
        sha = hashlib.sha256(item.image.read_bytes()).hexdigest()
        out.append(Sample(item.image, text, sha, bucket_for(size, options)))
    if missing:
        raise TrainError(missing[0], f"no caption beside this image ({len(missing)} image(s) without one)")
    if not out:
        raise TrainError(root, "no captioned images to train on")
    return out


def epoch_batches(samples: list[Sample], repeats: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Index batches for one epoch, each from a single bucket; the same for the same seed and epoch."""
    rng = random.Random(f"{seed}:{epoch}")
    by_bucket: dict[tuple[int, int], list[int]] = {}
    for i, s in enumerate(samples):
        by_bucket.setdefault(s.bucket, []).extend([i] * image_repeats(s.image, repeats))  # kohya N_name folders
    batches = []
    for bucket in sorted(by_bucket):
        indices = by_bucket[bucket]
        rng.shuffle(indices)
        batches += [indices[k:k + batch_size] for k in range(0, len(indices), batch_size)]
    rng.shuffle(batches)
    return batches


def training_text(caption: str, keep_tokens: int = 0, shuffle: bool = False, dropout: float = 0.0,
                  rng: random.Random | None = None) -> str:
    """The text one step trains on: the caption, its tags past the first
    `keep_tokens` shuffled and/or dropped; the NL lines untouched."""
    text = caption.strip()
    if not shuffle and dropout <= 0:
        return text
    rng = rng or random.Random()
    parsed = parse(text)
    lines = list(parsed.lines)
    slots = [(i, j) for i, line in enumerate(lines) if isinstance(line, TagLine) for j in range(len(line.items))]
    movable = slots[keep_tokens:]
    tags = [lines[i].items[j] for i, j in movable]
    if shuffle:
        rng.shuffle(tags)
    new_items = {i: list(line.items) for i, line in enumerate(lines) if isinstance(line, TagLine)}
    for (i, j), tag in zip(movable, tags, strict=True):
        new_items[i][j] = None if dropout > 0 and rng.random() < dropout else tag
    out = []
    for i, line in enumerate(lines):
        if isinstance(line, TagLine):
            items = [t for t in new_items[i] if t is not None]
            if items:
                out.append(", ".join(items) + ("," if line.trailing_comma else ""))
        else:
            out.append(line.text())
    return "\n".join(out)


def image_tensor(sample: Sample, flip: bool = False):
    """(3, H, W) in [-1, 1], fitted to the sample's bucket."""
    import numpy as np
    import torch

    with Image.open(sample.image) as im:
        fitted = fit(im, sample.bucket)
    array = torch.from_numpy(np.asarray(fitted, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)
    return torch.flip(array, dims=[2]) if flip else array
