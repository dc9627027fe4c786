"""Images as the vision model receives them, and file hashes.

Prepared bytes are a pure function of the file and the settings: EXIF
orientation applied (a phone photo lying on its side would be judged on its
side), transparency flattened on white (a transparent PNG composited on
black hides a dark-haired figure), the long side scaled down to at most
`max_side` and never cropped (a crop would turn a full body into a cowboy
shot: the very thing we check), encoded as JPEG or PNG without metadata.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from verifier.errors import VerifierError

JPEG_QUALITY = 90
FORMATS = {"jpeg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png")}


@dataclass(frozen=True)
class Prepared:
    data: bytes
    mime: str
    size: tuple[int, int]  # width, height as sent


def text_sha(text: str) -> str:
    """sha256 of a caption's text (UTF-8): the caption half of every verdict key."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def flatten(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited on white."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """Scale (w, h) so the long side is at most max_side; never up, never a crop."""
    w, h = size
    long_side = max(w, h)
    if long_side <= max_side:
        return w, h
    scale = max_side / long_side
    return max(1, round(w * scale)), max(1, round(h * scale))


def prepare(path: Path, max_side: int = 1024, fmt: str = "jpeg") -> Prepared:
    """The bytes to send for `path`. Raises VerifierError naming the file."""
    if fmt not in FORMATS:
        raise VerifierError(None, f"image format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    pil_format, mime = FORMATS[fmt]
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image = flatten(image)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise VerifierError(path, f"cannot read image: {exc}") from None
    target = fit(image.size, max_side)
    if target != image.size:
        image = image.resize(target, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if pil_format == "JPEG":
        image.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=False)
    else:
        image.save(buf, "PNG", optimize=False)
    return Prepared(buf.getvalue(), mime, image.size)
