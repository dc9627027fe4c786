"""A faster PNG decoder when it is installed, Pillow when it is not.

Decoding is most of what capcheck's client spends per image: an 832x1216
PNG took Pillow 43.7 ms of CPU and libspng (`pyspng`) 26.1 ms on the
loaded 2-core development machine (35 and 20 ms idle, issue 19). pyspng is
the optional extra `capcheck[fast]` (wheels for Linux x86-64, macOS arm64
and Windows for Python 3.11-3.13; none for Intel Macs, which get Pillow),
so nothing depends on it: without it, or for any PNG it is not sure about,
`png()` answers None and Pillow decodes as before.

Only the plain cases go to pyspng: 8-bit RGB, RGBA or grey, one frame, no
transparent colour key. Pillow has already read the header (size, mode,
EXIF), so what the caller checks and applies (the pixel limit, EXIF
orientation, transparency on white) is the same on both paths.
"""

from __future__ import annotations

from PIL import Image

try:  # optional: `pip install capcheck[fast]`
    import pyspng
except ImportError:  # pragma: no cover - exercised by tests that hide it
    pyspng = None

_PLAIN = frozenset({"RGB", "RGBA", "L"})  # 8-bit modes whose raw rows are the mode itself


def available() -> bool:
    return pyspng is not None


def png(data: bytes, opened: Image.Image) -> Image.Image | None:
    """`data` (a whole PNG file, already opened by Pillow as `opened`) decoded
    by pyspng, with Pillow's header info; None when Pillow should decode it."""
    if pyspng is None or opened.mode not in _PLAIN or "transparency" in opened.info:
        return None
    tile = getattr(opened, "tile", None) or []
    if len(tile) != 1 or tile[0][3] != opened.mode:  # 16-bit RGB reads as "RGB;16B": Pillow's job
        return None
    try:
        array = pyspng.load(data, opened.mode)
    except (RuntimeError, ValueError):  # let Pillow decode it, and name the problem if there is one
        return None
    image = Image.fromarray(array)
    if image.mode != opened.mode or image.size != opened.size:
        return None
    image.info = dict(opened.info)  # EXIF (orientation), ICC: as Pillow read them
    return image
