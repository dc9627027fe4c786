"""The options of `capcheck verify`, declared once for every command that verifies.

`verify`, `run` (and `eval`) take the same options; two copies of the list
drifted (`run` lacked `--caption-ext`, `--probes`, `--mismatch-share` and
the batch ones, though the README said every verify option works there).
They are declared here once, as the parameters of `verify_params`, and
`@with_verify_options` adds them to a command's signature, so typer shows
them in its help (in their own panel) and the command receives one checked
`VerifyOptions`:

    @app.command()
    @handled
    @with_verify_options
    def eval(dataset: ..., options: VerifyOptions) -> None: ...

The values are checked here, at the boundary (`check_options`): a bad one is
one line and exit 2, before any request.
"""

from __future__ import annotations

import functools
import inspect
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from verifier.cli.console import comma_list
from verifier.core.defaults import DEFAULT_ASPECTS, MISMATCH_SHARE, PROBES

if TYPE_CHECKING:
    from verifier.core.options import VerifyOptions

PANEL = "Verify options"  # their own section of --help, apart from the command's own options


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


def _opt(*names: str, **kwargs) -> typer.models.OptionInfo:
    return typer.Option(*names, rich_help_panel=PANEL, **kwargs)


ASPECTS = ",".join(DEFAULT_ASPECTS)
ModelOpt = Annotated[str, _opt("--model", "-m", metavar="NAME", help="Model name (openai backend: required).")]
BackendOpt = Annotated[BackendName, _opt(help="openai: any OpenAI-compatible API; batch: its batch jobs "
                                              "(/v1/files + /v1/batches); codex: the Codex CLI.")]
BaseUrlOpt = Annotated[list[str] | None, _opt(metavar="URL", help="API base URL (vLLM, Ollama, LM Studio, "
                                                                  "OpenRouter, …); repeat it for several servers "
                                                                  "of one model.")]
KeyEnvOpt = Annotated[str, _opt(metavar="VAR", help="Environment variable holding the API key.")]
ProtocolOpt = Annotated[ProtocolName | None, _opt(help="observe (JSON; openai default) or fixline (one line; codex "
                                                       "default).")]
AspectsOpt = Annotated[str | None, _opt("--aspects", metavar="LIST", help=f"Aspects to check, comma-separated "
                                                                         f"(default: {ASPECTS}).")]
OldAspectOpt = Annotated[str | None, typer.Option("--aspect", hidden=True)]  # the old spelling, unlisted
ConcurrencyOpt = Annotated[int, _opt(help="Most requests in flight at once.")]
RpmOpt = Annotated[float | None, _opt(help="At most this many requests per minute.")]
TimeoutOpt = Annotated[float, _opt(metavar="SECONDS", help="Seconds before a request counts as failed.")]
AttemptsOpt = Annotated[int, _opt(help="Attempts per image (429, 5xx, timeouts are retried).")]
SizeOpt = Annotated[int, _opt(metavar="PIXELS", help="Long side sent, in pixels (never cropped; at least 64).")]
FormatOpt = Annotated[ImageFormat, _opt(help="jpeg or png.")]
FreshOpt = Annotated[bool, _opt("--fresh", help="Ask again even what the store has answered.")]
OnlyOpt = Annotated[list[str] | None, _opt(metavar="PATTERN", help="Only images whose path or name matches "
                                                                   "(repeatable).")]
CodexOpt = Annotated[str, _opt(metavar="PATH", help="The codex executable.")]
BatchFileOpt = Annotated[Path | None, _opt(metavar="OUT.jsonl", help="Write the requests as batch JSONL here and "
                                                                     "stop (for vllm run-batch -i).")]
BatchResultsOpt = Annotated[Path | None, _opt(metavar="RESULTS.jsonl", help="Read the answers from this batch "
                                                                            "results JSONL (vllm run-batch -o).")]
NoWaitOpt = Annotated[bool, _opt("--no-wait", help="batch: submit (and collect what is done), then exit.")]
PollOpt = Annotated[float, _opt(metavar="SECONDS", help="batch: seconds between status checks.")]
BatchRetryOpt = Annotated[BatchRetry, _opt(help="batch: requests that failed or expired are asked live, in a new "
                                                "batch, or stored as errors.")]
_EXT_HELP = "Caption file extension (default: .txt, or .caption where only that exists)."
CaptionExtOpt = Annotated[str | None, typer.Option(metavar="EXT", help=_EXT_HELP)]  # `init`'s own, outside the panel
SharedExtOpt = Annotated[str | None, _opt("--caption-ext", metavar="EXT", help=_EXT_HELP)]
ProbesOpt = Annotated[int, _opt(help="Tags audit: probe tags asked per image.")]
ShareOpt = Annotated[float, _opt(help="Tags audit: this share of a caption's tags absent means it may be another "
                                      "image's.")]


def verify_params(
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
    caption_ext: SharedExtOpt = None,
    probes: ProbesOpt = PROBES,
    mismatch_share: ShareOpt = MISMATCH_SHARE,
) -> VerifyOptions:
    """The options as one `VerifyOptions`, checked (a bad value: VerifierError, one line, exit 2)."""
    from verifier.core.options import VerifyOptions, check_options

    options = VerifyOptions(
        model=model, backend=backend.value, base_url=base_url, api_key_env=api_key_env,
        protocol=protocol.value if protocol else None,
        aspects=comma_list(aspects, aspect, "--aspect") or list(DEFAULT_ASPECTS), concurrency=concurrency, rpm=rpm,
        timeout=timeout, max_attempts=max_attempts, image_size=image_size, image_format=image_format.value,
        fresh=fresh, only=list(only or []), codex_bin=codex_bin, batch_file=str(batch_file) if batch_file else None,
        batch_results=str(batch_results) if batch_results else None, wait=not no_wait, poll=poll,
        batch_retry=batch_retry.value, caption_ext=caption_ext, probes=probes, mismatch_share=mismatch_share)
    check_options(options)
    return options


def with_verify_options(fn):
    """Add verify's options to `fn`'s signature; `fn` gets them as `options` (see the module doc).

    typer reads a command's parameters from `inspect.signature` and
    `get_type_hints`; both are given the merged list, with the annotations
    already evaluated (the modules use `from __future__ import annotations`,
    and `VerifyOptions` is imported only when a command runs).
    """
    own_hints = _hints(fn)
    shared_hints = _hints(verify_params)
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=own_hints[p.name])
           for p in inspect.signature(fn).parameters.values() if p.name != "options"]
    taken = {p.name for p in own}
    shared = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=shared_hints[p.name])
              for p in inspect.signature(verify_params).parameters.values() if p.name not in taken]
    names = [p.name for p in shared]

    @functools.wraps(fn)
    def wrapper(**kwargs):
        given = {name: kwargs.pop(name) for name in names if name in kwargs}
        return fn(**kwargs, options=verify_params(**given))

    wrapper.__signature__ = inspect.Signature(own + shared, return_annotation=None)
    wrapper.__annotations__ = {p.name: p.annotation for p in own + shared}
    return wrapper


def _hints(fn) -> dict:
    """`fn`'s parameter annotations, evaluated, but for `options` (its type need not be importable at run time)."""
    return {name: eval(hint, fn.__globals__) if isinstance(hint, str) else hint  # what typing.get_type_hints does
            for name, hint in fn.__annotations__.items() if name not in ("options", "return")}
