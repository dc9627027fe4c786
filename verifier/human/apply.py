"""apply and undo: confident fixes written as diffs, and taken back exactly.

`apply_report` changes the disputed facts of every `fix` verdict in a
report and re-renders only what those facts control (`captions.edit`). A
caption that changed on disk since it was verified is stale and is not
touched, nor is a read-only one (its mode says "do not write"); one an
earlier apply already fixed from the same verified text is done, not stale
(a second apply reports it so and changes nothing). Borderline items wait
for a person unless asked. Every write is atomic and journaled (intent,
rename, done: `captions.journal`), and `undo_run` restores the journaled
text byte for byte, refusing if any file changed since; a file already
back to its text before (an undo cut off half way) is simply done. Undoing a run that created captions deletes them, so
it happens only when that run is named and the deletion is asked for.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from captions.dataset import caption_path
from captions.edit import nl_mentions, remove_tags, set_facts
from captions.journal import read_caption, read_only, remove_caption, write_caption
from captions.policy import Policy
from captions.trigger import dataset_trigger
from captions.vocab import find_vocabulary
from verifier.core.images import sha256_file, text_sha
from verifier.core.policy_rule import choose
from verifier.core.report import read_report, reports_dir
from verifier.core.store import Store
from verifier.core.tags import TAGS, unasked
from verifier.core.verdict import FIX
from verifier.errors import VerifierError

CHANGED, UNCHANGED, STALE, SKIPPED, MISSING = "changed", "unchanged", "stale", "skipped", "missing"
APPLIED = "applied already"  # an earlier apply wrote this fix: done, not stale
TAG_PREFIX = "tag:"  # a person's answer on one tag, as the store keys it (`tag:bikini`)
READ_ONLY = "read-only"


class UndoRefused(VerifierError):
    """A file changed since the run being undone, or undoing it would delete
    captions nobody asked to delete; nothing was restored."""


def policy_for(store: Store, override: Path | None) -> Policy:
    """The policy by the one rule every command uses (`verifier.core.policy_rule`)."""
    return choose(override, store.root, store).policy


def report_path(root: Path, report: Path | None) -> Path:
    return report if report is not None else reports_dir(root) / "latest.jsonl"


def unified(path: str, before: str, after: str) -> str:
    return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True), f"a/{path}", f"b/{path}"))


@dataclass
class Applied:
    image: str
    status: str  # changed | unchanged | applied already | stale | skipped | missing | read-only
    changes: dict[str, str] = field(default_factory=dict)
    diff: str = ""
    reason: str = ""
    notes: list[str] = field(default_factory=list)


def apply_report(root: Path, policy: Policy, report: Path, store: Store, *, aspects: list[str] | None = None,
                 include_borderline: bool = False, dry_run: bool = False) -> list[Applied]:
    """Write the fixes of every `fix` verdict in `report` (see module doc); an
    aspect a person answered (ingest) is theirs, and is left alone."""
    root = Path(root)
    out: list[Applied] = []

    @cache
    def tag_rules() -> tuple:  # the tag CSV and the dataset's trigger: read once, when a tag is to be removed
        vocab = find_vocabulary(None, policy)
        return vocab, dataset_trigger(root, vocab)

    for line in read_report(report):
        if line.get("status") != FIX:
            continue
        image = line["image"]
        people = store.human_answers(line.get("image_sha"))
        # A person's folder sort is ground truth: the model never overrules it.
        fixes = [f for f in line.get("fixes", []) if (aspects is None or f["aspect"] in aspects)
                 and answered_by(f) not in people]
        # A caption that may be another image's is a person's to fix: none of its items is applied.
        mismatch = bool((line.get("tags") or {}).get("mismatch"))
        wanted = [] if mismatch else [f for f in fixes if include_borderline or not f.get("borderline")]
        if not wanted:
            if fixes:
                why = ("mismatch: the caption may belong to another image; route --aspects tags, a person fixes it"
                       if mismatch else
                       "borderline: route it to a person, or --include-borderline")
                out.append(Applied(image, SKIPPED, reason=why))
            continue
        changes = {f["aspect"]: f["image"] for f in wanted if f["aspect"] != TAGS}
        refuted = [f["caption"] for f in wanted if f["aspect"] == TAGS]
        # Only a tag asked as a visual tag is ever removed (never the trigger, whatever an old report says).
        kept = unasked(refuted, line.get("claims") or {}, policy, *tag_rules()) if refuted else {}
        notes = [f"tags: {tag} kept: never asked as a visual tag ({why})" for tag, why in kept.items()]
        refuted = [t for t in refuted if t not in kept]
        caption = caption_path(root / image)
        text = read_caption(caption)
        if text is None or not (root / image).exists():
            out.append(Applied(image, MISSING, changes, reason="image or caption no longer there"))
            continue
        if text_sha(text) != line.get("caption_sha"):
            if any(text_sha(before) == line.get("caption_sha") for before in store.applied_over(caption, text)):
                out.append(Applied(image, APPLIED, changes, reason="an earlier apply wrote this fix"))
                continue
            out.append(Applied(image, STALE, changes, reason="caption changed on disk since it was verified"))
            continue
        if store.file_sha(root / image, sha256_file) != line.get("image_sha"):
            out.append(Applied(image, STALE, changes, reason="image changed on disk since it was verified"))
            continue
        edit = set_facts(text, policy, changes)
        new, notes = edit.text, [*notes, *edit.notes]
        if refuted:
            # Refuted tags leave the tag lines only; one the NL also says waits
            # for a person (the caption would contradict itself), as do the rest.
            said = [t for t in refuted if nl_mentions(text, t)]
            if said:
                notes.append(f"tags: the NL mentions {', '.join(said)}: route --aspects tags, a person decides")
                if not changes:
                    out.append(Applied(image, SKIPPED, reason=notes[-1]))
                    continue
            else:
                new = remove_tags(new, refuted)
                changes[TAGS] = "removed " + ", ".join(refuted)
        if new == text:
            out.append(Applied(image, UNCHANGED, changes, notes=notes))
            continue
        if read_only(caption):  # a rename would replace it regardless of its mode
            out.append(Applied(image, READ_ONLY, changes, reason="the caption file is read-only; left alone"))
            continue
        if not dry_run:
            write_caption(caption, new, store, "apply", expect=text)
            store.add_resolution(image, line["image_sha"], text_sha(new), "apply")
        out.append(Applied(image, CHANGED, changes, unified(caption.relative_to(root).as_posix(), text, new),
                           notes=notes))
    return out


def answered_by(fix: dict) -> str:
    """The store key of a person's answer that overrules this fix item."""
    return TAG_PREFIX + fix["caption"] if fix["aspect"] == TAGS else fix["aspect"]


