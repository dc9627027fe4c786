"""route: the images that need a person, in folders they can sort by eye.

`DIR/<aspect>/<value>/` for every value of the aspect (underscores for
spaces: `cowboy_shot`), each image placed in the folder of the model's
answer; `_unsure/` for what the model refused or failed on. A person moves
files between the folders (Finder, Explorer, `mv`); `ingest` reads the
result. Hard links by default: no copies of a 10 MB PNG, and moving a link
never touches the dataset.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from captions.policy import Policy
from verifier.core.report import read_report
from verifier.core.store import Store
from verifier.core.tags import TAGS
from verifier.core.verdict import ERROR, REFUSED
from verifier.errors import VerifierError

UNSURE = "_unsure"
MODES = ("link", "copy", "move")


def folder_name(value: str) -> str:
    return value.replace(" ", "_")


@dataclass
class Routed:
    folder: Path  # DIR/<aspect>
    placed: list[tuple[str, str, Path]] = field(default_factory=list)  # (image, folder value, destination)
    already: list[str] = field(default_factory=list)  # images already there from an earlier route
    copied_instead: int = 0  # hard links that failed (another file system)


def needs_person(line: dict, aspect: str) -> bool:
    if line.get("status") in (REFUSED, ERROR):
        return True
    seen = (line.get("observation") or {}).get(aspect) or {}
    return bool(seen.get("borderline")) or any(
        f["aspect"] == aspect and f.get("borderline") for f in line.get("fixes", []))


def model_value(line: dict, aspect: str) -> str | None:
    if line.get("status") in (REFUSED, ERROR):
        return None
    return ((line.get("observation") or {}).get(aspect) or {}).get("value")


def route(root: Path, policy: Policy, report: Path, aspect: str, store: Store, *, into: Path | None = None,
          everything: bool = False, mode: str = "link", only: set[str] | None = None) -> Routed:
    if aspect == TAGS:
        from verifier.human.tag_review import route_tags

        return route_tags(root, report, store, into=into, everything=everything, mode=mode, only=only)
    spec = policy.aspect(aspect)
    if spec is None:
        raise VerifierError(policy.source, f"no aspect '{aspect}' in the policy")
    if mode not in MODES:
        raise VerifierError(None, f"--mode must be one of {', '.join(MODES)}")
    root = Path(root)
    folder = (into or root / "_review") / aspect
    for value in [*spec.values, UNSURE]:
        (folder / folder_name(value)).mkdir(parents=True, exist_ok=True)
    out = Routed(folder)
    for line in read_report(report):
        if only is not None and line["image"] not in only:
            continue
        if not everything and not needs_person(line, aspect):
            continue
        source = root / line["image"]
        if not source.exists():
            continue
        value = model_value(line, aspect)
        dest_dir = folder / (folder_name(value) if value in spec.values else UNSURE)
        dest = _free_name(dest_dir, source)
        if dest is None:
            out.already.append(line["image"])
            continue
        out.copied_instead += _place(source, dest, mode)
        store.add_route(line["image"], line["image_sha"], str(dest.resolve()), mode)
        out.placed.append((line["image"], dest_dir.name, dest))
    return out


def _free_name(folder: Path, source: Path) -> Path | None:
    """`folder/name`, or `name__2` … when another file holds it; None when
    this very image is already there (route run twice)."""
    candidate, n = folder / source.name, 1
    while candidate.exists():
        if os.path.samefile(candidate, source) or _same_bytes(candidate, source):
            return None
        n += 1
        candidate = folder / f"{source.stem}__{n}{source.suffix}"
    return candidate


def _same_bytes(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()


def _place(source: Path, dest: Path, mode: str) -> int:
    """Returns 1 when a hard link had to become a copy."""
    if mode == "move":
        shutil.move(source, dest)
        return 0
    if mode == "link":
        try:
            os.link(source, dest)
            return 0
        except OSError:
            pass
    shutil.copy2(source, dest)
    return 1 if mode == "link" else 0
