"""`capcheck build` and `capcheck lint`: the caption commands."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from captions.vocab import TAGS_ENV
from verifier.cli.console import (
    EXIT_FINDINGS,
    PolicyOpt,
    app,
    dataset_path,
    dataset_policy,
    err,
    handled,
    labelled,
    out,
    writing,
)

if TYPE_CHECKING:
    from captions.build import BuildReport
# build, lint, the policy and rich's tables are imported inside the commands: `capcheck --help` needs none of
# them (the policy's pydantic models were a quarter of its start-up, issue 19)


@app.command()
@handled
def build(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (walked recursively).")],
    policy: PolicyOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be written; write nothing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite captions that differ (journaled).")] = False,
) -> None:
    """Write <stem>.txt captions from each image's JSON sidecar, by the policy."""
    from captions.build import INVALID, build_dataset

    root = dataset_path(dataset)
    pol = dataset_policy(policy, root)
    if dry_run:
        report = build_dataset(root, pol, dry_run=True, force=force)
    else:
        with writing(root, "build") as store:
            store.start_run("build", json.dumps({"policy": str(pol.source) if pol.source else None, "force": force}))
            report = build_dataset(root, pol, force=force, journal=store)
    _print_build(report)
    if report.count(INVALID):
        raise typer.Exit(EXIT_FINDINGS)


def _print_build(report: BuildReport) -> None:
    from rich.table import Table

    from captions.build import DIFFERS, INVALID, SKIPPED, UNCHANGED, WRITTEN

    if not report.outcomes:
        err.print(labelled("warning:", "yellow", report.root, ": no images found"))
    for o in report.of(INVALID):
        err.print(labelled("invalid:", "red", o.reason), soft_wrap=True)  # a sidecar, or a caption that cannot be read
    for o in report.of(DIFFERS):
        out.print(f"kept {o.image.with_suffix('.txt').relative_to(report.root)}: {o.reason}", soft_wrap=True)
    verb = "would write" if report.dry_run else "written"
    table = Table(title=f"capcheck build: {report.root}", show_header=False)
    table.add_row("images", str(len(report.outcomes)))
    table.add_row(verb, str(report.count(WRITTEN)))
    table.add_row("unchanged", str(report.count(UNCHANGED)))
    table.add_row("kept (differs)", str(report.count(DIFFERS)))
    skipped = report.of(SKIPPED) + report.of(INVALID)
    reasons: dict[str, int] = {}
    for o in skipped:
        key = o.reason if o.status == SKIPPED else "invalid sidecar or caption"
        reasons[key] = reasons.get(key, 0) + 1
    detail = ", ".join(f"{why} × {n}" for why, n in reasons.items())
    table.add_row("skipped", f"{len(skipped)}" + (f" ({detail})" if detail else ""))
    out.print(table)
    dist = Table(title="aspects of the built captions")
    dist.add_column("aspect")
    dist.add_column("values")
    for aspect, counts in report.distribution().items():
        if counts:
            dist.add_row(aspect, ", ".join(f"{v} {n}" for v, n in counts.most_common()))
    if any(report.distribution().values()):
        out.print(dist)


class Format(StrEnum):
    text = "text"
    json = "json"


@app.command()
@handled
def lint(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder, or one caption .txt file.")],
    policy: PolicyOpt = None,
    tags: Annotated[
        Path | None, typer.Option("--tags", help=f"Danbooru tag CSV (a1111 tagcomplete format); or ${TAGS_ENV}.")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="text or json.")] = Format.text,
) -> None:
    """Check every caption; exit 1 when any error-severity finding exists."""
    from captions.generic import DATASET_POLICY
    from captions.lint import ERROR, lint_dataset
    from captions.vocab import find_vocabulary
    from verifier.core.policy_rule import choose

    root = dataset_path(dataset, file_ok=True)
    chosen = choose(policy, root if root.is_dir() else None)
    # the one rule, but where it ends at the generic policy lint checks only the rules that need none
    pol = chosen.policy if chosen.policy.source is not None else None
    err.print(chosen.how if pol is not None else f"policy: none (no --policy, no {DATASET_POLICY.as_posix()}, no "
              "verify on record): only the rules that need no policy", soft_wrap=True)
    vocab = find_vocabulary(tags, pol)
    findings = lint_dataset(root, pol, vocab)
    errors = sum(1 for f in findings if f.severity == ERROR)
    if fmt is Format.json:
        sys.stdout.write(json.dumps([f.as_dict() for f in findings], ensure_ascii=False, indent=1) + "\n")
    else:
        for f in findings:
            style = "red" if f.severity == ERROR else "yellow"
            out.print(Text.assemble(f"{f.path}: ", (f.rule, style), f": {f.message}"), soft_wrap=True)
        note = "" if vocab is not None else f" (no tag CSV: unknown-tag skipped; pass --tags or set ${TAGS_ENV})"
        out.print(f"{errors} error(s), {len(findings) - errors} warning(s){note}", soft_wrap=True)
    if errors:
        raise typer.Exit(EXIT_FINDINGS)
