"""What a verify run is told: its options, the (backend, model) its verdicts
are keyed by, and the backend those options open.

Apart from `verify` so that the batch flow and the CLI can open the same
backend without reaching into the run itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from verifier.core.backends import Backend
from verifier.core.defaults import DEFAULT_ASPECTS, MISMATCH_SHARE, PROBES
from verifier.core.prompting import FIXLINE, OBSERVE
from verifier.core.urls import redact_url, url_problem
from verifier.errors import BackendUnavailable, VerifierError

UNKNOWN_MODEL = "default"  # codex with no model named anywhere: its own default, learnt from its header


@dataclass
class VerifyOptions:
    model: str = ""
    backend: str = "openai"  # openai | codex | batch
    base_url: str | list[str] | None = None  # several: a fleet of servers, `concurrency` each
    api_key_env: str = "OPENAI_API_KEY"
    protocol: str | None = None  # default: observe for openai, fixline for codex
    aspects: list[str] = field(default_factory=lambda: list(DEFAULT_ASPECTS))
    concurrency: int = 6
    rpm: float | None = None
    timeout: float = 120.0
    max_attempts: int = 4
    image_size: int = 1024
    image_format: str = "jpeg"
    fresh: bool = False
    only: list[str] = field(default_factory=list)
    codex_bin: str = "codex"
    retry_base: float = 1.0  # first backoff in seconds (tests shorten it)
    batch_file: str | None = None  # write the batch JSONL here and stop (for vllm run-batch)
    batch_results: str | None = None  # read answers from this batch results file
    wait: bool = True  # batch: wait for the batches to finish (False: submit, collect what is done, exit)
    poll: float = 30.0  # batch: seconds between polls
    batch_retry: str = "live"  # batch lines that failed or expired: live | batch | error
    caption_ext: str | None = None  # `--caption-ext`; None: .txt, or .caption where only that exists
    probes: int = PROBES  # the tags audit: probe tags per image
    mismatch_share: float = MISMATCH_SHARE  # the tags audit: this share of tags absent is a mismatch

    @property
    def base_urls(self) -> list[str]:
        urls = [self.base_url] if isinstance(self.base_url, str) else list(self.base_url or [])
        return list(dict.fromkeys(u.rstrip("/") for u in urls))  # one server named twice is one server

    @property
    def batch_mode(self) -> bool:
        return self.backend == "batch" or bool(self.batch_file or self.batch_results)

    @property
    def resolved_protocol(self) -> str:
        return self.protocol or (FIXLINE if self.backend == "codex" else OBSERVE)



MIN_IMAGE_SIZE = 64  # below this a vision model sees a smudge (`--image-size 0` sent a 1×1 image)


def check_options(options: VerifyOptions) -> None:
    """Refuse, before any request, an option value that cannot work: each one
    used to cost a whole retried run (`--timeout -1`: 48 requests, then exit 4)."""
    checks = [
        ("--image-size", options.image_size, options.image_size >= MIN_IMAGE_SIZE,
         f"must be at least {MIN_IMAGE_SIZE} pixels (the long side sent to the model)"),
        ("--timeout", options.timeout, options.timeout > 0, "must be more than 0 seconds"),
        ("--concurrency", options.concurrency, options.concurrency >= 1, "must be at least 1"),
        ("--max-attempts", options.max_attempts, options.max_attempts >= 1, "must be at least 1"),
        ("--rpm", options.rpm, options.rpm is None or options.rpm > 0, "must be more than 0 requests a minute"),
        ("--poll", options.poll, options.poll > 0, "must be more than 0 seconds"),
        ("--probes", options.probes, options.probes >= 0, "must be 0 or more"),
        ("--mismatch-share", options.mismatch_share, 0 < options.mismatch_share <= 1,
         "must be a share above 0 and at most 1 (e.g. 0.5)"),
    ]
    for flag, value, ok, why in checks:
        if not ok:
            raise VerifierError(None, f"{flag} {value}: {why}")
    for url in options.base_urls:
        problem = url_problem(url)
        if problem:
            raise VerifierError(None, f"--base-url {redact_url(url)}: {problem}")
    if options.caption_ext is not None and not options.caption_ext.strip(". "):
        raise VerifierError(None, f"--caption-ext '{options.caption_ext}': give an extension, e.g. .txt")


def backend_identity(options: VerifyOptions) -> tuple[str, str]:
    """The (backend, model) pair verdicts are keyed by, known without opening the backend."""
    if options.backend == "codex":
        from verifier.core.backends.codex import configured_model

        # without --model, the model of codex's config.toml; the answers are stored under the one it reports
        return "codex", options.model or configured_model() or UNKNOWN_MODEL
    if options.backend == "batch":
        return "openai", options.model  # the same model through another door: the same verdicts
    return options.backend, options.model


def open_backend(options: VerifyOptions, notice: Callable[[str], None] | None = None) -> Backend:
    """The backend, behind a Fleet (one server or several) so fail-fast and
    taking out a dead server work the same everywhere."""
    from verifier.core.backends.fleet import Fleet

    if options.backend == "codex":
        from verifier.core.backends.codex import CodexBackend

        codex = CodexBackend(options.model or None, binary=options.codex_bin, timeout=options.timeout)
        return Fleet([codex], ["codex"], options.concurrency, notice)
    if options.backend not in ("openai", "batch"):
        raise VerifierError(None, f"backend must be openai, batch or codex, not '{options.backend}'")
    if not options.model:
        raise VerifierError(None, f"--model is required for the {options.backend} backend")
    key = os.environ.get(options.api_key_env)
    urls = options.base_urls
    if not key and not urls:
        raise BackendUnavailable("https://api.openai.com/v1",
                                 f"no API key: set ${options.api_key_env} (or pass --base-url for a local server)")
    from verifier.core.backends.openai_api import OpenAIBackend

    backends = [OpenAIBackend(options.model, base_url=url, api_key=key, api_key_env=options.api_key_env,
                              concurrency=options.concurrency, timeout=options.timeout) for url in urls or [None]]
    shown = [redact_url(u) for u in urls] or ["https://api.openai.com/v1"]  # what its messages name
    return Fleet(backends, shown, options.concurrency, notice)
