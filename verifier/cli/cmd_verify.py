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

import asyncio
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from verifier.cli.console import (
    EXIT_FINDINGS,
    EXIT_INTERRUPTED,
    EXIT_NO_MODEL,
    OldAspectOpt,
    PolicyOpt,
    app,
    comma_list,
    dataset_path,
    dataset_policy,
    err,
    handled,
    out,
    writing,
)
from verifier.core.prompting import DEFAULT_ASPECTS
from verifier.core.tags import MISMATCH_SHARE, PROBES
from verifier.core.verdict import ERROR, FIX, OK, REFUSED, STATUSES


class BackendName(StrEnum):
    openai = "openai"
    batch = "batch"
    codex = "codex"


class BatchRetry(StrEnum):
    live = "live"
    batch = "batch"
    error = "error"


class ProtocolName(StrEnum):
    observe = "observe"
    fixline = "fixline"


class ImageFormat(StrEnum):
    jpeg = "jpeg"
    png = "png"


class _Rate(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:.1f}/s" if task.speed else "–/s", style="progress.data.speed")


class Live:
    """The progress bar: done/total, ok/fix/refused/error, rate, ETA."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(STATUSES, 0)
        self.progress = Progress(TextColumn("verify"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[tally]}"), _Rate(), TimeRemainingColumn(),
                                 console=err, transient=False, disable=not err.is_terminal)
        self.task = self.progress.add_task("verify", total=None, tally="")

    def plan(self, total: int) -> None:
        self.progress.update(self.task, total=total)

    def __call__(self, result) -> None:
        self.counts[result.verdict.status] += 1
        tally = (f"[green]ok {self.counts[OK]}[/] [yellow]fix {self.counts[FIX]}[/] "
                 f"[magenta]refused {self.counts[REFUSED]}[/] [red]error {self.counts[ERROR]}[/]")
        self.progress.update(self.task, advance=1, tally=tally)


# The verify options, shared by `verify` and `run`.
ASPECTS = ",".join(DEFAULT_ASPECTS)
ModelOpt = Annotated[str, typer.Option("--model", "-m", metavar="NAME", help="Model name (openai backend: "
                                                                             "required).")]
BackendOpt = Annotated[BackendName, typer.Option(help="openai: any OpenAI-compatible API; batch: its batch jobs "
                                                      "(/v1/files + /v1/batches); codex: the Codex CLI.")]
BaseUrlOpt = Annotated[list[str] | None, typer.Option(metavar="URL", help="API base URL (vLLM, Ollama, LM Studio, "
                                                                          "OpenRouter, …); repeat it for several "
                                                                          "servers of one model.")]
KeyEnvOpt = Annotated[str, typer.Option(metavar="VAR", help="Environment variable holding the API key.")]
ProtocolOpt = Annotated[ProtocolName | None, typer.Option(help="observe (JSON; openai default) or fixline "
                                                               "(one line; codex default).")]
AspectsOpt = Annotated[str | None, typer.Option("--aspects", metavar="LIST", help=f"Aspects to check, "
                                                f"comma-separated (default: {ASPECTS}).")]
ConcurrencyOpt = Annotated[int, typer.Option(help="Most requests in flight at once.")]
RpmOpt = Annotated[float | None, typer.Option(help="At most this many requests per minute.")]
TimeoutOpt = Annotated[float, typer.Option(metavar="SECONDS", help="Seconds before a request counts as failed.")]
AttemptsOpt = Annotated[int, typer.Option(help="Attempts per image (429, 5xx, timeouts are retried).")]
SizeOpt = Annotated[int, typer.Option(metavar="PIXELS", help="Long side sent, in pixels (never cropped).")]
FormatOpt = Annotated[ImageFormat, typer.Option(help="jpeg or png.")]
FreshOpt = Annotated[bool, typer.Option("--fresh", help="Ask again even what the store has answered.")]
OnlyOpt = Annotated[list[str] | None, typer.Option(metavar="PATTERN", help="Only images whose path or name matches "
                                                                           "(repeatable).")]
CodexOpt = Annotated[str, typer.Option(metavar="PATH", help="The codex executable.")]
BatchFileOpt = Annotated[Path | None, typer.Option(metavar="OUT.jsonl", help="Write the requests as batch JSONL "
                                                                             "here and stop (for vllm run-batch -i).")]
BatchResultsOpt = Annotated[Path | None, typer.Option(metavar="RESULTS.jsonl", help="Read the answers from this "
                                                                                    "batch results JSONL (vllm "
                                                                                    "run-batch -o).")]
NoWaitOpt = Annotated[bool, typer.Option("--no-wait", help="batch: submit (and collect what is done), then exit.")]
PollOpt = Annotated[float, typer.Option(metavar="SECONDS", help="batch: seconds between status checks.")]
BatchRetryOpt = Annotated[BatchRetry, typer.Option(help="batch: requests that failed or expired are asked live, "
                                                        "in a new batch, or stored as errors.")]
CaptionExtOpt = Annotated[str | None, typer.Option(metavar="EXT", help="Caption file extension (default: .txt, "
                                                                     "or .caption where only that exists).")]


def verify_options(model: str, backend: BackendName, base_url: str | list[str] | None, api_key_env: str,
                   protocol: ProtocolName | None, aspects: list[str] | None, concurrency: int, rpm: float | None,
                   timeout: float, max_attempts: int, image_size: int, image_format: ImageFormat, fresh: bool,
                   only: list[str] | None, codex_bin: str, batch_file: Path | None = None,
                   batch_results: Path | None = None, wait: bool = True, poll: float = 30.0,
                   batch_retry: BatchRetry = BatchRetry.live):
    from verifier.core.verify import VerifyOptions

    return VerifyOptions(
        model=model, backend=backend.value, base_url=base_url, api_key_env=api_key_env,
        protocol=protocol.value if protocol else None, aspects=aspects or list(DEFAULT_ASPECTS),
        concurrency=concurrency, rpm=rpm, timeout=timeout, max_attempts=max_attempts, image_size=image_size,
        image_format=image_format.value, fresh=fresh, only=list(only or []), codex_bin=codex_bin,
        batch_file=str(batch_file) if batch_file else None, batch_results=str(batch_results) if batch_results else None,
        wait=wait, poll=poll, batch_retry=batch_retry.value)


@app.command()
@handled
def verify(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (walked recursively).")],
    policy: PolicyOpt = None,
    model: ModelOpt = "",
    backend: BackendOpt = BackendName.openai,
    base_url: BaseUrlOpt = None,
    api_key_env: KeyEnvOpt = "OPENAI_API_KEY",
    protocol: ProtocolOpt = None,
    aspects: AspectsOpt = None,
    aspect: OldAspectOpt = None,
    concurrency: ConcurrencyOpt = 6,
    rpm: RpmOpt = None,
    timeout: TimeoutOpt = 120.0,
    max_attempts: AttemptsOpt = 4,
    image_size: SizeOpt = 1024,
    image_format: FormatOpt = ImageFormat.jpeg,
    fresh: FreshOpt = False,
    only: OnlyOpt = None,
    codex_bin: CodexOpt = "codex",
    batch_file: BatchFileOpt = None,
    batch_results: BatchResultsOpt = None,
    no_wait: NoWaitOpt = False,
    poll: PollOpt = 30.0,
    batch_retry: BatchRetryOpt = BatchRetry.live,
    caption_ext: CaptionExtOpt = None,
    probes: Annotated[int, typer.Option(help="Tags audit: probe tags asked per image.")] = PROBES,
    mismatch_share: Annotated[float, typer.Option(help="Tags audit: this share of a caption's tags absent means it "
                                                       "may be another image's.")] = MISMATCH_SHARE,
) -> None:
    """Ask a vision model what each image shows and compare it with the caption (`--aspects …,tags`: every tag)."""
    from verifier.core.report import write_reports
    from verifier.core.verify import verify_dataset
    from verifier.human.agreement import all_agreements

    root = dataset_path(dataset)
    pol = dataset_policy(policy, root)
    options = verify_options(model, backend, base_url, api_key_env, protocol, comma_list(aspects, aspect, "--aspect"),
                             concurrency, rpm, timeout, max_attempts, image_size, image_format, fresh, only, codex_bin,
                             batch_file, batch_results, not no_wait, poll, batch_retry)
    options.caption_ext, options.probes, options.mismatch_share = caption_ext, probes, mismatch_share
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
        err.print(f"[red]error:[/red] every request failed; the model could not be used ({first})", soft_wrap=True)
        raise typer.Exit(EXIT_NO_MODEL)
    if run.unreadable:
        raise typer.Exit(EXIT_FINDINGS)  # every other image was verified; these files need replacing or fixing


def _summary(run, jsonl: Path, page: Path) -> None:
    from verifier.core.report import fix_groups
    from verifier.core.tag_report import run_tags

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
        out.print(f"skipped {image}: {why}", soft_wrap=True)
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
