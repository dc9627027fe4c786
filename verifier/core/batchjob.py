"""verify as batch jobs: the same questions as the live pool, answered later and cheaper.

- `--backend batch`: the requests are written as OpenAI batch JSONL (each
  line's `body` is exactly the live request), uploaded, and the batch is
  created; its id and its lines go into the store at once. Then it waits,
  polling; Ctrl-C leaves the batch running, and the same command resumes:
  it polls the stored batches and submits only what no batch holds.
- When a batch is done its output and error files become verdicts through
  the live path (`interpret`, the same refusal rules), stored under the
  live key (backend `openai`, the model), so a later live run asks nothing.
- Lines that failed or expired are retried live, in a new batch, or stored
  as errors (asked again next run), as the user chose. When the live retry
  cannot use the model at all (a `/v1/batches`-only server answers 404 for
  chat completions), the lines it did not answer are stored as errors
  naming both failures: the batches' answers stand and the run ends normally. A line's answer is
  stored once: a batch is marked collected only after its answers are in.
- `--batch-file OUT.jsonl` writes the lines and stops (for `vllm run-batch`);
  `--batch-results RESULTS.jsonl` reads such a results file back.

A line's `custom_id` names the image, the caption and the prompt by their
hashes, so a results file can only answer the question it was asked.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from verifier.core.backends.batch import ENDPOINT, BatchClient, BatchState
from verifier.core.backends.openai_api import chat_body, reply_from_body
from verifier.core.images import prepare
from verifier.core.pool import Outcome
from verifier.core.urls import redact_url
from verifier.errors import BackendUnavailable, VerifierError

MAX_LINES = 50_000  # the OpenAI Batch API's limits per input file
MAX_BYTES = 190 * 1024 * 1024  # 200 MB, less a margin
RETRY_CHOICES = ("live", "batch", "error")


def custom_id(image_sha: str, caption_sha: str, prompt_sha: str) -> str:
    return f"{image_sha[:32]}-{caption_sha[:24]}-{prompt_sha[:12]}"


@dataclass
class Line:
    custom_id: str
    works: list  # the images this answer is for (byte-identical images share one line)
    failure: str = ""  # why its request failed, when it did


@dataclass
class BatchOutcome:
    submitted: int = 0  # lines sent in this run (new batches)
    pending: int = 0  # images whose answers still wait in a batch


class BatchJob:
    def __init__(self, verifier, todo: list, asked: list, model: str):
        self.v, self.options, self.store = verifier, verifier.options, verifier.store
        self.asked, self.model = asked, model
        self.prompt_sha = verifier.spec.sha
        self.lines: dict[str, Line] = {}
        for w in todo:
            cid = custom_id(w.image_sha, w.caption_sha, self.prompt_sha)
            self.lines.setdefault(cid, Line(cid, [])).works.append(w)
        urls = self.options.base_urls
        if len(urls) > 1:
            raise VerifierError(None, "--backend batch takes one --base-url (the server that runs the batch)")
        self.base_url = urls[0] if urls else None
        self.outcome = BatchOutcome()
        self.seen: set[str] = set()  # custom ids answered or failed already: a line counts once

    # -- building lines ----------------------------------------------------------

    async def _encoded(self, lines: list[Line]) -> AsyncIterator[tuple[Line, bytes]]:
        """Each line as JSONL bytes; images that cannot be read are set aside here."""
        workers = max(1, min(8, os.cpu_count() or 1))
        for start in range(0, len(lines), workers * 4):
            chunk = lines[start:start + workers * 4]
            encoded = await asyncio.gather(*(asyncio.to_thread(self._encode, line) for line in chunk))
            for line, data in zip(chunk, encoded, strict=True):
                if isinstance(data, str):  # an unreadable file: named in the summary, no verdict (as live)
                    for w in line.works:
                        self.v.unreadable[w.image] = data
                else:
                    yield line, data

    def _encode(self, line: Line) -> bytes | str:
        w = line.works[0]
        try:
            image = prepare(w.path, self.options.image_size, self.options.image_format)
        except VerifierError as exc:
            return exc.message
        body = chat_body(self.model, self.v.request(w, image))
        return (json.dumps({"custom_id": line.custom_id, "method": "POST", "url": ENDPOINT, "body": body},
                           ensure_ascii=False, separators=(",", ":")) + "\n").encode()

    async def write_file(self, path: Path) -> int:
        """`--batch-file`: every line into one JSONL file (written whole, then renamed into place)."""
        tmp = path.with_name(path.name + ".part")
        count = 0
        with tmp.open("wb") as fh:
            async for _, data in self._encoded(list(self.lines.values())):
                fh.write(data)
                count += 1
        os.replace(tmp, path)
        return count

    # -- reading answers -----------------------------------------------------------

    def _record(self, line: Line, outcome: Outcome) -> None:
        for w in line.works:
            result = self.v._result(w, outcome)
            self.v._store(result, "openai", self.model)
            self.asked.append(result)
            self.v.on_result(result)

    def read_results(self, text: str, source: str) -> tuple[list[Line], int]:
        """Store every answer in a results/output/error file; (lines that failed, lines not ours)."""
        failed, foreign = [], 0
        for number, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                raise VerifierError(source, f"line {number} is not JSON") from None
            cid = record.get("custom_id") if isinstance(record, dict) else None
            line = self.lines.get(cid)
            if line is None or cid in self.seen:
                foreign += line is None  # another dataset, another prompt, or answered already
                continue
            self.seen.add(cid)
            outcome = _outcome(record)
            if outcome.reply is None:
                line.failure = outcome.error
                failed.append(line)
            else:
                self._record(line, outcome)
        return failed, foreign

    # -- batch jobs ------------------------------------------------------------------

    async def run(self, client: BatchClient) -> BatchOutcome:
        open_ids = [row["id"] for row in self.store.open_batches(redact_url(self.base_url), "openai", self.model,
                                                                  self.prompt_sha)]
        pending = {cid for bid in open_ids for cid in self.store.batch_lines(bid)}
        new = [line for cid, line in self.lines.items() if cid not in pending]
        if pending & self.lines.keys():
            self.v.on_notice(f"{len(open_ids)} batch(es) already submitted for {len(pending & self.lines.keys())} "
                             f"images: polling them, not submitting again")
        open_ids += await self.submit(client, new)
        await self.wait(client, open_ids)
        return self.outcome

    async def submit(self, client: BatchClient, lines: list[Line]) -> list[str]:
        ids, part, size, held = [], [], 0, []

        async def send() -> None:
            name = f"capcheck-{self.prompt_sha[:8]}-{len(ids) + 1}.jsonl"
            batch_id, file_id = await client.submit(name, b"".join(part))
            self.store.add_batch(batch_id, base_url=redact_url(self.base_url), backend="openai", model=self.model,
                                 prompt_sha=self.prompt_sha, input_file=file_id, status="validating",
                                 custom_ids=[ln.custom_id for ln in held])  # at once: a kill cannot lose it
            ids.append(batch_id)
            self.outcome.submitted += len(held)
            self.v.on_notice(f"submitted batch {batch_id}: {len(held)} requests")

        async for line, data in self._encoded(lines):
            if part and (len(part) >= MAX_LINES or size + len(data) > MAX_BYTES):
                await send()
                part, size, held = [], 0, []
            part.append(data)
            size += len(data)
            held.append(line)
        if part:
            await send()
        return ids

    async def wait(self, client: BatchClient, ids: list[str]) -> None:
        """Poll until every batch is done and collected (or once, with --no-wait)."""
        last: dict[str, tuple] = {}
        open_ids = list(dict.fromkeys(ids))
        while open_ids:
            for batch_id in list(open_ids):
                state = await client.state(batch_id)
                shown = (state.status, state.completed, state.failed)
                if last.get(batch_id) != shown:
                    last[batch_id] = shown
                    self.v.on_notice(f"batch {batch_id}: {state.status} · {state.completed}/{state.total} done"
                                     + (f", {state.failed} failed" if state.failed else ""))
                self.store.update_batch(batch_id, state.status)
                if state.done:
                    open_ids.remove(batch_id)
                    open_ids += await self.collect(client, batch_id, state)
            if open_ids and not self.options.wait:
                break
            if open_ids:
                await asyncio.sleep(self.options.poll)
        self.outcome.pending = sum(len(self.lines[c].works) for b in open_ids for c in self.store.batch_lines(b)
                                   if c in self.lines)

    async def collect(self, client: BatchClient, batch_id: str, state: BatchState) -> list[str]:
        """Store a finished batch's answers; then deal with its failed lines. New batch ids, if any."""
        failed: list[Line] = []
        for file_id in (state.output_file, state.error_file):
            if file_id:
                lost, _ = self.read_results(await client.download(file_id), f"batch {batch_id}")
                failed += lost
        for cid in self.store.batch_lines(batch_id):  # in no file at all: the batch failed or was cancelled
            line = self.lines.get(cid)
            if line is not None and cid not in self.seen:
                self.seen.add(cid)
                line.failure = f"batch {state.status}" + (f": {state.errors}" if state.errors else "")
                failed.append(line)
        self.store.update_batch(batch_id, state.status, collected=True)
        if not failed:
            return []
        if state.status == "cancelled":  # the user stopped it: what it did not answer waits for the next run
            self.v.on_notice(f"batch {batch_id} was cancelled: {len(failed)} requests not answered")
            return []
        return await self.retry(client, failed)

    async def retry(self, client: BatchClient, failed: list[Line]) -> list[str]:
        how = self.options.batch_retry
        self.v.on_notice(f"{len(failed)} batch requests failed ({failed[0].failure}); "
                         + {"live": "asking them live", "batch": "submitting them in a new batch",
                            "error": "stored as errors (asked again next run)"}[how])
        if how == "batch":
            return await self.submit(client, failed)
        if how == "error":
            for line in failed:
                self._record(line, Outcome(None, f"batch request failed: {line.failure}", 1, 0.0))
            return []
        from verifier.core.options import open_backend

        try:
            backend = open_backend(self.options, self.v.on_notice)
            try:
                await self.v.ask_live(backend, [w for line in failed for w in line.works], self.asked)
            finally:
                await backend.aclose()
        except BackendUnavailable as exc:
            # A `/v1/batches`-only server has no live endpoint: what the batches answered
            # stands, and the lines still without an answer are errors that say why.
            answered = {r.image for r in self.asked}
            left = [line for line in failed if not all(w.image in answered for w in line.works)]
            self.v.on_notice(f"the live retry could not use the model ({exc}): {len(left)} requests stored as "
                             "errors (asked again next run; --batch-retry batch resubmits them instead)")
            for line in left:
                self._record(line, Outcome(None, f"batch request failed: {line.failure}; live retry: {exc}", 1, 0.0))
        return []


