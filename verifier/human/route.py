"""route: the images that need a person, in folders they can sort by eye.

`DIR/<aspect>/<value>/` for every value of the aspect (underscores for
spaces: `cowboy_shot`), each image placed in the folder of the model's
answer; `_unsure/` for what the model refused or failed on. A person moves
files between the folders (Finder, Explorer, `mv`); `ingest` reads the
result. Hard links by default: no copies of a 10 MB PNG, and moving a link
never touches the dataset.
"""

from __future__ import annotations

from pathlib import Path

from captions.policy import Policy
from verifier.core.report import read_report
from verifier.core.store import Store
from verifier.core.tags import TAGS
from verifier.core.verdict import ERROR, REFUSED
from verifier.errors import VerifierError
from verifier.human.folders import MODES, UNSURE, Routed, folder_name, free_name, place
from verifier.human.tag_review import route_tags


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
        return route_tags(root, report, store, into=into, everything=everything, mode=mode, only=only,
                          policy=policy)
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
        dest = free_name(dest_dir, source)
        if dest is None:
            out.already.append(line["image"])
            continue
        out.copied_instead += place(source, dest, mode)
        store.add_route(line["image"], line["image_sha"], str(dest.resolve()), mode)
        out.placed.append((line["image"], dest_dir.name, dest))
    return out
