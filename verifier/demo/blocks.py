"""Datasets of any size for the demo model, made in a moment.

Each image is a distinct random 8x12 pattern of dark and light blocks,
scaled up; the patterns come from a generator seeded with the count, so the
same call makes the same pictures. `textured` lays a blurred noise over them
so that a PNG has real content to decode (the benches time the decoder).
Beside each image its caption, and in `truth.json` what the demo model
(`demo.model`) will see in it. The tests' batch and crash sets, the first-day
fault script and the benches all make their sets here.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageFilter

# The caption every image gets: the keichan example's template; `{framing}` is what the caption claims.
CAPTION = ("masterpiece, best quality, score_7, safe,\n1girl, solo, keichan,\n"
           "A standing front view of a young girl with a bright smile.\nblunt bangs, braid, blue ribbon,\n"
           "smile, standing, {framing},\nwhite background, simple background\n")


def every_fifth_cowboy(i: int) -> dict:
    """What the model sees: a cowboy shot in every fifth image, the full body the captions claim elsewhere."""
    return {"framing": "cowboy shot" if i % 5 == 0 else "full body"}


def blocks(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """One random 8x12 block pattern, scaled to `size` with hard edges."""
    cells = Image.new("L", (8, 12))
    cells.putdata([rng.choice((30, 225)) for _ in range(96)])
    return cells.convert("RGB").resize(size, Image.Resampling.NEAREST)


def noise(size: tuple[int, int]) -> Image.Image:
    """A blurred grey noise to lay over the blocks: a photo-like texture for the PNG coder to work on."""
    return Image.effect_noise(size, 40).convert("RGB").filter(ImageFilter.GaussianBlur(1.5))


def make_blocks(root: Path, n: int, *, size: tuple[int, int] = (128, 192), caption: str = CAPTION,
                claimed: str = "full body", seen: Callable[[int], dict] = every_fifth_cowboy,
                textured: bool = False, digits: int = 4, compress_level: int = 6) -> None:
    """`n` images `images/0000.png`... under `root`, each with its caption (claiming `claimed`) and, in
    `root/truth.json`, what the demo model sees in it (`seen(i)`)."""
    rng = random.Random(n)
    folder = root / "images"
    folder.mkdir(parents=True)
    texture = noise(size) if textured else None
    truth = {}
    for i in range(n):
        image = blocks(rng, size)
        if texture is not None:
            image = Image.blend(image, texture, 0.25)
        name = f"{i:0{digits}d}"
        image.save(folder / f"{name}.png", compress_level=compress_level)
        (folder / f"{name}.txt").write_text(caption.format(framing=claimed), encoding="utf-8")
        truth[f"images/{name}.png"] = seen(i)
    (root / "truth.json").write_text(json.dumps(truth), encoding="utf-8")
