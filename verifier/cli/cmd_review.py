"""The human loop: `route`, `ingest`, `agreement`, `review` (`apply` and `undo` are `cmd_apply`).

Exit codes: 0 done; 1 done, but something needs attention (images in
folders that are not values, sorted images without a caption); 2 bad input,
or a refusal that left everything untouched (an image sorted into two values).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from captions.dataset import caption_path
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


class Mode(StrEnum):
    link = "link"
    copy = "copy"
    move = "move"


@app.command()
@handled
def route(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    aspects: AspectsOpt = None,
    aspect: OldAspectOpt = None,
    report: ReportOpt = None,
    into: Annotated[Path | None, typer.Option(help="Review folder (default DATASET/_review).")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every image in the report, not just the doubtful.")]
    = False,
    mode: Annotated[Mode, typer.Option(help="link (hard links; copies where that fails), copy or move.")]
    = Mode.link,
    policy: PolicyOpt = None,
    losses: Annotated[bool, typer.Option("--losses", help="The images the trained LoRA fit worst (losses.json) "
                                                          "into DIR/loss/, with their captions listed.")] = False,
) -> None:
    """Put the images that need a person into DIR/<aspect>/<value>/, pre-sorted by the model's answer."""
    from verifier.human.apply import report_path
    from verifier.human.route import route as route_images

    root = dataset_path(dataset)
    if losses:
        _route_losses(root, into, mode.value)
        return
    with writing(root, "route") as store:
        pol = dataset_policy(policy, root, store)
        names = asked_aspects(aspects, aspect, pol)
        if not names:
            raise CaptionsError(None, "give --aspects: the aspect(s) a person will sort by, e.g. --aspects framing")
        store.start_run("route", json.dumps({"aspects": names, "all": everything, "mode": mode.value}))
        routed = [route_images(root, pol, report_path(root, report), name, store, into=into, everything=everything,
                               mode=mode.value) for name in names]
    waiting = []
    for name, done in zip(names, routed, strict=True):
        per: dict[str, int] = {}
        for _, folder, _ in done.placed:
            per[folder] = per.get(folder, 0) + 1
        out.print(f"capcheck route: {len(done.placed)} image(s) into {done.folder}"
                  + (f" ({len(done.already)} already there)" if done.already else "")
                  + (f"; {done.copied_instead} copied (hard links not possible)" if done.copied_instead else ""),
                  soft_wrap=True)
        for folder, n in sorted(per.items()):
            out.print(f"  {folder}/  {n}")
        if done.placed or done.already:
            waiting.append(name)
        else:
            out.print(f"nothing needs a person for {name} (use --all to sort every image)")
    if not waiting:
        return
    folders = sorted({str(done.folder.parent) for done in routed})
    if "tags" in waiting:  # the tags audit's tree: mismatch/ and <tag>/kept|removed/, not value folders
        done = routed[names.index("tags")]
        mismatched = sorted({image for image, label, _ in done.placed if label == "mismatch"})
        if mismatched:  # only images are in mismatch/: name the caption files to edit
            files = [caption_path(root / image).relative_to(root).as_posix() for image in mismatched]
            out.print("tags: the images in tags/mismatch/ carry a caption that may belong to another image; edit "
                      f"these captions in the dataset by hand: {', '.join(files)}", soft_wrap=True, markup=False)
        out.print("tags: move an image from tags/<tag>/removed/ to tags/<tag>/kept/ when the tag is right",
                  soft_wrap=True, markup=False)
    folders = sorted({str(done.folder.parent) for done in routed})
    out.print(f"next: open {', '.join(folders)} and move each image into the folder of what it shows "
              f"(_unsure/ holds what the model refused or failed on); then run:", soft_wrap=True)
    for folder in folders:
        out.print(f"capcheck ingest {quoted(folder)} --aspects {','.join(waiting)}", soft_wrap=True)
    out.print(f"or sort them in the browser, which runs ingest for you: capcheck review {quoted(dataset)}",
              soft_wrap=True)


def _route_losses(root: Path, into: Path | None, mode: str) -> None:
    from verifier.human.route_losses import route_losses

    done = route_losses(root, into, mode)
    out.print(f"capcheck route --losses: {len(done.placed)} worst fit(s) into {done.folder}"
              + (f" ({len(done.already)} already there)" if done.already else "")
              + (f"; {len(done.missing)} no longer in the dataset" if done.missing else ""), soft_wrap=True,
              markup=False)
    for entry, _ in done.placed:
        out.print(f"  {entry['image']}  ratio {entry['ratio']:.3f}", soft_wrap=True, markup=False)
    if done.placed or done.already:
        review = f" --into {quoted(into)}" if into else ""
        out.print(f"their captions and numbers: {done.folder / 'losses.txt'}; fix a caption that lies, or say it is "
                  f"right, in the browser: capcheck review {quoted(root)}{review}; or ask the model again: "
                  f"capcheck verify {quoted(root)} --only-losses", soft_wrap=True, markup=False)
    else:
        out.print("no image is a worst fit by losses.json's rule", markup=False)


