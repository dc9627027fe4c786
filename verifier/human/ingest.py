"""ingest: folders a person sorted are ground truth.

An image under a folder whose name is a value of the aspect (`cowboy_shot`,
`Cowboy Shot`, `full-body`: spelling and case do not matter) is that value.
Two layouts:

- a review tree made by `route`: the images are links or copies, so each is
  matched back to the dataset image with the same content hash (a `move`d
  image goes back to where it came from);
- a dataset folder sorted in place (`02_clothed_pose/available/cowboy_shot/`,
  each image moved together with its .txt and .json): the caption beside
  the image is the one to fix.

Nothing is guessed: a folder that is not a value is reported, an image
sorted into two different values stops the ingest before anything is
written. Each caption gets only that one fact changed (`captions.edit`),
the human answer is recorded, and a second ingest changes nothing.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from captions.aspects import squash
from captions.dataset import caption_path, iter_images
from captions.edit import set_facts
from captions.journal import read_caption, write_caption
from captions.policy import Policy
from verifier.core.images import sha256_file, text_sha
from verifier.core.store import STATE_DIR, Store
from verifier.core.tags import TAGS
from verifier.errors import VerifierError
from verifier.human.apply import unified
from verifier.human.folders import UNSURE, IngestConflict, Ingested, dataset_index, inside
from verifier.human.tag_review import ingest_tags


@dataclass
class Sorted:
    path: Path  # the sorted file
    value: str
    sha: str


def find_dataset(path: Path) -> Path:
    """The nearest folder at or above `path` that holds capcheck's store."""
    for candidate in [Path(path).resolve(), *Path(path).resolve().parents]:
        if (candidate / STATE_DIR).is_dir():
            return candidate
    raise VerifierError(path, "no capcheck dataset at or above this folder (pass --dataset)")


def scan(path: Path, policy: Policy, aspect: str, result: Ingested) -> list[Sorted]:
    """Every image in a value folder; the others are counted, not guessed."""
    spec = policy.aspect(aspect)
    if spec is None:
        raise VerifierError(policy.source, f"no aspect '{aspect}' in the policy")
    names = {squash(v): v for v in spec.values}  # folder names: the values themselves, any spelling/case
    found = []
    for item in iter_images(path, skip=()):  # a review tree is what we read here: skip nothing but hidden folders
        image = item.image
        folder = image.parent
        value = names.get(squash(folder.name))
        if value is not None:
            found.append(Sorted(image, value, sha256_file(image)))
        elif folder.name == UNSURE:
            result.unsure += 1
        elif any(names.get(squash(d.name)) for d in folder.parent.iterdir() if d.is_dir()) and folder != path:
            where = folder.relative_to(path).as_posix()
            result.unknown_folders[where] = result.unknown_folders.get(where, 0) + 1
    return found


def ingest(path: Path, root: Path, policy: Policy, aspect: str, store: Store, *, dry_run: bool = False) -> Ingested:
    if aspect == TAGS:
        return ingest_tags(path, root, store, dry_run=dry_run)
    result = Ingested()
    path, root = Path(path), Path(root)
    placed = scan(path, policy, aspect, result)
    by_sha: dict[str, set[str]] = defaultdict(set)
    for s in placed:
        by_sha[s.sha].add(s.value)
    clashes = [s for s in placed if len(by_sha[s.sha]) > 1]
    if clashes:
        listing = "; ".join(sorted({f"{s.path.name} in {', '.join(sorted(by_sha[s.sha]))}" for s in clashes}))
        raise IngestConflict(path, f"the same image is sorted into two values, nothing written: {listing}")
    dataset: dict[str, list[Path]] | None = None
    targets: dict[Path, Sorted] = {}
    for s in placed:
        if caption_path(s.path).exists():
            targets[s.path] = s  # sorted in place: the caption is beside it
            continue
        if dataset is None:
            dataset = dataset_index(root, store)
        # A link or copy (a review tree): the dataset image with the same bytes.
        matches = [p for p in dataset.get(s.sha, []) if p.resolve() != s.path.resolve()]
        matches = matches or _moved_back(s, root, store, dry_run)
        if matches:
            for image in matches:
                targets[image] = s
        elif inside(s.path, root):
            result.no_caption.append(store.rel(s.path))  # moved without its .txt
        else:
            result.not_found.append(str(s.path))
    for image, s in sorted(targets.items()):
        _fix_one(image, s, root, policy, aspect, store, dry_run, result)
    return result


def _moved_back(s: Sorted, root: Path, store: Store, dry_run: bool) -> list[Path]:
    """An image `route --mode move` took out of the dataset goes back home."""
    for row in store.routes_for(s.sha):
        if row["mode"] == "move":
            home = root / row["image"]
            if not dry_run and not home.exists():
                home.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(s.path, home)
            return [home]
    return []


def _fix_one(image: Path, s: Sorted, root: Path, policy: Policy, aspect: str, store: Store, dry_run: bool,
             result: Ingested) -> None:
    caption = caption_path(image)
    text = read_caption(caption)
    rel = store.rel(image) if inside(image, root) else str(image)
    if text is None:
        result.no_caption.append(rel)
        return
    edit = set_facts(text, policy, {aspect: s.value})
    said = edit.before.get(aspect)
    if not dry_run:
        store.add_human(rel, s.sha, aspect, s.value, str(s.path))
    if edit.text == text:
        result.unchanged += 1
        return
    result.changed[(said or "-", s.value)] += 1
    result.notes += [f"{rel}: {n}" for n in edit.notes]
    result.diffs.append(unified(rel, text, edit.text))
    if not dry_run:
        write_caption(caption, edit.text, store, "ingest", expect=text)
        store.add_resolution(rel, s.sha, text_sha(edit.text), "ingest")
