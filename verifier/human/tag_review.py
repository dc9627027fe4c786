"""The human loop for the tags audit: route, ingest.

`route --aspects tags` puts the images that need a person into
`_review/tags/`:

- `mismatch/`: captions that may belong to another image (a likely swap
  among them): a person fixes those by hand, nothing is automatic;
- `<tag>/removed/`: a refuted tag that apply would not remove on its own
  (the NL block mentions it, or `--all`), pre-sorted by the model's
  answer; a person who sees the tag in the image moves the file to
  `<tag>/kept/` (both folders are made).

`ingest _review --aspects tags` reads `<tag>/kept/` and `<tag>/removed/` as
the person's answer: `removed` takes the tag off the caption's tag lines
(journaled), both are recorded (`tag:<tag>` in the store), and from then on
apply never overrules them. Folder names are the tag with `_` for spaces.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from captions.dataset import caption_path, iter_images
from captions.edit import nl_mentions, remove_tags
from captions.generic import choose_policy
from captions.journal import read_caption, write_caption
from captions.policy import Policy
from captions.tags import normalize_tag
from captions.trigger import dataset_trigger
from captions.vocab import find_vocabulary
from verifier.core.images import sha256_file, text_sha
from verifier.core.report import read_report
from verifier.core.store import Store
from verifier.core.tags import ABSENT, PRESENT, TAGS, unasked
from verifier.human.apply import TAG_PREFIX, unified
from verifier.human.folders import IngestConflict, Ingested, Routed, dataset_index, free_name, inside, place

MISMATCH_DIR, KEPT, REMOVED = "mismatch", "kept", "removed"


def tag_folder(tag: str) -> str:
    return tag.replace(" ", "_").replace("/", "%2F")


def folder_tag(name: str) -> str:
    return normalize_tag(name.replace("%2F", "/"))


def person_key(tag: str) -> str:
    return TAG_PREFIX + tag


def held_tags(line: dict, text: str | None, people: dict[str, str], everything: bool = False,
              never: dict[str, str] | None = None) -> list[str]:
    """Refuted tags of a report line that wait for a person: those the NL block
    mentions (removing the tag alone would leave the caption contradicting
    itself), or every one with `everything`; never one a person answered, nor
    one that was not asked as a visual tag (`never`: a folder named `removed/`
    would have ingest take the trigger out)."""
    entry = line.get("tags") or {}
    refuted = [t for t in entry.get("refuted", []) if person_key(t) not in people and t not in (never or {})]
    if everything:
        return refuted
    return [t for t in refuted if text is not None and nl_mentions(text, t)]


def route_tags(root: Path, report: Path, store: Store, *, into: Path | None = None, everything: bool = False,
               mode: str = "link", only: set[str] | None = None, policy: Policy | None = None) -> Routed:
    root = Path(root)
    policy = policy or choose_policy(None, root).policy
    vocab, trigger = find_vocabulary(None, policy), None
    folder = (into or root / "_review") / TAGS
    (folder / MISMATCH_DIR).mkdir(parents=True, exist_ok=True)
    out = Routed(folder)
    for line in read_report(report):
        entry = line.get("tags")
        if not entry or (only is not None and line["image"] not in only):
            continue
        source = root / line["image"]
        if not source.exists():
            continue
        people = store.human_answers(line.get("image_sha"))
        text = read_caption(caption_path(source))
        if entry.get("mismatch"):
            targets = [folder / MISMATCH_DIR]
        else:
            targets = []
            if trigger is None and entry.get("refuted"):
                trigger = dataset_trigger(root, vocab) or ""
            never = unasked(entry.get("refuted", []), line.get("claims") or {}, policy, vocab, trigger or None)
            for tag in held_tags(line, text, people, everything, never):
                for side in (KEPT, REMOVED):
                    (folder / tag_folder(tag) / side).mkdir(parents=True, exist_ok=True)
                targets.append(folder / tag_folder(tag) / REMOVED)
        for dest_dir in targets:
            dest = free_name(dest_dir, source)
            if dest is None:
                out.already.append(line["image"])
                continue
            # One image may wait in several tag folders: never moved out of the dataset.
            out.copied_instead += place(source, dest, "copy" if mode == "copy" else "link")
            store.add_route(line["image"], line["image_sha"], str(dest.resolve()), mode)
            label = dest_dir.name if dest_dir.name == MISMATCH_DIR else f"{dest_dir.parent.name}/{dest_dir.name}"
            out.placed.append((line["image"], label, dest))
    return out


def ingest_tags(path: Path, root: Path, store: Store, *, dry_run: bool = False) -> Ingested:
    """Read `<tag>/kept/` and `<tag>/removed/` under `path` (the review tree, or its `tags/`)."""
    result = Ingested()
    path = Path(path)
    base = path / TAGS if (path / TAGS).is_dir() else path
    answers: dict[str, dict[str, str]] = defaultdict(dict)  # image sha -> tag -> present/absent
    files: dict[str, Path] = {}
    for item in iter_images(base, skip=()):
        side, tag_dir = item.image.parent.name, item.image.parent.parent
        if side not in (KEPT, REMOVED) or tag_dir.parent != base:
            if item.image.parent.name != MISMATCH_DIR:
                where = item.image.parent.relative_to(base).as_posix()
                result.unknown_folders[where] = result.unknown_folders.get(where, 0) + 1
            continue
        sha = sha256_file(item.image)
        tag = folder_tag(tag_dir.name)
        said = PRESENT if side == KEPT else ABSENT
        if answers[sha].get(tag, said) != said:
            raise IngestConflict(path, f"{item.image.name} is in both {tag_dir.name}/kept and {tag_dir.name}/removed, "
                                       "nothing written")
        answers[sha][tag] = said
        files[sha] = item.image
    dataset = dataset_index(root, store) if answers else {}
    for sha, tags in sorted(answers.items(), key=lambda kv: str(files[kv[0]])):
        images = [p for p in dataset.get(sha, []) if p.resolve() != files[sha].resolve()]
        if not images:
            (result.no_caption if inside(files[sha], root) else result.not_found).append(str(files[sha]))
            continue
        for image in images:
            _answer_one(image, sha, tags, root, store, dry_run, result)
    return result


def _answer_one(image: Path, sha: str, tags: dict[str, str], root: Path, store: Store, dry_run: bool,
                result: Ingested) -> None:
    caption = caption_path(image)
    text = read_caption(caption)
    rel = store.rel(image)
    if text is None:
        result.no_caption.append(rel)
        return
    if not dry_run:
        for tag, said in tags.items():
            store.add_human(rel, sha, person_key(tag), said, "ingest")
    removed = [t for t, said in tags.items() if said == ABSENT]
    new = remove_tags(text, removed)
    result.notes += [f"{rel}: the NL still mentions '{t}': edit it by hand" for t in removed if nl_mentions(new, t)]
    if new == text:
        result.unchanged += 1
        return
    for tag in removed:
        result.changed[(tag, "removed")] += 1
    result.diffs.append(unified(rel, text, new))
    if not dry_run:
        write_caption(caption, new, store, "ingest", expect=text)
        store.add_resolution(rel, sha, text_sha(new), "ingest")
