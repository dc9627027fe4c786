"""Finding images, sidecars and captions in a dataset folder."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".webp"})
# capcheck's own state and the review tree that `route` makes (hard links to
# dataset images: walking it would count every routed image twice).
SKIP_DIRS = frozenset({".capcheck", "_review"})
# kohya's repeat folders: `10_kanachan/` repeats each of its images 10 times per epoch.
# A leading zero is an ordering prefix (`02_clothed_pose/`, as the articles
# number their sets), not a count: nobody writes two repeats as `02`.
_REPEAT_DIR = re.compile(r"^([1-9]\d*)_\S")


def folder_repeats(image: Path) -> int | None:
    """The N of the kohya `N_name` folder an image sits in, or None when its folder is no such folder."""
    m = _REPEAT_DIR.match(Path(image).parent.name)
    return int(m.group(1)) if m else None


def image_repeats(image: Path, default: int) -> int:
    """Times an image is seen per epoch: its kohya folder's N, else `default` (the config's repeats)."""
    found = folder_repeats(image)
    return default if found is None else found


# Caption files kohya-style trainers read: `.txt` (the default), `.caption`.
CAPTION_EXTS = (".txt", ".caption")


def caption_path(image: Path, ext: str | None = None) -> Path:
    """The caption beside `image`: with `ext` (`--caption-ext`), that one; else
    the first of `.txt`, `.caption` that exists; else where a `.txt` would go."""
    image = Path(image)
    if ext:
        return image.with_suffix(ext if ext.startswith(".") else f".{ext}")
    for candidate in CAPTION_EXTS:
        path = image.with_suffix(candidate)
        if path.exists():
            return path
    return image.with_suffix(CAPTION_EXTS[0])


@dataclass(frozen=True)
class Item:
    image: Path
    caption_ext: str | None = None  # None: `.txt`, or `.caption` where only that exists

    @property
    def caption(self) -> Path:
        return caption_path(self.image, self.caption_ext)

    @property
    def sidecar(self) -> Path:
        return self.image.with_suffix(".json")


def iter_images(root: Path, skip: frozenset[str] | tuple[str, ...] = SKIP_DIRS,
                caption_ext: str | None = None) -> Iterator[Item]:
    """Every image under `root`, in a stable (sorted) order; folders named in
    `skip`, and hidden ones, are not entered."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip and not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() in IMAGE_EXTS and not name.startswith("."):
                yield Item(path, caption_ext)


def caption_files(root: Path) -> list[Path]:
    """Captions to check: `root` itself when it is a .txt file, else every
    .txt that sits beside an image of the same stem."""
    if root.is_file():
        return [root]
    return [item.caption for item in iter_images(root) if item.caption.exists()]
