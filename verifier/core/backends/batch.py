"""Batch jobs through the `openai` SDK: `/v1/files` + `/v1/batches`.

The OpenAI Batch API (half the price, a 24-hour window), Gemini's OpenAI
endpoint, a LiteLLM proxy in front of vLLM: anything that takes a JSONL
file of Chat Completions requests and hands back an output file and an
error file. This module only moves files and batch objects; what the
lines mean is `verifier.core.batchjob`'s business.

A few SDK retries are on here (unlike the live backend): a poll or an
upload that meets a 502 should simply try again, and no pool of ours is
retrying on top of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import openai

from verifier.core.backends.openai_api import NO_KEY, error_message
from verifier.core.urls import redact_url, split_query
from verifier.errors import BackendUnavailable

ENDPOINT = "/v1/chat/completions"
DONE = ("completed", "failed", "expired", "cancelled")  # nothing more will happen to these


@dataclass(frozen=True)
class BatchState:
    id: str
    status: str
    total: int
    completed: int
    failed: int
    output_file: str | None
    error_file: str | None
    errors: str  # why the whole batch failed (validation), if it did

    @property
    def done(self) -> bool:
        return self.status in DONE


class BatchClient:
    def __init__(self, base_url: str | None, api_key: str | None, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 120.0):
        self.where = redact_url(base_url) or "https://api.openai.com/v1"  # what errors name: no secret in it
        self.api_key_env = api_key_env
        url, query = split_query(base_url)
        self._client = openai.AsyncOpenAI(api_key=api_key or NO_KEY, base_url=url, max_retries=3,
                                          timeout=timeout, default_query=query or None)

    async def submit(self, name: str, data: bytes) -> tuple[str, str]:
        """Upload one JSONL file and create its batch: (batch id, input file id)."""
        upload = await self._call(self._client.files.create(file=(name, data, "application/jsonl"),
                                                            purpose="batch"))
        batch = await self._call(self._client.batches.create(
            input_file_id=upload.id, endpoint=ENDPOINT, completion_window="24h",
            metadata={"made_by": "capcheck", "file": name}))
        return batch.id, upload.id

    async def state(self, batch_id: str) -> BatchState:
        return _state(await self._call(self._client.batches.retrieve(batch_id)))

    async def cancel(self, batch_id: str) -> BatchState:
        return _state(await self._call(self._client.batches.cancel(batch_id)))

    async def download(self, file_id: str) -> str:
        content = await self._call(self._client.files.content(file_id))
        return content.text

    async def _call(self, awaitable):
        try:
            return await awaitable
        except openai.APIConnectionError as exc:
            raise BackendUnavailable(self.where, f"cannot connect ({exc.__cause__ or exc}); is the server "
                                                 f"running?") from None
        except openai.APIStatusError as exc:
            status = exc.status_code
            key = f": check the API key in ${self.api_key_env}"
            hint = {401: key, 403: key, 404: ": does this server take batch jobs (/v1/files, /v1/batches)?"}
            raise BackendUnavailable(self.where,
                                     f"HTTP {status} ({error_message(exc)}){hint.get(status, '')}") from None

    async def aclose(self) -> None:
        await self._client.close()


def _state(batch) -> BatchState:
    counts = getattr(batch, "request_counts", None)
    errors = getattr(batch, "errors", None)
    data = getattr(errors, "data", None) or []
    return BatchState(batch.id, batch.status, getattr(counts, "total", 0) or 0, getattr(counts, "completed", 0) or 0,
                      getattr(counts, "failed", 0) or 0, batch.output_file_id, batch.error_file_id,
                      "; ".join(f"{getattr(e, 'code', '')}: {getattr(e, 'message', '')}" for e in data))

