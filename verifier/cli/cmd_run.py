"""`capcheck run` (the whole loop) and `capcheck demo-server` (the stand-in model).

Exit codes of `run`: 0 done (trained, or ready with --no-train), or
stopped where images wait for a person (the last lines say which, and what
to run next; `--fail-on-review` makes that 3, for scripts); 1 files to fix
first (lint errors, an image that cannot be read, a read-only caption that
needs a fix); 2 bad input (a policy, config or option we cannot use); 4 the
vision model could not be used; 5 preflight failed (cannot train here, e.g.
no GPU; everything before training is done); 130 interrupted (run again to
continue).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from captions.errors import CaptionsError
from verifier.cli.console import EXIT_INTERRUPTED, PolicyOpt, app, comma_list, dataset_path, err, handled, out
from verifier.cli.verify_options import with_verify_options

if TYPE_CHECKING:
    from verifier.core.options import VerifyOptions

DEMO_BANNER = ("DEMO MODEL: a stand-in that answers from the ground truth in {truth}; it is not a vision model "
               "and sees nothing. Use a real model for a real dataset.")


@contextlib.contextmanager
def _demo(truth: Path | None, root: Path, policy: Path | None, latency: float = 0.0):
    """The loopback demo model for this run, when asked for by name."""
    if truth is None:
        yield None
        return
    from verifier.core.policy_rule import choose
    from verifier.demo.model import DemoModel
    from verifier.demo.server import DemoServer, Faults

    model = DemoModel.load(truth, root, choose(policy, root).policy)
    with DemoServer(model, Faults(latency=latency)) as server:
        err.print(DEMO_BANNER.format(truth=truth), soft_wrap=True)
        yield server.url


OUTPUT_LABELS = {"verify": "report", "review": "waiting", "train": "lora", "eval": "report"}


class _Displays:
    """The live progress bars of a run, on stderr: at most one at a time (the
    train bar only once training starts), and stopped before any line is
    printed, so a stage line is never drawn into a bar."""

    def __init__(self) -> None:
        from verifier.cli.progress import Live, train_progress

        self.verify = Live()
        self.train, self._step = train_progress()

    def plan(self, total: int) -> None:
        self.verify.plan(total)
        self.verify.progress.start()

    def step(self, s) -> None:
        self.train.start()  # idempotent: the first step shows the bar
        self._step(s)

    def stop(self) -> None:
        self.verify.progress.stop()
        self.train.stop()

    def stage(self, s) -> None:
        self.stop()
        out.print(f"{s.name}: {s.summary}", soft_wrap=True)
        if s.outputs:  # printed whole, however narrow the terminal or the pipe
            out.print(f"  {OUTPUT_LABELS.get(s.name, 'output')}: {s.outputs}", soft_wrap=True)


@app.command()
@handled
@with_verify_options
def run(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder: images with JSON sidecars (and/or captions).")],
    policy: PolicyOpt = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", metavar="TRAIN.yaml",
                                                help="Training config YAML.")] = None,
    no_train: Annotated[bool, typer.Option("--no-train", help="Stop when the captions are ready.")] = False,
    demo_model: Annotated[Path | None, typer.Option(metavar="TRUTH.json", help="Verify with the demo stand-in "
                                                    "answering from this truth.json (the bundled example), not a "
                                                    "real model.")] = None,
    fail_on_review: Annotated[bool, typer.Option("--fail-on-review", help="Exit 3 (not 0) when images wait for a "
                                                                           "person: for scripts.")] = False,
    apply_aspects: Annotated[str | None, typer.Option(hidden=True)] = None,  # old: apply only these
    options: VerifyOptions = None,  # every option of `capcheck verify` (verify_options.verify_params), checked
) -> None:
    """The whole loop: build, lint, verify, apply, route what needs a person, then train. Safe to run again."""
    from verifier.pipeline import REVIEW, Hooks, Pipeline

    root = dataset_path(dataset)
    if demo_model is None and options.backend == "openai" and not options.model:
        # say it before any work: building and linting first would look like progress
        raise CaptionsError(None, "give the vision model: --model NAME (with --base-url for a local server), "
                                  "--backend codex, or --demo-model examples/keichan/truth.json for the bundled "
                                  "example's stand-in")
    displays = _Displays()
    hooks = Hooks(stage=displays.stage, verify_plan=displays.plan, verify_result=displays.verify,
                  train_step=displays.step, event=lambda m: err.print(m, soft_wrap=True))
    with _demo(demo_model, root, policy) as demo_url:
        if demo_url:  # the stand-in answers on loopback, whatever model or server was named
            options.model, options.base_url = options.model or "capcheck-demo", demo_url
        pipeline = Pipeline(root, policy, options, config=config, no_train=no_train, hooks=hooks,
                            apply_aspects=comma_list(apply_aspects))
        try:
            outcome = pipeline.run()
        except KeyboardInterrupt:
            displays.stop()
            err.print("interrupted: everything done so far is kept; run the same command again to continue")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        finally:
            displays.stop()
    for finding in outcome.findings:
        out.print(finding, soft_wrap=True)
    for message in outcome.messages:
        out.print(message, soft_wrap=True)
    if outcome.code == REVIEW and not fail_on_review:
        return  # waiting for a person is where this run is meant to stop, not a failure
    if outcome.code:
        raise typer.Exit(outcome.code)


@app.command("demo-server")
@handled
def demo_server(
    truth: Annotated[Path, typer.Option(help="Ground truth: {image path: {aspect: value}} (e.g. "
                                             "examples/keichan/truth.json).")],
    root: Annotated[Path | None, typer.Option(help="The images the truth's paths are relative to.")] = None,
    policy: Annotated[Path | None, typer.Option("--policy", "-p", help="Caption policy (for fixline).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8321,
    latency: Annotated[float, typer.Option(help="Seconds before each answer.")] = 0.0,
) -> None:
    """Serve the demo stand-in as an OpenAI-compatible API on loopback (not a vision model)."""
    from captions.policy import load_policy
    from verifier.demo.model import DemoModel
    from verifier.demo.server import DemoServer, Faults

    model = DemoModel.load(truth, root or truth.parent, load_policy(policy) if policy else None)
    server = DemoServer(model, Faults(latency=latency), host, port)
    out.print(DEMO_BANNER.format(truth=truth))
    for key, why in model.unreadable.items():
        err.print(f"note: {key}: cannot read the image ({why}); the demo model will not recognise it", soft_wrap=True)
    out.print(f"base URL: {server.url}   (capcheck verify ... --model capcheck-demo --base-url {server.url})")
    out.print("Ctrl-C stops it")
    try:
        server.start()
        server._thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
