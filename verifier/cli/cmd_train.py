"""`capcheck plan`, `capcheck preflight`, `capcheck train`.

The trainer (torch, diffusers, peft) is imported only inside these commands.
Exit codes: 0 done; 1 the gate refused (captions not verified) or a
preflight check failed; 2 bad input; 5 --processes asks for more GPUs than
there are; 130 interrupted (state saved: run again with --resume).

With several processes (`--processes N`, or the user's own torchrun /
accelerate launch) every process runs this command; only rank 0 prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from captions.errors import CaptionsError
from verifier.cli.console import (
    EXIT_FINDINGS,
    EXIT_INTERRUPTED,
    app,
    dataset_path,
    err,
    handled,
    launch_ranks,
    out,
    quoted,
)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Training config YAML (AnimaLoraToolkit keys).")]


@app.command()
@handled
def plan(
    images: Annotated[int | None, typer.Option(help="Images in the dataset.")] = None,
    repeats: Annotated[int | None, typer.Option(help="Repeats per epoch.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs.")] = None,
    batch: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Gradient accumulation.")] = None,
    its: Annotated[float | None, typer.Option(help="Measured optimizer steps per second.")] = None,
    usd_per_hour: Annotated[float | None, typer.Option(help="GPU price per hour.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Take repeats/epochs/batch from it.")] = None,
    processes: Annotated[int, typer.Option("--processes", min=1, metavar="N",
                                           help="GPUs the run will use (data parallel; --its is one GPU's).")] = 1,
    dataset: Annotated[Path | None, typer.Argument(help="Count the images here (kohya N_name folders: N repeats "
                                                        "each).")] = None,
) -> None:
    """Steps, exposures per image, hours and cost of a run, with the articles' guidance."""
    from captions.dataset import folder_repeats, iter_images
    from trainer.plan import Plan, guidance

    folders: dict[str, tuple[int, int]] = {}  # kohya N_name folder -> (images, N)
    folder = dataset
    if config is not None:
        from trainer.config import load_config

        cfg = load_config(config)
        repeats, epochs = repeats or cfg.repeats, epochs or cfg.epochs
        batch, grad_accum = batch or cfg.batch_size, grad_accum or cfg.grad_accum
        folder = dataset or (cfg.path(cfg.data_dir) if cfg.data_dir else None)
    if images is None and folder is not None:
        found = [item.image for item in iter_images(dataset_path(folder))]  # planning comes before captions
        images = len(found)
        for image in found:
            if (n := folder_repeats(image)) is not None:
                count, _ = folders.get(image.parent.name, (0, n))
                folders[image.parent.name] = (count + 1, n)
    # Images in kohya folders take their folder's N; the guidance goes by the largest N.
    repeats = repeats or (max(r for _, r in folders.values()) if folders else None)
    missing = [n for n, v in (("--images", images), ("--repeats", repeats), ("--epochs", epochs)) if not v]
    if missing:
        raise typer.BadParameter(f"give {', '.join(missing)} (or --config and a dataset)")
    # kohya N_name folders repeat their images N times per epoch, whatever --repeats says.
    in_folders = sum(n for n, _ in folders.values())
    seen = sum(n * r for n, r in folders.values()) + (images - in_folders) * repeats if folders else None
    for name, (n, r) in sorted(folders.items()):
        out.print(f"{name}/: {n} images x {r} repeats (kohya folder)")
    p = Plan(images, repeats, epochs, batch or 1, grad_accum or 1, its, usd_per_hour, seen)
    what = f"{p.seen} images seen per epoch" if p.seen is not None else f"{p.images} images x {p.repeats} repeats"
    out.print(f"{what} / batch {p.batch}"
              + (f" / grad accum {p.grad_accum}" if p.grad_accum > 1 else "")
              + f" = {p.steps_per_epoch:,} steps per epoch; x {p.epochs} epochs = {p.steps:,} steps")
    if p.hours is not None:
        took = f"{p.hours * 60:.0f} min" if p.hours < 1 else f"{p.hours:.1f} h (≈{round(p.hours)} h)"
        out.print(f"at {p.its:g} it/s ({p.images_per_second:.2f} images/s): {took}"
                  + (f", ${p.cost:.2f} at ${p.usd_per_hour:g}/h" if p.cost is not None else ""))
        if processes > 1:
            from trainer.plan import SCALING, hours_on, speedup

            hours = hours_on(p, processes)
            cost = f", ${hours * processes * p.usd_per_hour:.2f} for {processes} GPUs" if p.usd_per_hour else ""
            took = f"{hours * 60:.0f} min" if hours < 1 else f"{hours:.1f} h"
            out.print(f"on {processes} GPUs: {took}{cost} (x{speedup(processes):.1f}; the scaling, {SCALING:g} per "
                      f"GPU, is an estimate until measured: the speed in state.json of a short run with --processes "
                      f"{processes}, as --its with --processes 1)")
    for line in guidance(p.exposures):
        out.print(line)
    if config is not None and cfg.eval is not None:
        _plan_eval(cfg, p, resolution=cfg.resolution)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _plan_eval(cfg, p, resolution: int) -> None:
    """The eval section's cost: samples, vision-model requests, seconds per sample (an estimate)."""
    from trainer.plan import eval_cost

    cost, notes = eval_cost(cfg, p.epochs)
    for note in notes:
        out.print(f"note: {note}", markup=False)
    out.print(f"eval: {_count(cost.formats, 'prompt')} x {_count(cost.seeds, 'seed')} x "
              f"({_count(cost.strengths, 'strength')} x {_count(cost.epochs, 'epoch')} + the baseline) = "
              f"{cost.samples} samples; {cost.requests} vision-model requests (one per sample)")
    each = cost.seconds_per_sample(p.its, p.batch, p.grad_accum, resolution)
    if each is None:
        out.print("eval time: give --its (measured training steps per second) for an estimate")
        return
    total = each * cost.samples
    out.print(f"eval: about {each:.2f} s per sample, {total / 60:.1f} min for {cost.samples} (an estimate from "
              f"--its: {cost.steps} steps x {cost.passes} DiT passes at {cost.pixels:,} pixels per sample, "
              f"a training step as 3 passes per image at {resolution}x{resolution})")


