"""Pixels as a person sees them: any mode Pillow opens, as 8-bit RGB.

The vision model, the report's thumbnail and the trainer must all get the
picture a viewer shows, or their results are about another picture.
Pillow's own `convert("RGB")` is not that for every mode: a 16-bit
grayscale PNG opens as `I;16` (0..65535) and converting clips every value
over 255 to white, so a grey figure reached the model as a blank page.
Here 16-bit grey is scaled to 8 bits (v / 257), transparency (`RGBA`,
`LA`, `PA`, a `P` or `L` image with a transparent colour) is composited on
white, `CMYK` and `YCbCr` go through Pillow's conversions (which are
right for them), and what cannot be shown without guessing (32-bit float
pixels, 32-bit integers past 16 bits) is named, not sent.

Pure functions over an opened image; the verifier and the trainer share
them (the trainer never imports the verifier).
"""

from __future__ import annotations

from PIL import Image, ImageOps

# Modes whose values span 0..65535: scaled by 1/257 so 65535 is 255.
_SIXTEEN = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
ORIENTATION = 0x0112  # the EXIF tag; 1 is upright, 2..8 a flip and/or a turn


class ModeError(ValueError):
    """An image whose pixels capcheck cannot show as a person would see them."""


def grey16_to_8(image: Image.Image) -> Image.Image:
    """A 16-bit grey image (`I;16*`, or `I` within 0..65535) as `L`, 0..65535 -> 0..255."""
    wide = image if image.mode == "I" else image.convert("I")
    low, high = wide.getextrema()
    if low < 0 or high > 65535:
        raise ModeError(f"32-bit integer pixels ({low}..{high}) past 16 bits: save it as an 8- or 16-bit PNG")
    # point() on an "I" image takes a linear function (scale, offset): +0.5 rounds instead of truncating
    return wide.point(lambda v: v * (255 / 65535) + 0.5).convert("L")


def as_rgb(image: Image.Image) -> Image.Image:
    """RGB as a viewer shows `image`: 16-bit grey scaled, transparency on white.
    Raises ModeError for pixels that cannot be shown without a guess."""
    mode = image.mode
    if mode in _SIXTEEN or mode == "I":
        return grey16_to_8(image).convert("RGB")
    if mode == "F":
        raise ModeError("32-bit float pixels: there is no one way to show them; save it as an 8- or 16-bit PNG")
    if mode in ("P", "L") and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in _ALPHA:
        rgba = image.convert("RGBA") if mode != "La" else image.convert("LA").convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "RGB":  # already what a viewer shows: Pillow's convert would copy it (3 MB for 832x1216)
        image.load()
        return image
    return image.convert("RGB")


def as_seen(image: Image.Image) -> Image.Image:
    """Upright (EXIF orientation applied) and `as_rgb`: what a person sees when opening the file.
    The result may be `image` itself (loaded), when it is upright RGB already: no copy."""
    image.load()  # a PNG's eXIf chunk may come after its pixels
    if image.getexif().get(ORIENTATION, 1) in range(2, 9):  # exif_transpose copies even an upright image
        image = ImageOps.exif_transpose(image)
    return as_rgb(image)
