"""The human loop: `apply`, `undo`, `route`, `ingest`, `agreement`.

Exit codes: 0 done; 1 done, but something needs attention (stale captions,
images in folders that are not values, sorted images without a caption);
2 bad input, or a refusal that left everything untouched (undo of a file
changed since, an image sorted into two values).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from verifier.cli.console import EXIT_FINDINGS, app, dataset_path, err, handled, out

ReportOpt = Annotated[Path | None, typer.Option("--report", "-r", help="Verify report (default: latest.jsonl).")]
PolicyOverride = Annotated[Path | None, typer.Option("--policy", "-p", help="Caption policy (default: the one "
                                                                               "the last verify used).")]


def _diff(text: str) -> None:
    for line in text.splitlines():
        plus = line.startswith("+") and not line.startswith("+++")
        minus = line.startswith("-") and not line.startswith("---")
        out.print(line, style="green" if plus else "red" if minus else "dim", soft_wrap=True, markup=False)


@app.command()
@handled
def apply(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    report: ReportOpt = None,
    aspects: Annotated[str | None, typer.Option(help="Only these aspects, comma-separated.")] = None,
    include_borderline: Annotated[bool, typer.Option("--include-borderline", help="Apply borderline items too.")]
    = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the diffs; write nothing.")] = False,
    policy: PolicyOverride = None,
) -> None:
    """Write the non-borderline fixes of the last verify as diffs (journaled; `undo` takes them back)."""
    from verifier.core.store import Store
    from verifier.human.apply import CHANGED, MISSING, SKIPPED, STALE, UNCHANGED, apply_report, policy_for, report_path

    root = dataset_path(dataset)
    with Store(root) as store:
        pol = policy_for(store, policy)
        if not dry_run:
            store.start_run("apply", json.dumps({"report": str(report_path(root, report)), "aspects": aspects,
                                                 "include_borderline": include_borderline}))
        done = apply_report(root, pol, report_path(root, report), store,
                            aspects=[a.strip() for a in aspects.split(",")] if aspects else None,
                            include_borderline=include_borderline, dry_run=dry_run)
    for item in done:
        if item.status == CHANGED:
            _diff(item.diff)
        for note in item.notes:
            err.print(f"[yellow]note:[/yellow] {item.image}: {note}", soft_wrap=True)
    for item in done:
        if item.status in (STALE, MISSING):
            out.print(f"{item.status}: {item.image}: {item.reason}", soft_wrap=True)
    count = {s: sum(1 for i in done if i.status == s) for s in (CHANGED, UNCHANGED, STALE, SKIPPED, MISSING)}
    verb = "would change" if dry_run else "changed"
    out.print(f"capcheck apply: {verb} {count[CHANGED]}, unchanged {count[UNCHANGED]}, stale {count[STALE]}, "
              f"borderline left for a person {count[SKIPPED]}, missing {count[MISSING]}")
    if count[SKIPPED]:
        out.print(f"next: capcheck route {dataset} --aspect ASPECT   (the borderline ones, sorted by eye)")
    if count[STALE] or count[MISSING]:
        raise typer.Exit(EXIT_FINDINGS)


@app.command()
@handled
def undo(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    last: Annotated[bool, typer.Option("--last", help="The newest run that wrote captions (default).")] = False,
    run: Annotated[int | None, typer.Option("--run", help="A run id (see the journal).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be restored.")] = False,
) -> None:
    """Restore the captions a run wrote, byte for byte; refuses if any changed since."""
    from verifier.core.store import Store
    from verifier.human.apply import undo_run

    root = dataset_path(dataset)
    with Store(root) as store:
        done = undo_run(root, store, None if last else run, dry_run=dry_run)
    verb = "would restore" if dry_run else "restored"
    out.print(f"capcheck undo: {verb} {len(done.restored)} caption(s) written by run {done.run_id} ({done.kind})")
    for path in done.restored:
        out.print(f"  {path}", soft_wrap=True)


class Mode(StrEnum):
    link = "link"
    copy = "copy"
    move = "move"


@app.command()
@handled
def route(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    aspect: Annotated[str, typer.Option(help="The aspect a person will sort by, e.g. framing.")],
    report: ReportOpt = None,
    into: Annotated[Path | None, typer.Option(help="Review folder (default DATASET/_review).")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every image in the report, not just the doubtful.")]
    = False,
    mode: Annotated[Mode, typer.Option(help="link (hard links; copies where that fails), copy or move.")]
    = Mode.link,
    policy: PolicyOverride = None,
) -> None:
    """Put the images that need a person into DIR/<aspect>/<value>/, pre-sorted by the model's answer."""
    from verifier.core.store import Store
    from verifier.human.apply import policy_for, report_path
    from verifier.human.route import route as route_images

    root = dataset_path(dataset)
    with Store(root) as store:
        pol = policy_for(store, policy)
        store.start_run("route", json.dumps({"aspect": aspect, "all": everything, "mode": mode.value}))
        done = route_images(root, pol, report_path(root, report), aspect, store, into=into, everything=everything,
                            mode=mode.value)
    per: dict[str, int] = {}
    for _, folder, _ in done.placed:
        per[folder] = per.get(folder, 0) + 1
    out.print(f"capcheck route: {len(done.placed)} image(s) into {done.folder}"
              + (f" ({len(done.already)} already there)" if done.already else "")
              + (f"; {done.copied_instead} copied (hard links not possible)" if done.copied_instead else ""),
              soft_wrap=True)
    for folder, n in sorted(per.items()):
        out.print(f"  {folder}/  {n}")
    if not done.placed and not done.already:
        out.print("nothing needs a person for this aspect (use --all to sort every image)")
        return
    if aspect == "tags":
        out.print(f"next: in {done.folder}, fix the captions of mismatch/ by hand; move an image from "
                  f"<tag>/removed/ to <tag>/kept/ when the tag is right; then\n"
                  f"      capcheck ingest {done.folder.parent} --aspect tags", soft_wrap=True, markup=False)
        return
    out.print(f"next: open {done.folder} and move each image into the folder of what it shows "
              f"(_unsure/ holds what the model refused or failed on); then\n"
              f"      capcheck ingest {done.folder.parent} --aspect {aspect}", soft_wrap=True)