@app.command()
@handled
def preflight(config: ConfigOpt,
              processes: Annotated[int, typer.Option("--processes", min=1, metavar="N",
                                                     help="Check every GPU of a --processes N run.")] = 1) -> None:
    """Check the stack, the GPU and every model file before a long load."""
    from trainer.config import load_config
    from trainer.errors import PreflightFailed
    from trainer.preflight import run_preflight

    cfg = load_config(config)
    for note in cfg.ignored():
        err.print(f"note: {config}: ignored {note}", soft_wrap=True)
    try:
        run_preflight(cfg, on_check=lambda c: out.print(f"{'✓' if c.ok else '✗'} {c.name}: {c.detail}"),
                      processes=processes)
    except PreflightFailed as exc:
        out.print(f"  fix: {exc.fix}")
        raise typer.Exit(EXIT_FINDINGS) from None
    out.print("preflight: all checks passed")


@app.command()
@handled
def train(
    dataset: Annotated[Path, typer.Argument(help="The dataset (images with their captions).")],
    config: ConfigOpt,
    allow_unverified: Annotated[bool, typer.Option("--allow-unverified", help="Train even on captions nobody "
                                                                               "verified.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last saved state.")] = False,
    processes: Annotated[int, typer.Option("--processes", min=1, metavar="N",
                                           help="Data parallel: N local processes, one per GPU (on device: cpu, "
                                                "gloo). batch_size stays the global batch.")] = 1,
    losses: Annotated[bool, typer.Option("--losses", help="No training: score a finished run's images with its "
                                                          "LoRA and without (losses.json).")] = False,
) -> None:
    """Train an Anima LoRA on the verified captions; ComfyUI-loadable checkpoints per epoch."""
    from trainer.config import load_config
    from trainer.dist import world_from_env

    root = dataset_path(dataset)
    cfg = load_config(config, data_dir=str(root.resolve()))
    if processes > 1 and world_from_env() == 1:  # start the ranks; each runs this command without --processes
        argv = ["train", str(dataset), "--config", str(config), *(["--allow-unverified"] if allow_unverified else []),
                *(["--resume"] if resume else []), *(["--losses"] if losses else [])]
        # what resumes is the last state saved: the launcher stops the ranks before rank 0 could save
        raise typer.Exit(launch_ranks(processes, cfg.device, argv, "interrupted: every process stopped; run the same "
                                      "command with --resume to continue from the last saved state "
                                      "(save_state_every)"))
    _train(root, config, cfg, allow_unverified, resume, losses)


