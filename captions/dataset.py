"""Finding images, sidecars and captions in a dataset folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".webp"})
# capcheck's own state and the review tree that `route` makes (hard links to
# dataset images: walking it would count every routed image twice).
SKIP_DIRS = frozenset({".capcheck", "_review"})


@dataclass(frozen=True)
class Item:
    image: Path

    @property
    def caption(self) -> Path:
        return self.image.with_suffix(".txt")

    @property
    def sidecar(self) -> Path:
        return self.image.with_suffix(".json")


def iter_images(root: Path, skip: frozenset[str] | tuple[str, ...] = SKIP_DIRS) -> Iterator[Item]:
    """Every image under `root`, in a stable (sorted) order; folders named in
    `skip`, and hidden ones, are not entered."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip and not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() in IMAGE_EXTS and not name.startswith("."):
                yield Item(path)


def caption_files(root: Path) -> list[Path]:
    """Captions to check: `root` itself when it is a .txt file, else every
    .txt that sits beside an image of the same stem."""
    if root.is_file():
        return [root]
    return [item.caption for item in iter_images(root) if item.caption.exists()]
