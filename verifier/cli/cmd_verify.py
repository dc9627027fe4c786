"""`capcheck verify`: every caption checked against its image by a vision model.

Exit codes: 0 the run completed (whatever the verdicts); 1 it completed,
but some files could not be read (an image that is not one, a caption that
is not valid UTF-8 or is empty: each is named, every other image was
verified); 2 bad input
(policy, dataset, options, no captioned images); 4 the model could not be
used (bad key, unknown model, unreachable server for every item, no codex
executable); 130 interrupted (every answer so far is kept: run again to
resume).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from verifier.cli.console import (
    EXIT_FINDINGS,
    EXIT_INTERRUPTED,
    EXIT_NO_MODEL,
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
from verifier.cli.verify_options import with_verify_options

if TYPE_CHECKING:
    from verifier.core.options import VerifyOptions


@app.command()
@handled
@with_verify_options
def verify(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (walked recursively).")],
    policy: PolicyOpt = None,
    options: VerifyOptions = None,  # every option of verify_options.verify_params, checked
    only_losses: Annotated[bool, typer.Option("--only-losses", help="Only the images the trained LoRA fit worst "
                                                                    "(losses.json), asked again (--fresh).")] = False,
) -> None:
    """Ask a vision model what each image shows and compare it with the caption (`--aspects …,tags`: every tag)."""
    import asyncio

    from verifier.cli.progress import Live
    from verifier.core.report import write_reports
    from verifier.core.verify import verify_dataset
    from verifier.human.agreement import all_agreements

    root = dataset_path(dataset)
    if only_losses:  # the loss's suspects, asked again whatever the store holds
        from verifier.human.route_losses import only_patterns

        suspects = only_patterns(root)
        if not suspects:
            out.print("no image is a worst fit by losses.json's rule: nothing to ask again", markup=False)
            return
        options.only, options.fresh = suspects, True
    pol = dataset_policy(policy, root)
    live = Live()
    with writing(root, "verify") as store:
        try:
            with live.progress:
                run = asyncio.run(verify_dataset(root, pol, options, store, on_result=live, on_plan=live.plan,
                                                 on_notice=lambda m: err.print(m, soft_wrap=True, markup=False)))
        except KeyboardInterrupt:
            stored = sum(live.counts.values())
            batch = " (submitted batches keep running on the server)" if options.backend == "batch" else ""
            err.print(f"interrupted: {stored} verdicts are in the store{batch}; run the same command to resume")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        jsonl, page = write_reports(root, run, pol, all_agreements(store, pol))
    _summary(run, jsonl, page)
    if run.could_not_run:
        first = run.asked[0].verdict.reason
        err.print(labelled("error:", "red", f"every request failed; the model could not be used ({first})"),
                  soft_wrap=True)
        raise typer.Exit(EXIT_NO_MODEL)
    if run.unreadable:
        raise typer.Exit(EXIT_FINDINGS)  # every other image was verified; these files need replacing or fixing


def _summary(run, jsonl: Path, page: Path) -> None:
    from rich.table import Table

    from verifier.core.report import fix_groups
    from verifier.core.tag_report import run_tags
    from verifier.core.verdict import ERROR, REFUSED, STATUSES
    from verifier.core.works import other_note

    asked = len(run.asked)
    minutes, seconds = divmod(run.wall_s, 60)
    took = f"{int(minutes)}m{seconds:04.1f}s" if minutes else f"{seconds:.1f}s"
    out.print(f"capcheck verify: {len(run.results)} images · {asked} asked, {len(run.results) - asked} from the store "
              f"· {took} · {run.requests} requests, at most {run.max_in_flight} in flight · {run.backend}/{run.model} "
              f"({run.protocol})", soft_wrap=True)
    out.print(" · ".join(f"{s} {run.count(s)}" for s in STATUSES))
    groups = fix_groups(run.results)
    if groups:
        table = Table(title="fix items", show_header=False)
        for aspect, shows, says, n, borderline in groups:
            note = f" ({borderline} borderline)" if borderline else ""
            table.add_row(f"{aspect}: image shows {shows} (caption says {says})", f"× {n}{note}")
        out.print(table)
    for text in run_tags(run.results).summary_lines() if any("tags" in r.verdict.claims for r in run.results) else []:
        out.print(text, soft_wrap=True, markup=False)
    for r in run.results:
        if r.verdict.status in (REFUSED, ERROR):
            out.print(f"{r.verdict.status}: {r.image}: {r.verdict.reason}", soft_wrap=True)
    for image, why in run.unreadable.items():  # a broken file: named, it needs replacing
        out.print(f"skipped {image}: {why}", soft_wrap=True, markup=False)
    if run.others:  # a .gif is not part of the set, but never passed over without a word
        out.print(other_note(run.others), soft_wrap=True, markup=False)
    if run.pending:
        out.print(f"pending: {run.pending} images wait for a batch's answers (not counted above)")
    if run.skipped:
        reasons: dict[str, int] = {}
        for why in run.skipped.values():
            reasons[why] = reasons.get(why, 0) + 1
        out.print("skipped: " + ", ".join(f"{why} × {n}" for why, n in reasons.items()))
    prompt_tokens, completion_tokens = run.tokens()
    total = run.total_tokens()
    out.print(f"tokens: {prompt_tokens:,} prompt + {completion_tokens:,} completion"
              + (f" · {total:,} reported as a total only (codex)" if total else ""))
    out.print(f"report: {jsonl}\n        {page}", soft_wrap=True)
