"""Small JPEG thumbnails beside the HTML reports: `reports/thumbs/<sha256>.jpg`.

A report that linked the originals by relative path lost every picture once
it was moved or sent; a thumbnail inside the reports folder travels with it.
Named by the image's content hash, so each is made once and reused by every
later run, and an image edited on disk gets a new one. Made the way the
model sees the image (`images.prepare`: EXIF orientation, transparency on
white, never cropped), only smaller.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from verifier.core.images import prepare
from verifier.errors import VerifierError

THUMBS = "thumbs"
THUMB_SIDE = 320


def thumb(reports: Path, image: Path, sha: str) -> str | None:
    """The thumbnail's path relative to `reports` (made if missing), or None
    when the image cannot be read (gone, truncated): the card says so instead."""
    name = f"{THUMBS}/{sha}.jpg"
    target = Path(reports) / name
    if target.exists():
        return name
    try:
        data = prepare(image, THUMB_SIDE, "jpeg").data
    except VerifierError:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_bytes(target, data)
    return name


def _write_bytes(path: Path, data: bytes) -> None:
    """All or nothing: a half-written JPEG would be reused by every later run."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
