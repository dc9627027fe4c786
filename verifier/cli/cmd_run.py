"""`capcheck run` (the whole loop) and `capcheck demo-server` (the stand-in model).

Exit codes of `run`: 0 done (trained, or ready with --no-train); 1 lint
errors; 2 bad input; 3 images wait for a person (sort them, ingest, run
again); 4 the vision model could not be used; 5 preflight failed (cannot
train here, e.g. no GPU; everything before training is done); 130
interrupted (run again to continue).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from verifier.cli.cmd_verify import (
    ASPECTS,
    AspectsOpt,
    AttemptsOpt,
    BackendName,
    BackendOpt,
    BaseUrlOpt,
    CodexOpt,
    ConcurrencyOpt,
    FormatOpt,
    FreshOpt,
    ImageFormat,
    KeyEnvOpt,
    Live,
    ModelOpt,
    OnlyOpt,
    ProtocolOpt,
    RpmOpt,
    SizeOpt,
    TimeoutOpt,
    verify_options,
)
from verifier.cli.console import EXIT_INTERRUPTED, PolicyOpt, app, dataset_path, err, handled, out

DEMO_BANNER = ("DEMO MODEL: a stand-in that answers from the ground truth in {truth}; it is not a vision model "
               "and sees nothing. Use a real model for a real dataset.")


@contextlib.contextmanager
def _demo(truth: Path | None, root: Path, policy: Path | None, latency: float = 0.0):
    """The loopback demo model for this run, when asked for by name."""
    if truth is None:
        yield None
        return
    from captions.generic import choose_policy
    from verifier.demo.model import DemoModel
    from verifier.demo.server import DemoServer, Faults

    model = DemoModel.load(truth, root, choose_policy(policy, root).policy)
    with DemoServer(model, Faults(latency=latency)) as server:
        err.print(DEMO_BANNER.format(truth=truth), soft_wrap=True)
        yield server.url


@app.command()
@handled
def run(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder: images with JSON sidecars (and/or captions).")],
    policy: PolicyOpt = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Training config YAML.")] = None,
    no_train: Annotated[bool, typer.Option("--no-train", help="Stop when the captions are ready.")] = False,
    apply_aspects: Annotated[str | None, typer.Option(help="Apply fixes only for these aspects.")] = None,
    demo_model: Annotated[Path | None, typer.Option(help="Verify with the demo stand-in answering from this "
                                                         "truth.json (the bundled example), not a real model.")]
    = None,
    model: ModelOpt = "",
    backend: BackendOpt = BackendName.openai,
    base_url: BaseUrlOpt = None,
    api_key_env: KeyEnvOpt = "OPENAI_API_KEY",
    protocol: ProtocolOpt = None,
    aspects: AspectsOpt = ASPECTS,
    concurrency: ConcurrencyOpt = 6,
    rpm: RpmOpt = None,
    timeout: TimeoutOpt = 120.0,
    max_attempts: AttemptsOpt = 4,
    image_size: SizeOpt = 1024,
    image_format: FormatOpt = ImageFormat.jpeg,
    fresh: FreshOpt = False,
    only: OnlyOpt = None,
    codex_bin: CodexOpt = "codex",
) -> None:
    """Sidecars to checkpoints: build, lint, verify, apply, route what needs a person, then train."""
    from verifier.cli.cmd_train import train_progress
    from verifier.pipeline import Hooks, Pipeline

    root = dataset_path(dataset)
    live = Live()
    progress, step = train_progress()
    hooks = Hooks(stage=lambda s: out.print(f"{s.name}: {s.summary}"), verify_plan=live.plan, verify_result=live,
                  train_step=step, event=lambda m: err.print(m, soft_wrap=True))
    with _demo(demo_model, root, policy) as demo_url:
        options = verify_options(model or ("capcheck-demo" if demo_url else ""), backend, demo_url or base_url,
                                 api_key_env, protocol, aspects, concurrency, rpm, timeout, max_attempts, image_size,
                                 image_format, fresh, only, codex_bin)
        pipeline = Pipeline(root, policy, options, config=config, no_train=no_train, hooks=hooks,
                            apply_aspects=[a.strip() for a in apply_aspects.split(",")] if apply_aspects else None)
        try:
            with live.progress, progress:
                outcome = pipeline.run()
        except KeyboardInterrupt:
            err.print("interrupted: everything done so far is kept; run the same command again to continue")
            raise typer.Exit(EXIT_INTERRUPTED) from None
    table = Table(title=f"capcheck run: {root}")
    for column in ("stage", "result", "outputs"):
        table.add_column(column)
    for stage in outcome.stages:
        table.add_row(stage.name, stage.summary, stage.outputs)
    out.print(table)
    for message in outcome.messages:
        out.print(message)
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
    out.print(f"base URL: {server.url}   (capcheck verify ... --model capcheck-demo --base-url {server.url})")
    out.print("Ctrl-C stops it")
    try:
        server.start()
        server._thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
