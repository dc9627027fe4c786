"""Images as the vision model receives them, and file hashes.

Prepared bytes are a pure function of the file and the settings: EXIF
orientation applied (a phone photo lying on its side would be judged on its
side), transparency flattened on white (a transparent PNG composited on
black hides a dark-haired figure), the long side scaled down to at most
`max_side` and never cropped (a crop would turn a full body into a cowboy
shot: the very thing we check), encoded as JPEG or PNG without metadata.
Every pixel mode arrives as a person sees it (`captions.pixels`: 16-bit
grey scaled, not clipped to white); what cannot be shown so, an animation
(which frame would be judged?) and an image past `MAX_PIXELS` are named
and skipped, one line each, and the run goes on.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from captions.pixels import ModeError, as_seen
from verifier.core import decoders
from verifier.errors import VerifierError

JPEG_QUALITY = 90
# 100 megapixels (10,000 x 10,000): LoRA sets are trained at about 1 MP and the largest
# camera sensors give about 100 MP, so a real dataset never comes near it; a decompression
# bomb (a small PNG that claims 50,000 x 50,000) is refused before a byte is decoded.
MAX_PIXELS = 100_000_000
# Pillow's own check warns from 89 MP; ours is the limit (checked before decoding).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
MILD = 2 / 3  # shrink: scales from here to 1 are area-averaged (see there)
FORMATS = {"jpeg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png")}


@dataclass(frozen=True)
class Prepared:
    data: bytes
    mime: str
    size: tuple[int, int]  # width, height as sent
    thumb: bytes | None = None  # the report's thumbnail (JPEG), when asked for


def text_sha(text: str) -> str:
    """sha256 of a caption's text (UTF-8): the caption half of every verdict key."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """Scale (w, h) so the long side is at most max_side; never up, never a crop."""
    w, h = size
    long_side = max(w, h)
    if long_side <= max_side:
        return w, h
    scale = max_side / long_side
    return max(1, round(w * scale)), max(1, round(h * scale))


def _too_large(path: Path, size: str) -> VerifierError:
    return VerifierError(path, f"image is {size}, over capcheck's limit of {MAX_PIXELS / 1e6:.0f}: a decompression "
                               "bomb, or far larger than any training image; scale it down")


def _opened(path: Path, opened: Image.Image) -> None:
    """Refuse, from the header alone, what will not be decoded: too large, animated."""
    w, h = opened.size
    if w * h > MAX_PIXELS:  # before decoding: the header is all that was read
        raise _too_large(path, f"{w}x{h} ({w * h / 1e6:,.0f} megapixels)")
    frames = getattr(opened, "n_frames", 1)
    if frames > 1:
        raise VerifierError(path, f"animated ({frames} frames): the model would judge one frame and the "
                                  "trainer another; save the frame you train on as a PNG")


def open_seen(path: Path, max_side: int | None = None) -> Image.Image:
    """The image at `path` decoded as a person sees it (upright, RGB on white).
    `max_side`: the caller will shrink it to that long side, so a JPEG may be
    decoded at 1/2, 1/4 or 1/8 scale (never below `max_side`: no detail the
    sent image would have is lost). Raises VerifierError naming the file:
    unreadable, animated, too large, a mode that cannot be shown."""
    try:
        data = Path(path).read_bytes()  # one read: the decoder then never waits on the disk holding the GIL
        with Image.open(io.BytesIO(data)) as opened:
            _opened(path, opened)
            if opened.format == "PNG" and (fast := decoders.png(data, opened)) is not None:
                return as_seen(fast)
            if max_side is not None and opened.format == "JPEG":
                opened.draft("RGB", fit(opened.size, max_side))
            return as_seen(opened)
    except Image.DecompressionBombError as exc:  # Pillow's own check (twice its limit) fires inside open()
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_large(path, f"{int(pixels.group(1)) / 1e6:,.0f} megapixels" if pixels else "too large") from None
    except ModeError as exc:
        raise VerifierError(path, f"cannot show this image: {exc}") from None
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise VerifierError(path, f"cannot read image: {exc}") from None


def shrink(image: Image.Image, max_side: int) -> Image.Image:
    """The long side at most `max_side`, the whole picture kept, antialiased
    (Pillow's filters widen their support with the scale: every source pixel counts).

    A mild reduction, the usual one (832x1216 -> 701x1024), is area averaging
    (BOX, OpenCV's INTER_AREA): 9.7 ms of CPU against bilinear's 13.2 and
    Lanczos's 40 on the loaded 2-core machine. Area averaging leaves a
    one-pixel line `scale` of its contrast, so past a third off (a 1216 px
    side sent at 768 or 512) bilinear, which keeps more of it, takes over:
    either way a thin strap stays visible
    (tests/test_images.py::test_a_thin_line_survives_the_resize)."""
    target = fit(image.size, max_side)
    if target == image.size:
        return image
    mild = max(target) / max(image.size) >= MILD
    return image.resize(target, Image.Resampling.BOX if mild else Image.Resampling.BILINEAR)


def thumbnail(image: Image.Image, side: int) -> Image.Image:
    """A preview with the long side `side`: first an integer reduce (a few
    source pixels per output pixel, nearly free), then the area filter on what is left."""
    factor = max(image.size) // side
    if factor >= 2:
        image = image.reduce(factor)
    return shrink(image, side)


def encode(image: Image.Image, fmt: str = "jpeg") -> bytes:
    pil_format, _ = FORMATS[fmt]
    buf = io.BytesIO()
    if pil_format == "JPEG":
        image.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=False)
    else:
        image.save(buf, "PNG", optimize=False)
    return buf.getvalue()


def prepare(path: Path, max_side: int = 1024, fmt: str = "jpeg", thumb_side: int | None = None) -> Prepared:
    """The bytes to send for `path`; with `thumb_side`, also a JPEG thumbnail of
    that long side made from the same decode (the report's). Raises
    VerifierError naming the file."""
    if fmt not in FORMATS:
        raise VerifierError(None, f"image format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    decoded = open_seen(path, max(max_side, thumb_side or 0))
    image = shrink(decoded, max_side)
    small = None
    if thumb_side is not None:  # from the sent image when it is large enough
        source = image if max(image.size) >= thumb_side else decoded
        small = encode(thumbnail(source, thumb_side), "jpeg")
    return Prepared(encode(image, fmt), FORMATS[fmt][1], image.size, small)
