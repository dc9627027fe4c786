"""`capcheck eval`: which epoch? Every saved LoRA's samples verified, the sweet spot named.

Exit codes: 0 the eval completed (samples left out are named); 2 bad input
(a spec, config or option we cannot use, a samples folder with no usable
image, an epoch with no saved LoRA or no samples); 4 the vision model could
not be used; 5 --processes asks for more GPUs than there are; 130
interrupted (every answer so far is kept).

`--processes N` renders the missing samples in N processes, one share each
(this command as `--render-only`, started by torch's elastic launcher like
`capcheck train --processes`), then scores them here. Started by the user's
own launcher (torchrun, accelerate launch), every rank renders its share
and rank 0 alone scores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from captions.errors import CaptionsError
from verifier.cli.verify_options import with_verify_options

if TYPE_CHECKING:
    from verifier.core.options import VerifyOptions
from verifier.cli.console import (
    EXIT_INTERRUPTED,
    EXIT_NO_MODEL,
    PolicyOpt,
    app,
    comma_list,
    err,
    handled,
    launch_ranks,
    out,
    quoted,
)


def epoch_list(value: str | None) -> list[int] | None:
    """`--epochs 5,10,20` as numbers; anything else is one line naming the value."""
    if value is None:
        return None
    items = comma_list(value) or []
    bad = [i for i in items if not i.isdigit() or int(i) < 1]
    if bad or not items:
        raise CaptionsError(None, f"--epochs: '{bad[0] if bad else value}' is not an epoch number (e.g. 5,10,20)")
    return sorted({int(i) for i in items})


@app.command("eval")
@handled
@with_verify_options
def eval_(
    dataset: Annotated[Path | None, typer.Argument(help="The training dataset (its policy: "
                                                        "DATASET/.capcheck/policy.yaml).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", metavar="TRAIN.yaml", help="Render the config's "
                                                "eval: matrix per saved epoch (only what is missing), then score "
                                                "it.")] = None,
    samples: Annotated[Path | None, typer.Option(metavar="DIR", help="Score images made elsewhere (ComfyUI, "
                                                 "A1111/Forge, capcheck), read from their own metadata.")] = None,
    spec: Annotated[Path | None, typer.Option(metavar="EVAL.yaml", help="With --samples: the eval spec (prompts "
                                              "optional; must_show, must_not_show).")] = None,
    epochs: Annotated[str | None, typer.Option(metavar="LIST", help="Only these epochs, e.g. 5,10,20,50,125 "
                                               "(default: every saved one; the baseline always).")] = None,
    must_show: Annotated[str | None, typer.Option(metavar="TAGS", help="Tags every sample must show, "
                                                  "comma-separated (default: the policy's trigger-absorbed "
                                                  "tags).")] = None,
    must_not_show: Annotated[str | None, typer.Option(metavar="TAGS", help="Tags no sample may show "
                                                      "(default: the visual tags of its negative prompt).")] = None,
    policy: PolicyOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print eval.json to stdout (and nothing else).")] = False,
    render_only: Annotated[bool, typer.Option("--render-only", help="With --config: render the missing samples "
                                                                    "and stop (score them later).")] = False,
    processes: Annotated[int, typer.Option("--processes", min=1, metavar="N", help="With --config: render in N "
                                           "processes, one per GPU, a share of the matrix each.")] = 1,
    scoring_next: Annotated[bool, typer.Option("--scoring-next", hidden=True)] = False,  # a rank of --processes N
    options: VerifyOptions = None,  # verify's options (verify_options.verify_params), checked
) -> None:
    """Score every saved epoch's samples with the vision model and recommend one (with the epochs tied with it)."""
    from verifier.cli.console import dataset_policy
    from verifier.cli.progress import EvalProgress
    from verifier.eval.report import format_table, summary_lines, table
    from verifier.eval.sweep import Hooks, sweep_config, sweep_samples, wanted_from

    if (config is None) == (samples is None):
        raise CaptionsError(None, "give --config TRAIN.yaml (render and score) or --samples DIR (score images made "
                                  "elsewhere), one of them")
    if spec is not None and config is not None:
        raise CaptionsError(spec, "--spec goes with --samples; with --config the spec is the config's eval: section")
    if (render_only or processes > 1) and config is None:
        raise CaptionsError(None, f"{'--render-only' if render_only else '--processes'} goes with --config "
                                  "TRAIN.yaml (images from --samples are rendered already)")
    chosen = epoch_list(epochs)
    if processes > 1 or render_only:
        from trainer.dist import world_from_env

        if processes > 1 and world_from_env() == 1:
            _render_in(processes, config, epochs, render_only)
        elif render_only:
            _render_here(config, chosen, say=not scoring_next)
        if render_only:
            return
    shown = EvalProgress()
    hooks = Hooks(shown.plan, shown, lambda m: err.print(m, soft_wrap=True, markup=False))
    try:
        with shown.progress:
            if config is not None:
                from trainer.config import load_config

                cfg = load_config(config)
                pol = dataset_policy(policy, dataset or cfg.path(cfg.data_dir))
                result = sweep_config(cfg, pol, options, chosen, must_show, must_not_show, hooks, shown.render)
                if result is None:  # another rank of the user's launcher: its share rendered, rank 0 scores
                    return
            else:
                from verifier.eval.spec import load_spec

                loaded = load_spec(spec) if spec is not None else None
                wanted = wanted_from(loaded, must_show, must_not_show, spec)
                pol = dataset_policy(policy, dataset)
                result = sweep_samples(samples, pol, wanted, options, chosen,
                                       dict(loaded.prompts) if loaded else None, hooks)
    except KeyboardInterrupt:
        err.print("interrupted: every answer so far is in the store; run the same command to resume")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if as_json:
        typer.echo(json.dumps(result.data, indent=1, ensure_ascii=False))
    else:
        out.print(table(result.found))
        if (formats := format_table(result.found)) is not None:
            out.print(formats)
        for line in summary_lines(result.run, result.found, result.skipped, result.json_path, result.html_path):
            out.print(line, soft_wrap=True, markup=False)
    asked = [s for s in result.run.scored if s.source == "asked"]
    if asked and len(asked) == len(result.run.scored) and all(s.status == "error" for s in asked):
        err.print(f"error: every request failed; the model could not be used ({asked[0].reason})", soft_wrap=True,
                  markup=False)
        raise typer.Exit(EXIT_NO_MODEL)