def _train(root: Path, config: Path, cfg, allow_unverified: bool, resume: bool, losses: bool) -> None:
    """The gate, then the run (in each process of a data-parallel run; rank 0 prints)."""
    from trainer.dist import main_from_env
    from trainer.loop import Trainer
    from verifier.cli.progress import train_progress
    from verifier.core.store import Store
    from verifier.human import gate
    from verifier.human.apply import policy_for
    from verifier.human.review_loss import undecided

    if not main_from_env():  # the same checks, silently: rank 0 says it once
        out.quiet = err.quiet = True
    for note in cfg.ignored():
        err.print(f"note: {config}: ignored {note}", soft_wrap=True)
    with Store(root) as store:
        try:
            pol = policy_for(store, None)
        except CaptionsError:  # never verified (no policy on record), or that policy file is gone
            pol = None
        checked = gate.check(root, store, pol)
        waiting = undecided(root, store)
    if waiting:  # a hint from the last run's loss, not a failed check: said, not waited for
        err.print(f"note: {len(waiting)} worst fit(s) of the last run wait in _review/loss/ for a person's word on "
                  f"the caption (training does not wait for them): capcheck review {quoted(root)}", soft_wrap=True,
                  markup=False)
    if not checked.passed and not checked.pending:
        out.print(f"not training: no captions in {root} (no <image>.txt next to any image); make them first: "
                  f"capcheck run {quoted(root)} --policy POLICY.yaml ... (or capcheck build)", soft_wrap=True)
        raise typer.Exit(EXIT_FINDINGS)
    if not checked.open and not allow_unverified:
        out.print(f"not training: {len(checked.pending)} of {len(checked.pending) + len(checked.passed)} captions "
                  "are not verified, fixed or human-ingested:")
        for image, why in list(checked.pending.items())[:30]:
            out.print(f"  {image}: {why}")
        if len(checked.pending) > 30:
            out.print(f"  … and {len(checked.pending) - 30} more")
        out.print("verify them (capcheck verify / apply / route / ingest), or pass --allow-unverified")
        raise typer.Exit(EXIT_FINDINGS)
    metadata = checked.metadata(pol)
    progress, step = train_progress()
    with progress:
        result = Trainer(cfg, root, metadata, on_step=step, on_event=lambda m: err.print(m, soft_wrap=True)).run(
            resume=resume, losses_only=losses)
    if result.interrupted:
        err.print(f"interrupted at step {result.steps}: state saved; run the same command with --resume")
        raise typer.Exit(EXIT_INTERRUPTED)
    processes = f" on {result.processes} processes" if result.processes > 1 else ""
    resumed = f" (resumed at step {result.resumed_from})" if result.resumed_from is not None else ""
    last = result.losses[-1] if result.losses else float("nan")
    out.print(f"capcheck train: {result.steps}/{result.total_steps} steps{processes}{resumed}, last loss {last:.4f}")
    for path in result.loras:
        out.print(f"  lora: {path}", soft_wrap=True)
    for path in result.samples:
        out.print(f"  sample: {path}", soft_wrap=True)
    if result.loss_report is not None and result.main:
        _worst_fits(root, result.loss_report, cfg.path(cfg.output_dir))


def _worst_fits(root: Path, data: dict, output: Path | None) -> None:
    """The few images the LoRA fit worst, and where the full list is (kept with the dataset too)."""
    from verifier.human.route_losses import keep

    keep(root, data)
    limits = data["quartiles"]
    rule = f"worst fits: ratio above {limits['fence']:.3f} (Q3 + 1.5 IQR)" if limits else "no fence under 4 images"
    out.print(f"losses: {data['images_scored']} images scored with the LoRA and without; {data['worst']} worst "
              f"fit(s) ({rule}); {output / 'losses.json' if output else 'losses.json'}", soft_wrap=True,
              markup=False)
    for entry in data["images"][:5]:
        out.print(f"  {'!' if entry['worst'] else ' '} {entry['image']}  ratio {entry['ratio']:.3f} "
                  f"({entry['loss_lora']:.4f} with the LoRA, {entry['loss_base']:.4f} without)", soft_wrap=True,
                  markup=False)
    if data["worst"]:
        out.print(f"look at them: capcheck route {quoted(root)} --losses; ask again: capcheck verify "
                  f"{quoted(root)} --only-losses", soft_wrap=True, markup=False)
