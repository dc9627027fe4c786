"""Finding images, sidecars and captions in a dataset folder."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".webp"})
# Pictures that are not images of a dataset: kohya-style trainers (and ours) do not read
# them, so they are neither verified nor trained, but a run names them instead of
# passing over them without a word (a set converted half to GIF would lose that half).
OTHER_IMAGE_EXTS = frozenset({".gif", ".avif", ".bmp", ".tif", ".tiff", ".heic", ".jxl"})
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


def _walk(root: Path, skip: frozenset[str] | tuple[str, ...], exts: frozenset[str]) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip and not d.startswith("."))
        for name in sorted(filenames):
            # the name's suffix before a Path is made: a dataset is half captions, and pathlib's
            # parsing of every file was a tenth of linting 10,000 captions
            if os.path.splitext(name)[1].lower() in exts and not name.startswith("."):
                yield Path(dirpath, name)


def iter_images(root: Path, skip: frozenset[str] | tuple[str, ...] = SKIP_DIRS,
                caption_ext: str | None = None) -> Iterator[Item]:
    """Every image under `root`, in a stable (sorted) order; folders named in
    `skip`, and hidden ones, are not entered."""
    for path in _walk(root, skip, IMAGE_EXTS):
        yield Item(path, caption_ext)


def other_images(root: Path, skip: frozenset[str] | tuple[str, ...] = SKIP_DIRS) -> list[Path]:
    """Pictures under `root` that are not images of the dataset (`OTHER_IMAGE_EXTS`)."""
    return list(_walk(root, skip, OTHER_IMAGE_EXTS))


def link_problem(path: Path, root: Path) -> str | None:
    """Why `path`, a symbolic link, cannot stand for an image of the dataset at
    `root` (a loop, a dangling link, a target outside it), or None."""
    path = Path(path)
    if not path.is_symlink():
        return None
    try:
        target = Path(os.path.realpath(path, strict=True))
    except FileNotFoundError:
        return f"a link to {os.readlink(path)}, which does not exist: restore the file or remove the link"
    except (OSError, RuntimeError):  # ELOOP; RuntimeError from older pathlib
        return "a link that points to itself (a loop): replace it with the image or remove it"
    if not target.is_relative_to(Path(root).resolve()):
        return (f"a link to {target}, outside the dataset: copy the file in (verdicts, fixes and undo are kept "
                "for the files inside the dataset)")
    return None


def caption_files(root: Path) -> list[Path]:
    """Captions to check: `root` itself when it is a .txt file, else every
    .txt that sits beside an image of the same stem."""
    if root.is_file():
        return [root]
    return [item.caption for item in iter_images(root) if item.caption.exists()]