@dataclass
class Undone:
    run_id: int
    kind: str
    restored: list[str]  # relative caption paths given back their text before the run
    deleted: list[str] = field(default_factory=list)  # relative caption paths the run had created
    undo_run: int | None = None


def undo_run(root: Path, store: Store, run_id: int | None = None, dry_run: bool = False,
             delete_created: bool = False) -> Undone:
    """Restore every caption the run wrote to its text before the run.

    Without `run_id` the newest run not yet undone is taken. A caption the
    run created has no text before it: undoing it means deleting the file,
    which is done only when the run is named (`run_id`) and `delete_created`
    says so; otherwise nothing at all is touched (a second plain `undo` once
    undid a whole build and deleted every caption)."""
    if run_id is None:
        runs = store.undoable_runs()
        if not runs:
            raise VerifierError(root, "nothing to undo")
        target = runs[0]
    else:
        target = store.run(run_id)
        if target is None:
            raise VerifierError(root, f"no run {run_id}")
        if target["undone_by"] is not None:
            raise VerifierError(root, f"run {run_id} was already undone by run {target['undone_by']}")
    rows = store.journal(target["id"])
    if not rows:
        raise VerifierError(root, f"run {target['id']} ({target['kind']}) wrote no captions")
    first_before: dict[str, str | None] = {}
    last_after: dict[str, str] = {}
    for row in rows:
        first_before.setdefault(row["path"], row["before"])
        last_after[row["path"]] = row["after"]
    created = sorted(p for p, before in first_before.items() if before is None)
    if created and (run_id is None or not delete_created):
        raise UndoRefused(root, f"not undone: run {target['id']} ({target['kind']}) created {len(created)} "
                                "caption(s), and undoing it deletes them; to delete them, name the run and say so: "
                                f"--run {target['id']} --delete-created")
    # A file back at its text before was restored by an undo cut off half way: done, not changed.
    changed = [p for p, after in last_after.items() if read_caption(Path(root) / p) not in (after, first_before[p])]
    if changed:
        raise UndoRefused(root, f"not undone: {len(changed)} file(s) changed since run {target['id']} "
                                f"({target['kind']}): {', '.join(changed[:5])}{' …' if len(changed) > 5 else ''}")
    locked = [p for p in last_after if (Path(root) / p).exists() and read_only(Path(root) / p)]
    if locked:
        raise UndoRefused(root, f"not undone: {len(locked)} caption(s) of run {target['id']} are read-only: "
                                f"{', '.join(locked[:5])}{' …' if len(locked) > 5 else ''}")
    result = Undone(target["id"], target["kind"], sorted(p for p in last_after if p not in created), created)
    if dry_run:
        return result
    result.undo_run = store.start_run("undo", json.dumps({"undo": target["id"]}))
    for rel, before in first_before.items():
        path = Path(root) / rel
        if read_caption(path) == before:
            continue  # restored already (a cut-off undo); nothing to write
        if before is None:  # the run created it; deleting was asked for above
            remove_caption(path, store, "undo: removed", expect=last_after[rel])
        else:
            write_caption(path, before, store, "undo", expect=last_after[rel])
    store.mark_undone(target["id"], result.undo_run)
    return result
