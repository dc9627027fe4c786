"""Vision-model backends: one request (prompt + image) in, one reply out.

A backend is stateless: the store is the only state, so a run can move
between providers, or be resumed by another process. Backends raise
`Retryable` for what a later attempt may fix (429, 5xx, timeouts, dropped
connections), `ItemFailed` for what only this item suffers (a 400 for its
image), and `BackendUnavailable` for what stops the run (bad key, unknown
model, missing executable). The pool does the retrying; SDK retries are
off so the two never multiply.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from verifier.core.images import Prepared


@dataclass(frozen=True)
class Request:
    prompt: str
    image: Prepared
    schema: dict | None = None  # observe protocol: the JSON schema of the answer


@dataclass(frozen=True)
class Reply:
    content: str | None
    refusal: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    raw: str = ""  # the provider's response as received (JSON text), kept in the store
    model: str | None = None  # the model that answered, where the backend reports it (codex's header)
    total_tokens: int | None = None  # where only a total is reported (codex's `tokens used N`)


class Retryable(Exception):
    """`connect`: True when no connection could be made (refused, no route,
    DNS): the server is not there, which fail-fast and the fleet treat apart
    from a server that is there but failing (False); None when nothing was
    heard either way (a timeout)."""

    def __init__(self, reason: str, retry_after: float | None = None, connect: bool | None = False):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.connect = connect


class ItemFailed(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Backend(Protocol):
    name: str
    model: str

    async def ask(self, request: Request) -> Reply: ...

    async def aclose(self) -> None: ...


def retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` as seconds or an HTTP date."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    if (ms := lowered.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - (time.time() if now is None else now))