def _render_in(processes: int, config: Path, epochs: str | None, render_only: bool) -> None:
    """The missing samples rendered by `processes` ranks of `capcheck eval --render-only`; the first failure
    is this command's. Before a scoring run the ranks keep stdout clear (`--json` prints there)."""
    from trainer.config import load_config

    argv = ["eval", "--config", str(config), "--render-only", *(["--epochs", epochs] if epochs else []),
            *([] if render_only else ["--scoring-next"])]
    code = launch_ranks(processes, load_config(config).device, argv,
                        f"interrupted: the samples rendered so far are kept; run the same command to render the rest "
                        f"(capcheck eval --config {quoted(config)} ...)")
    if code:
        raise typer.Exit(code)


def _render_here(config: Path, epochs: list[int] | None, say: bool) -> None:
    """This process's share of what is missing (all of it, alone), and on rank 0 what was done (on stdout
    when `say`, else on stderr)."""
    from trainer.config import load_config
    from trainer.evalrender import render, samples_dir
    from verifier.cli.progress import EvalProgress

    cfg = load_config(config)
    shown = EvalProgress()
    with shown.progress:
        done = render(cfg, epochs, progress=shown.render)
    if not done.main:
        return
    shares = f" on {len(done.per_process)} processes ({' + '.join(map(str, done.per_process))})" \
        if len(done.per_process) > 1 else ""
    line = (f"rendered {done.count} of {len(done.pngs)} samples{shares}, {len(done.pngs) - done.count} there "
            f"already: {samples_dir(cfg)}")
    if say:
        out.print(f"capcheck eval --render-only: {line}", soft_wrap=True, markup=False)
    else:
        err.print(line, soft_wrap=True, markup=False)
