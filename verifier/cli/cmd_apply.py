"""Captions written from a verify report, and taken back: `apply`, `undo`.

Exit codes: 0 done; 1 done, but something needs attention (stale captions,
missing or read-only files, left alone); 2 bad input, or a refusal that left
everything untouched (undo of a file changed since).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from captions.errors import CaptionsError
from verifier.cli.console import (
    EXIT_FINDINGS,
    OldAspectOpt,
    PolicyOpt,
    app,
    dataset_path,
    dataset_policy,
    err,
    handled,
    labelled,
    out,
    quoted,
    writing,
)
from verifier.cli.human_opts import AspectsOpt, ReportOpt, asked_aspects, print_diff
from verifier.errors import ReportError


@app.command()
@handled
def apply(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    report: ReportOpt = None,
    aspects: AspectsOpt = None,
    aspect: OldAspectOpt = None,
    include_borderline: Annotated[bool, typer.Option("--include-borderline", help="Apply borderline items too.")]
    = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the diffs; write nothing.")] = False,
    policy: PolicyOpt = None,
) -> None:
    """Write the non-borderline fixes of the last verify as diffs (journaled; `undo` takes them back)."""
    from verifier.human.apply import (
        APPLIED,
        CHANGED,
        MISSING,
        READ_ONLY,
        SKIPPED,
        STALE,
        UNCHANGED,
        apply_report,
        report_path,
    )

    root = dataset_path(dataset)
    source = report_path(root, report)
    if not source.exists():  # say this before asking for anything else (a policy)
        raise ReportError(source, f"no verify report: run `capcheck verify {quoted(dataset)} --policy POLICY.yaml "
                                  "--model NAME` (or `capcheck run`) first, or pass --report")
    with writing(root, "apply") as store:
        pol = dataset_policy(policy, root, store)
        names = asked_aspects(aspects, aspect, pol)
        if not dry_run:
            store.start_run("apply", json.dumps({"report": str(source), "aspects": names,
                                                 "include_borderline": include_borderline}))
        done = apply_report(root, pol, source, store, aspects=names, include_borderline=include_borderline,
                            dry_run=dry_run)
    for item in done:
        if item.status == CHANGED:
            print_diff(item.diff)
        for note in item.notes:
            err.print(labelled("note:", "yellow", f"{item.image}: {note}"), soft_wrap=True)
    for item in done:
        if item.status in (STALE, MISSING, READ_ONLY):
            out.print(f"{item.status}: {item.image}: {item.reason}", soft_wrap=True)
    count = {s: sum(1 for i in done if i.status == s) for s in (CHANGED, UNCHANGED, STALE, SKIPPED, MISSING,
                                                                 READ_ONLY, APPLIED)}
    verb = "would change" if dry_run else "changed"
    out.print(f"capcheck apply: {verb} {count[CHANGED]}, unchanged {count[UNCHANGED]}, stale {count[STALE]}, "
              f"borderline left for a person {count[SKIPPED]}, missing {count[MISSING]}"
              + (f", read-only (left alone) {count[READ_ONLY]}" if count[READ_ONLY] else "")
              + (f", applied already (by an earlier apply) {count[APPLIED]}" if count[APPLIED] else ""))
    if count[SKIPPED]:
        out.print(f"next: capcheck route {quoted(dataset)} --aspects ASPECT   (the borderline ones, sorted by eye)",
                  soft_wrap=True)
    if count[STALE] or count[MISSING] or count[READ_ONLY]:
        raise typer.Exit(EXIT_FINDINGS)


@app.command()
@handled
def undo(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    last: Annotated[bool, typer.Option("--last", help="The newest run not yet undone (what plain `undo` "
                                                      "takes).")] = False,
    run: Annotated[int | None, typer.Option("--run", metavar="ID", help="This run (its id is in the messages "
                                                                        "of a refused undo).")] = None,
    delete_created: Annotated[bool, typer.Option("--delete-created", help="With --run: the run created "
                                                                           "captions; delete them.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be restored or deleted.")] = False,
) -> None:
    """Restore the captions a run wrote, byte for byte (refused if any changed since; never deletes unasked)."""
    from verifier.human.apply import undo_run

    if last and run is not None:
        raise CaptionsError(None, "give --last or --run ID, not both")
    root = dataset_path(dataset)
    with writing(root, "undo") as store:
        done = undo_run(root, store, run, dry_run=dry_run, delete_created=delete_created)
    restored, deleted = ("would restore", "would delete") if dry_run else ("restored", "deleted")
    out.print(f"capcheck undo: run {done.run_id} ({done.kind}): {restored} {len(done.restored)} caption(s), "
              f"{deleted} {len(done.deleted)}")
    for path in done.restored:
        out.print(f"  {path}", soft_wrap=True)
    for path in done.deleted:
        out.print(f"  {deleted}: {path}", soft_wrap=True)