@app.command()
@handled
def ingest(
    path: Annotated[Path, typer.Argument(metavar="FOLDER", help="A review tree made by route, or a dataset folder "
                                                                "sorted in place.")],
    aspects: AspectsOpt = None,
    aspect: OldAspectOpt = None,
    policy: PolicyOpt = None,
    dataset: Annotated[Path | None, typer.Option(help="The dataset (default: the folder above with .capcheck/).")]
    = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; write nothing.")] = False,
) -> None:
    """Read a folder sort as ground truth: rewrite that one fact in each caption, record the answer."""
    from verifier.core.report import refresh_latest_page
    from verifier.human.agreement import all_agreements
    from verifier.human.ingest import find_dataset
    from verifier.human.ingest import ingest as ingest_sorted

    dataset_path(path)
    root = dataset_path(dataset) if dataset else find_dataset(path)
    with writing(root, "ingest") as store:
        pol = dataset_policy(policy, root, store)
        names = asked_aspects(aspects, aspect, pol)
        if not names:
            raise CaptionsError(None, "give --aspects: the aspect(s) the folders name, e.g. --aspects framing")
        if not dry_run:
            store.start_run("ingest", json.dumps({"path": str(Path(path).resolve()), "aspects": names}))
        problems = False
        for name in names:
            # a review tree holds one folder per aspect: read each aspect's own
            where = path / name if len(names) > 1 and (path / name).is_dir() else path
            done = ingest_sorted(where, root, pol, name, store, dry_run=dry_run)
            problems |= _report_ingest(done, name, dry_run, several=len(names) > 1)
        if not dry_run:  # the report shows the person's answers from now on
            refresh_latest_page(root, pol, all_agreements(store, pol))
    if problems:
        raise typer.Exit(EXIT_FINDINGS)


def _report_ingest(done, aspect: str, dry_run: bool, several: bool) -> bool:
    """Print what one aspect's ingest did; True when something needs attention."""
    for diff in done.diffs:
        print_diff(diff)
    verb = "would change" if dry_run else "changed"
    out.print(f"capcheck ingest{f' ({aspect})' if several else ''}: {verb} {done.changed_count}, "
              f"unchanged {done.unchanged}")
    if done.changed:
        from rich.table import Table

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
        err.print(labelled("note:", "yellow", note), soft_wrap=True)
    return bool(problems or done.no_caption or done.not_found)


@app.command()
@handled
def agreement(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    aspects: Annotated[str | None, typer.Option("--aspects", metavar="LIST", help="Aspects, comma-separated "
                                                "(default: all a person answered).")] = None,
    aspect: OldAspectOpt = None,
    backend: Annotated[str | None, typer.Option(help="Compare this backend (default: the last verify's).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Compare this model (default: the last "
                                                                    "verify's).")] = None,
    policy: PolicyOpt = None,
) -> None:
    """The model's answers against the person's: confusion matrix, accuracy, Cohen's kappa, disagreements."""
    from verifier.core.report import write_agreement
    from verifier.core.store import Store
    from verifier.human.agreement import all_agreements

    root = dataset_path(dataset)
    with Store(root) as store:
        pol = dataset_policy(policy, root, store)
        names = asked_aspects(aspects, aspect, pol)
        found = all_agreements(store, pol, names, backend, model)
    if not found:
        out.print("no human answers to compare with yet: sort with `capcheck route`, then `capcheck ingest`")
        return
    from rich.table import Table

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
        for d in a.disagreements:
            out.print(f"  {d.image}: person {d.person}, model {d.model}", soft_wrap=True)
    out.print(f"report: {write_agreement(root, found)}", soft_wrap=True)


@app.command()
@handled
def review(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (its _review/ folder, made by route).")],
    into: Annotated[Path | None, typer.Option(help="The review folder route made (default DATASET/_review).")]
    = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (default: any free one).")] = 0,
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open the page in the default browser.")]
    = True,
    policy: PolicyOpt = None,
) -> None:
    """Sort the images waiting for a person in the browser: each click moves the file, as in Finder; then ingest."""
    import webbrowser

    from verifier.core.store import Store
    from verifier.human.review import ReviewTree
    from verifier.human.review_page import ReviewServer, waiting

    root = dataset_path(dataset)
    with Store(root) as store:
        pol = dataset_policy(policy, root, store)
    tree = ReviewTree(root, pol, into)
    server = ReviewServer(tree, port)
    out.print(f"capcheck review: {waiting(tree.cards())} image(s) waiting in {tree.review}\n"
              f"  open {server.url}   (Ctrl-C to stop)", soft_wrap=True)
    out.file.flush()  # the address must reach a pipe (a script waiting for it) before we block
    if open_browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        out.print("capcheck review: stopped; the folders keep every move (run ingest from the page or the CLI)")
    finally:
        server.server_close()
