"""The loss's view of the captions, on the verifier's side: kept, listed, routed, re-asked.

`capcheck train` scores every image with the final LoRA and without
(`trainer.losses`) and writes `output_dir/losses.json`; the CLI keeps a copy
in `DATASET/.capcheck/losses.json`, which the commands below read:

- `capcheck route DATASET --losses` places the worst fits (the ratio above
  Q3 + 1.5 IQR) under `_review/loss/` (hard links, as route does), with
  `_review/loss/losses.txt` listing each one's numbers and caption;
- `capcheck verify DATASET --only-losses` asks the model again (`--fresh`)
  about those images only.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from captions.journal import read_caption
from verifier.core.store import STATE_DIR
from verifier.errors import VerifierError
from verifier.human.folders import free_name, place

LOSSES = "losses.json"
LOSS_DIR = "loss"


def losses_path(root: Path) -> Path:
    return Path(root) / STATE_DIR / LOSSES


def keep(root: Path, data: dict) -> Path:
    """The run's losses.json, kept with the dataset (atomic), for route and verify to find."""
    path = losses_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def read(root: Path) -> dict:
    path = losses_path(root)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VerifierError(path, "no losses yet: train first (capcheck train), or score a finished run with "
                                  "capcheck train DATASET --config CONFIG --losses") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VerifierError(path, f"cannot read: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise VerifierError(path, "not a losses.json written by capcheck train (no 'images' list)")
    return data


def worst(root: Path) -> list[dict]:
    """The worst fits by the rule recorded in losses.json, worst first."""
    return [x for x in read(root)["images"] if x.get("worst")]


def only_patterns(root: Path) -> list[str]:
    """`--only` patterns that match exactly the worst fits (their paths, glob characters escaped)."""
    return [glob.escape(x["image"]) for x in worst(root)]


@dataclass
class LossRouted:
    folder: Path
    placed: list[tuple[dict, Path]] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in losses.json, gone from the dataset
    copied_instead: int = 0


def route_losses(root: Path, into: Path | None = None, mode: str = "link") -> LossRouted:
    root = Path(root)
    data = read(root)
    folder = (into or root / "_review") / LOSS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    out = LossRouted(folder)
    lines = [f"# {data.get('images_scored')} images scored; worst fits: {data.get('rule')}",
             f"# quartiles: {json.dumps(data.get('quartiles'))}", ""]
    for entry in (x for x in data["images"] if x.get("worst")):
        source = root / entry["image"]
        if not source.exists():
            out.missing.append(entry["image"])
            continue
        dest = free_name(folder, source)
        if dest is None:
            out.already.append(entry["image"])
        else:
            out.copied_instead += place(source, dest, mode)
            out.placed.append((entry, dest))
        caption = read_caption(source.with_suffix(".txt"))
        lines += [f"{entry['image']}: ratio {entry['ratio']:.3f} ({entry['loss_lora']:.4f} with the LoRA, "
                  f"{entry['loss_base']:.4f} without)", *(f"    {line}" for line in (caption or "").splitlines()), ""]
    (folder / "losses.txt").write_text("\n".join(lines), encoding="utf-8")
    return out
