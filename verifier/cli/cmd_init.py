"""`capcheck init`: a starter policy from the dataset's own captions (or sidecars)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from captions.vocab import TAGS_ENV
from verifier.cli.console import app, dataset_path, err, handled, labelled, out
from verifier.cli.verify_options import CaptionExtOpt


@app.command()
@handled
def init(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (walked recursively).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here (default: "
                                                                      "DATASET/.capcheck/policy.yaml).")] = None,
    from_sidecars: Annotated[bool, typer.Option("--from-sidecars", help="Learn from the sidecar prompts, not the "
                                                                         "captions.")] = False,
    tags: Annotated[Path | None, typer.Option("--tags", help=f"Danbooru tag CSV; or ${TAGS_ENV}.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Write over an existing policy file.")] = False,
    caption_ext: CaptionExtOpt = None,
) -> None:
    """Write a commented starter policy to edit: trigger guessed, common tags, the aspects, a tag table."""
    from captions.init import write_starter

    root = dataset_path(dataset)
    path, g = write_starter(root, output, from_sidecars=from_sidecars, tags=tags, force=force,
                            caption_ext=caption_ext)
    for problem in g.unreadable:
        err.print(labelled("skipped:", "yellow", problem), soft_wrap=True)
    out.print(f"capcheck init: {path} ({g.captions} captions, {len(g.counts)} distinct tags)", soft_wrap=True)
    out.print(f"  trigger: {g.trigger or '(none found)'}", soft_wrap=True, markup=False)
    out.print(f"  in nearly every caption: {', '.join(g.common) or '(none)'}", soft_wrap=True, markup=False)
    out.print(f"next: edit {path}, then capcheck verify {dataset} --aspects framing,tags", soft_wrap=True,
              markup=False)