def _outcome(record: dict) -> Outcome:
    """One results line -> what the live pool would have made of that answer."""
    response = record.get("response") or {}
    body = response.get("body")
    status = response.get("status_code")
    if status == 200 and isinstance(body, dict):
        try:
            return Outcome(reply_from_body(body), None, 1, 0.0)
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            return Outcome(None, f"unreadable batch answer: {str(exc).splitlines()[0]}", 1, 0.0)
    error = record.get("error") or (body.get("error") if isinstance(body, dict) else None) or {}
    message = error.get("message") if isinstance(error, dict) else str(error)
    code = error.get("code") if isinstance(error, dict) else None
    why = message or (f"HTTP {status}" if status else "no answer")
    return Outcome(None, f"{why} ({code})" if code else why, 1, 0.0)


async def run_batch(verifier, todo: list, asked: list, model: str) -> BatchOutcome:
    """The entry point from `Verifier.run`: one of the three batch ways, by the options."""
    options = verifier.options
    job = BatchJob(verifier, todo, asked, model)
    if options.batch_results:
        path = Path(options.batch_results)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise VerifierError(path, f"cannot read the results file ({exc})") from None
        failed, foreign = job.read_results(text, str(path))
        for line in failed:
            job._record(line, Outcome(None, f"batch request failed: {line.failure}", 1, 0.0))
        if foreign:
            verifier.on_notice(f"{path.name}: {foreign} lines answer no image still to verify here (another dataset,"
                               f" other options, or answered already): ignored")
        job.outcome.pending = sum(len(ln.works) for ln in job.lines.values()) - len(asked)
        return job.outcome
    if options.batch_file:
        path = Path(options.batch_file)
        count = await job.write_file(path)
        verifier.on_notice(f"wrote {count} requests to {path}; run them (vllm run-batch -i {path.name} -o "
                           f"RESULTS.jsonl --model {model}), then verify again with --batch-results RESULTS.jsonl")
        job.outcome.pending = sum(len(ln.works) for ln in job.lines.values()) - len(asked)
        return job.outcome
    key = os.environ.get(options.api_key_env)
    if not key and job.base_url is None:
        raise BackendUnavailable("https://api.openai.com/v1", f"no API key: set ${options.api_key_env} (or pass "
                                                              f"--base-url for a server that takes batch jobs)")
    client = BatchClient(job.base_url, key, options.api_key_env, options.timeout)
    try:
        return await job.run(client)
    finally:
        await client.aclose()
