"""The training gate: train only on captions that were checked.

An image passes when its CURRENT caption (by sha256, with the image's
sha256) was verified `ok`; or was written by `apply` or `ingest` (fixed); or
a person answered, by folder sort, every aspect in dispute and the caption
says what they said (human-ingested); or a person fixed it, or called it
right, on the review page's loss cards (`review_loss`: human-ingested too). Anything else is listed with the
reason: never verified, caption changed since, a fix not applied, refused,
error. `capcheck train` refuses unless all pass or `--allow-unverified`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from captions.caption import parse
from captions.dataset import iter_images, link_problem
from captions.facts import facts_from_caption
from captions.journal import read_caption
from captions.policy import Policy
from verifier.core.images import sha256_file, text_sha
from verifier.core.store import Store
from verifier.core.tags import ABSENT
from verifier.core.verdict import FIX, OK
from verifier.human.apply import TAG_PREFIX, answered_by

OK_STATE, FIXED, INGESTED = "verified", "fixed", "human-ingested"


@dataclass
class Gate:
    passed: dict[str, str] = field(default_factory=dict)  # image -> how
    pending: dict[str, str] = field(default_factory=dict)  # image -> why not
    dataset_hash: str = ""

    @property
    def open(self) -> bool:
        return not self.pending and bool(self.passed)

    def metadata(self, policy: Policy | None) -> dict[str, str]:
        """What a LoRA trained on this dataset carries in its safetensors metadata."""
        return {"capcheck_dataset_hash": self.dataset_hash, "capcheck_policy": json.dumps(policy_summary(policy)),
                "capcheck_verification": json.dumps(self.summary())}

    def summary(self) -> dict:
        counts = Counter(self.passed.values())
        return {"images": len(self.passed) + len(self.pending), OK_STATE: counts[OK_STATE], FIXED: counts[FIXED],
                INGESTED: counts[INGESTED], "unverified": len(self.pending)}

    def describe(self) -> str:
        """The summary in words: what happened to each caption, not the keys of the metadata."""
        counts = self.summary()
        return (f"verified {counts[OK_STATE]}, fixed by apply {counts[FIXED]}, settled by a person {counts[INGESTED]}"
                f", not verified {counts['unverified']}")


def check(root: Path, store: Store, policy: Policy | None) -> Gate:
    gate = Gate()
    digest = hashlib.sha256()
    for item in iter_images(root):
        text = read_caption(item.caption)
        if text is None:
            continue
        if (problem := link_problem(item.image, root)) is not None:  # a loop cannot even be resolved
            gate.pending[Path(os.path.relpath(item.image, root)).as_posix()] = problem
            continue
        rel = store.rel(item.image)
        try:
            image_sha = store.file_sha(item.image, sha256_file)
        except OSError as exc:  # unreadable: it cannot be trained either
            gate.pending[rel] = f"cannot read image: {exc.strerror or exc}"
            continue
        caption_sha = text_sha(text)
        digest.update(f"{rel}\0{image_sha}\0{caption_sha}\n".encode())
        how, why = _state(store, policy, image_sha, caption_sha, text)
        if how:
            gate.passed[rel] = how
        else:
            gate.pending[rel] = why
    gate.dataset_hash = digest.hexdigest()
    return gate


def _state(store: Store, policy: Policy | None, image_sha: str, caption_sha: str, text: str) -> tuple[str, str]:
    db = store.db
    # What wrote this very text comes first: a caption apply fixed is counted as
    # fixed even once a later verify agrees with it (else "fixed 0" after 3 fixes).
    row = db.execute("SELECT how FROM resolutions WHERE image_sha=? AND caption_sha=? ORDER BY id DESC LIMIT 1",
                     (image_sha, caption_sha)).fetchone()
    if row is not None:
        return (FIXED if row["how"] == "apply" else INGESTED), ""
    if db.execute("SELECT 1 FROM verdicts WHERE image_sha=? AND caption_sha=? AND status=?",
                  (image_sha, caption_sha, OK)).fetchone():
        return OK_STATE, ""
    latest = db.execute("SELECT * FROM verdicts WHERE image_sha=? ORDER BY id DESC LIMIT 1", (image_sha,)).fetchone()
    if latest is None:
        return "", "never verified"
    people = store.human_answers(image_sha)
    if people and policy is not None:
        disputed = {answered_by(f) for f in json.loads(latest["fixes"] or "[]")}
        if _agrees(policy, text, people) and (latest["status"] != FIX or disputed <= set(people)):
            return INGESTED, ""
    if latest["caption_sha"] != caption_sha:
        return "", "caption changed since it was verified (verify again)"
    if latest["status"] == FIX:
        fixes = json.loads(latest["fixes"])
        items = ", ".join(f"{f['aspect']} {f['caption']}->{f['image']}" for f in fixes)
        if all(f.get("borderline") for f in fixes):
            return "", f"the model's borderline call, for a person to settle ({items})"
        return "", f"fix not applied ({items})"
    return "", f"{latest['status']}: {latest['reason']}"


def _agrees(policy: Policy, text: str, people: dict[str, str]) -> bool:
    """Does the caption say what the person answered? (a tag they removed is gone; a fact is theirs)"""
    caption = parse(text)
    claims = facts_from_caption(caption, policy)
    for key, value in people.items():
        if key.startswith(TAG_PREFIX):
            if value == ABSENT and key[len(TAG_PREFIX):] in caption.tags:
                return False
        elif claims.get(key) != value:
            return False
    return True


def policy_summary(policy: Policy | None) -> dict:
    if policy is None or policy.source is None:
        return {}
    data = Path(policy.source).read_bytes()
    return {"file": Path(policy.source).name, "sha256": hashlib.sha256(data).hexdigest(), "trigger": policy.trigger}
