"""Small JPEG thumbnails beside the HTML reports: `reports/thumbs/<sha256>.jpg`.

A report that linked the originals by relative path lost every picture once
it was moved or sent; a thumbnail inside the reports folder travels with it.
Named by the image's content hash, so each is made once and reused by every
later run, and an image edited on disk gets a new one. Made the way the
model sees the image (`images.prepare`: EXIF orientation, transparency on
white, never cropped), only smaller. `verify` makes each one while it
prepares the image for the model, in the same worker thread and from the
same decode (`save`); the report then finds it made. Doing it after the
run decoded every image a second time on one core: 20 of the 38 s that
`capcheck verify` took over 384 new 832x1216 PNGs (issue 19).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from verifier.core.images import prepare
from verifier.errors import VerifierError

REPORTS = "reports"
THUMBS = "thumbs"
THUMB_SIDE = 320


def reports_dir(root: Path) -> Path:
    from verifier.core.store import STATE_DIR  # here: the workers that import this module need no SQLite

    return Path(root) / STATE_DIR / REPORTS


def wanted(reports: Path, sha: str) -> bool:
    """No thumbnail for this image content yet."""
    return not (Path(reports) / THUMBS / f"{sha}.jpg").exists()


def save(reports: Path, sha: str, data: bytes) -> None:
    """Keep a thumbnail made elsewhere (verify's preparation) for the report."""
    target = Path(reports) / THUMBS / f"{sha}.jpg"
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_bytes(target, data)


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