@app.command()
@handled
def ingest(
    path: Annotated[Path, typer.Argument(help="A review tree made by route, or a dataset folder sorted in place.")],
    aspect: Annotated[str, typer.Option(help="The aspect the folders name, e.g. framing.")],
    policy: PolicyOverride = None,
    dataset: Annotated[Path | None, typer.Option(help="The dataset (default: the folder above with .capcheck/).")]
    = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; write nothing.")] = False,
) -> None:
    """Read a folder sort as ground truth: rewrite that one fact in each caption, record the answer."""
    from verifier.core.store import Store
    from verifier.human.apply import policy_for
    from verifier.human.ingest import find_dataset
    from verifier.human.ingest import ingest as ingest_sorted

    dataset_path(path)
    root = dataset_path(dataset) if dataset else find_dataset(path)
    with Store(root) as store:
        pol = policy_for(store, policy)
        if not dry_run:
            store.start_run("ingest", json.dumps({"path": str(Path(path).resolve()), "aspect": aspect}))
        done = ingest_sorted(path, root, pol, aspect, store, dry_run=dry_run)
    for diff in done.diffs:
        _diff(diff)
    verb = "would change" if dry_run else "changed"
    out.print(f"capcheck ingest: {verb} {done.changed_count}, unchanged {done.unchanged}")
    if done.changed:
        table = Table(show_header=False)
        for (said, now), n in done.changed.most_common():
            table.add_row(f"{said} -> {now}", f"× {n}")
        out.print(table)
    problems = 0
    for folder, n in sorted(done.unknown_folders.items()):
        out.print(f"not a value of {aspect}: {folder}/ ({n} image(s) left alone)", soft_wrap=True)
        problems += n
    for image in done.no_caption:
        out.print(f"no caption next to {image} (move its .txt with it)", soft_wrap=True)
    for image in done.not_found:
        out.print(f"not in the dataset: {image}", soft_wrap=True)
    if done.unsure:
        out.print(f"still in _unsure/: {done.unsure} (move them to a value folder to decide)")
    for note in done.notes:
        err.print(f"[yellow]note:[/yellow] {note}", soft_wrap=True)
    if problems or done.no_caption or done.not_found:
        raise typer.Exit(EXIT_FINDINGS)


@app.command()
@handled
def agreement(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    aspect: Annotated[str | None, typer.Option(help="Aspects, comma-separated (default: all a person answered).")]
    = None,
    backend: Annotated[str | None, typer.Option(help="Compare this backend (default: the last verify's).")] = None,
    model: Annotated[str | None, typer.Option(help="Compare this model (default: the last verify's).")] = None,
    policy: PolicyOverride = None,
) -> None:
    """The model's answers against the person's: confusion matrix, accuracy, Cohen's kappa, disagreements."""
    from verifier.core.report import agreement_page, reports_dir
    from verifier.core.store import Store
    from verifier.human.agreement import all_agreements
    from verifier.human.apply import policy_for

    root = dataset_path(dataset)
    with Store(root) as store:
        pol = policy_for(store, policy)
        names = [a.strip() for a in aspect.split(",")] if aspect else None
        found = all_agreements(store, pol, names, backend, model)
    if not found:
        out.print("no human answers to compare with yet: sort with `capcheck route`, then `capcheck ingest`")
        return
    for a in found:
        table = Table(title=f"{a.aspect}: {a.backend}/{a.model} (columns) vs the person (rows)")
        table.add_column("person \\ model")
        for label in a.labels:
            table.add_column(label, justify="right")
        for p in a.labels:
            table.add_row(p, *[str(a.matrix.get((p, m), 0) or "·") for m in a.labels])
        out.print(table)
        out.print(f"{a.aspect}: {a.n} images · accuracy {a.accuracy:.1%} · Cohen's kappa {a.kappa:.3f} · "
                  f"{len(a.disagreements)} disagreement(s)")
        for image, person, machine in a.disagreements:
            out.print(f"  {image}: person {person}, model {machine}", soft_wrap=True)
    folder = reports_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "agreement.json").write_text(json.dumps([a.as_dict() for a in found], indent=1) + "\n")
    (folder / "agreement.html").write_text(agreement_page(found))
    out.print(f"report: {folder / 'agreement.html'}", soft_wrap=True)
