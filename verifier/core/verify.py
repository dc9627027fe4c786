"""verify: every caption checked against its image by a vision model.

`verify_dataset` plans (what the store already answers), asks the rest
through the pool, and writes each answer to the store the moment it
arrives. An observe answer describes the image alone (the caption is not
sent, so the model cannot be anchored by it); it is reused for a new
caption of the same image, so re-verifying after `apply` asks nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from captions.dataset import other_images
from captions.errors import CaptionsError
from captions.policy import Policy
from verifier.core import thumbs
from verifier.core.answers import interpret
from verifier.core.backends import Backend, Request
from verifier.core.options import UNKNOWN_MODEL, VerifyOptions, backend_identity, open_backend
from verifier.core.pool import Outcome, Pool, RetryPolicy
from verifier.core.preparing import PROCESSES_FROM, Ahead, Preparer
from verifier.core.prompting import PromptSpec, build_prompt
from verifier.core.results import ASKED, DERIVED, STORED, ItemResult, RunResult, result_from_row, verdict_from_row
from verifier.core.store import Store
from verifier.core.tags import TAGS, ask_order
from verifier.core.urls import redact_urls
from verifier.core.verdict import ERROR, REFUSED, STATUSES, TagClaims, Verdict, checked_claims, judge
from verifier.core.works import UNREADABLE, Work, collect, other_note, selected, tag_questions
from verifier.errors import BackendUnavailable, VerifierError


@dataclass
class Answered:
    """What `Verifier.answer` found and asked."""

    results: list[ItemResult]
    requests: int
    max_in_flight: int
    pending: int  # works whose answers wait in a submitted batch
    model: str  # the model that answered (codex may name another than the one planned)


def _asked(w: Work) -> tuple[list[str], list[str]]:
    return (list(w.tags.tags), list(w.tags.probes)) if w.tags is not None else ([], [])


def _answers_tags(row, tags: TagClaims | None) -> bool:
    """A stored observation can judge a new caption only if it answered all its tags."""
    if tags is None or not tags.tags:
        return True
    answered = (json.loads(row["observation"] or "{}") or {}).get(TAGS) or {}
    return all(t in answered for t in tags.tags)


class Verifier:
    """One verify run over one dataset: plan, ask, store, report back."""

    def __init__(self, root: Path, policy: Policy, options: VerifyOptions, store: Store,
                 on_result: Callable[[ItemResult], None] | None = None,
                 on_plan: Callable[[int], None] | None = None, on_notice: Callable[[str], None] | None = None):
        if options.concurrency < 1:
            raise VerifierError(None, "--concurrency must be at least 1")
        if options.max_attempts < 1:
            raise VerifierError(None, "--max-attempts must be at least 1")
        if options.batch_mode and (options.backend == "codex" or not options.model):
            raise VerifierError(None, "batch jobs need --model and an OpenAI-compatible server (not codex)")
        if options.batch_retry not in ("live", "batch", "error"):
            raise VerifierError(None, f"--batch-retry must be live, batch or error, not '{options.batch_retry}'")
        self.root, self.policy, self.options, self.store = root, policy, options, store
        self.preparing: Preparer | None = None  # started by run(), before the dataset is hashed
        self.reports = thumbs.reports_dir(root)  # where the workers leave each image's thumbnail
        self.spec: PromptSpec = build_prompt(policy, options.resolved_protocol, options.aspects,
                                             options.image_size, options.image_format)
        self.on_result = on_result or (lambda r: None)
        self.on_plan = on_plan or (lambda total: None)
        self.on_notice = on_notice or (lambda message: None)  # one line for the person running it
        self.unreadable: dict[str, str] = {}  # image -> why it could not be read (skipped, not a verdict)

    def plan(self, works: list[Work], backend: str, model: str) -> tuple[list[ItemResult], list[Work]]:
        """Split into results the store already holds and work to ask."""
        done, todo = [], []
        for w in works:
            if not self.options.fresh:
                row = self.store.find_verdict(w.image_sha, w.caption_sha, self.spec.sha, backend, model)
                if row is not None and row["status"] != ERROR:
                    done.append(result_from_row(row, STORED))
                    continue
                if not self.spec.sends_caption:
                    answer = self.store.find_answer(w.image_sha, self.spec.sha, backend, model)
                    if answer is not None and _answers_tags(answer, w.tags):
                        done.append(self._derive(w, answer, backend, model))
                        continue
            todo.append(w)
        return done, todo

    def _derive(self, w: Work, answer, backend: str, model: str) -> ItemResult:
        """The same image, the same question: re-judge the stored observation against this caption."""
        old = verdict_from_row(answer)
        if old.observation is not None:
            verdict = judge(old.observation, w.claims, list(self.spec.aspects), w.tags)
        else:
            verdict = Verdict(REFUSED, reason=old.reason, claims=checked_claims(w.claims, self.spec.aspects, w.tags))
        result = ItemResult(w.image, w.image_sha, w.caption_sha, verdict, DERIVED)
        self._store(result, backend, model, derived_from=answer["id"])
        return result

    def _store(self, r: ItemResult, backend: str, model: str, derived_from: int | None = None) -> None:
        v = r.verdict
        self.store.put_verdict(
            image=r.image, image_sha=r.image_sha, caption_sha=r.caption_sha, prompt_sha=self.spec.sha,
            backend=backend, model=model, protocol=self.spec.protocol, status=v.status,
            fixes=[f.as_dict() for f in v.fixes], observation=v.observation.as_dict() if v.observation else None,
            claims=v.claims, reason=v.reason, attempts=r.attempts, latency_s=r.latency_s, raw=r.raw,
            prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens, derived_from=derived_from,
            total_tokens=r.total_tokens)

    async def run(self, identity: tuple[str, str], opener: Callable[[], Backend], close: bool = True) -> RunResult:
        """Plan, then open the backend (only if anything needs asking) and ask;
        `close`: the backend is ours to close (not one the caller passed in)."""
        started = time.monotonic()
        name, model = identity
        run_id = self.store.start_run("verify", json.dumps(self._args(name, model), sort_keys=True))
        try:
            works, skipped, others = self._works()
            answered = await self.answer(works, identity, opener, close)
        finally:
            if self.preparing is not None:
                self.preparing.close()
        return RunResult(run_id, name, answered.model, self.spec.protocol, answered.results, skipped,
                         time.monotonic() - started, answered.requests, answered.max_in_flight,
                         dict(sorted(self.unreadable.items())), answered.pending, others)

    def _warm(self, hashed: int) -> None:
        """Files hashed afresh are new to the store, so they will be asked about: once there are enough
        for worker processes, start them, while the rest is hashed (a run answered from the store starts
        none)."""
        if hashed == PROCESSES_FROM and self.preparing is None and not self.options.batch_mode:
            self.preparing = Preparer(hashed)
            self.preparing.warm()

    def _works(self) -> tuple[list[Work], dict[str, str], list[str]]:
        """The captioned images to answer, those skipped (why), and the pictures that are not dataset images."""
        works, skipped = collect(self.root, self.policy, self.store, self.options.only, self.options.caption_ext,
                                 self.unreadable, on_hashed=self._warm)
        others = [Path(os.path.relpath(p, self.root)).as_posix() for p in other_images(self.root)]
        others = [o for o in others if selected(o, self.options.only)]
        for rel in [r for r, why in skipped.items() if why.startswith(UNREADABLE)]:
            self.unreadable[rel] = skipped.pop(rel)  # a broken caption, like a broken image: named, not a verdict
        if not works:
            why = "no images with captions" + (f" matching {', '.join(self.options.only)}" if self.options.only else "")
            if others:
                why += f" ({other_note(others)})"
            raise VerifierError(self.root, why)
        if self.spec.tags:
            tag_questions(self.root, works, self.policy, self.options)
        return works, skipped, others

    async def answer(self, works: list[Work], identity: tuple[str, str], opener: Callable[[], Backend],
                     close: bool = True) -> Answered:
        """Every work answered: from the store where it can be, else asked (live or as a batch).
        Works need not be captions: `eval` builds its own (a sample and what it must show)."""
        name, model = identity
        done, todo = self.plan(works, name, model)
        self.on_plan(len(works))
        for r in done:
            self.on_result(r)
        asked: list[ItemResult] = []
        requests = max_in_flight = pending = 0
        if todo and self.options.batch_mode:
            from verifier.core.batchjob import run_batch

            outcome = await run_batch(self, todo, asked, model)
            requests, pending = outcome.submitted, outcome.pending
        elif todo:
            with self._workers(len(todo)) as preparing:
                ahead = await self._ahead(preparing, todo).started()
                try:
                    backend = opener()  # the SDK's import, while the workers prepare the first wave
                    try:
                        pool = await self._ask(backend, todo, asked, ahead)
                    finally:
                        if close:
                            await backend.aclose()
                finally:
                    ahead.cancel()
            requests, max_in_flight = pool.requests, pool.max_in_flight
            model = backend.model  # codex may have named another model than the one planned
        return Answered(sorted(done + asked, key=lambda r: r.image), requests, max_in_flight, pending, model)

    # Preparing is CPU work (PNG decode, resize, JPEG): one worker per core, in processes for a
    # run of any size (core/preparing.py: in threads the GIL kept one core idle). More workers only
    # stretch every image's preparation, so the first requests leave later and the replies are read
    # late (832x1216 PNGs at concurrency 32 on 2 cores: 19.8 s -> 12.8 s for 64 images).
    @contextmanager
    def _workers(self, n: int) -> Iterator[Preparer]:
        """The run's workers when it started them while hashing (`_warm`); else, for eval's `answer`
        (which comes without `run`) or a batch's live retry, workers of this call's own, closed after it."""
        if self.preparing is not None:
            yield self.preparing
            return
        own = Preparer(n)
        try:
            yield own
        finally:
            own.close()

    def _ahead(self, preparing: Preparer, todo: list[Work]) -> Ahead:
        """The first wave (a request per slot: --concurrency per server) prepared ahead."""
        wave = self.options.concurrency * max(1, len(self.options.base_urls))
        return Ahead(preparing, [(w.image, self._prepare_args(w)) for w in todo[:wave]])

    def _prepare_args(self, w: Work) -> tuple:
        return w.path, self.options.image_size, self.options.image_format, self.reports, w.image_sha

    async def ask_live(self, backend: Backend, todo: list[Work], asked: list[ItemResult]) -> Pool:
        """Ask `todo` through an open backend, with no head start: a batch's failed lines asked again."""
        with self._workers(len(todo)) as preparing:
            return await self._ask(backend, todo, asked, Ahead(preparing, ()))

    async def _ask(self, backend: Backend, todo: list[Work], asked: list[ItemResult], ahead: Ahead) -> Pool:
        servers = len(getattr(backend, "servers", ())) or 1  # a fleet: --concurrency per server
        pool = Pool(backend, concurrency=self.options.concurrency * servers, rpm=self.options.rpm,
                    timeout=self.options.timeout,
                    retry=RetryPolicy(self.options.max_attempts, base=self.options.retry_base))

        planned = backend.model
        # codex without a model in its config: the first answer names the model; the others wait
        # for it, so what the store holds under that name is found instead of asked again
        named = asyncio.Event()
        first = [planned == UNKNOWN_MODEL]
        if not first[0]:
            named.set()

        async def answer(w: Work) -> ItemResult | None:
            if backend.model != planned and (row := self._answered_under(w, backend)) is not None:
                return result_from_row(row, STORED)  # codex named another model: what it answered stands
            try:
                image = await ahead.prepare(w.image, *self._prepare_args(w))
            except VerifierError as exc:
                # A broken file (truncated, not an image) is the dataset's problem, not a
                # verdict: skipped and named, never stored as an error a person would sort.
                self.unreadable[w.image] = exc.message
                return None
            outcome = await pool.ask(self.request(w, image))
            result = self._result(w, outcome)
            # at once: a kill loses only what is in flight; keyed by the model that answered
            self._store(result, backend.name, result.model or backend.model)
            return result

        async def one(w: Work) -> None:
            if first[0]:
                first[0] = False
                try:
                    result = await answer(w)
                finally:
                    named.set()  # named or not, one answer is all the waiting a run should do
            else:
                await named.wait()
                result = await answer(w)
            if result is None:  # unreadable: named in the summary, no verdict
                return
            asked.append(result)
            self.on_result(result)

        try:
            await pool.map(todo, one)
        except* BackendUnavailable as group:
            raise group.exceptions[0] from None
        except* CaptionsError as group:  # a store that cannot be written (full disk): one line, not a group
            raise group.exceptions[0] from None
        return pool

    def request(self, w: Work, image) -> Request:
        """The question about one image: the live pool and a batch line send the same."""
        text, schema = self.spec.request(w.caption, ask_order(*_asked(w), w.image_sha))
        return Request(text, image, schema)

    def _answered_under(self, w: Work, backend: Backend):
        if self.options.fresh:
            return None
        row = self.store.find_verdict(w.image_sha, w.caption_sha, self.spec.sha, backend.name, backend.model)
        return row if row is not None and row["status"] != ERROR else None

    def _result(self, w: Work, outcome: Outcome) -> ItemResult:
        reply = outcome.reply
        if reply is None:
            verdict = Verdict(ERROR, reason=outcome.error, claims=checked_claims(w.claims, self.spec.aspects, w.tags))
            return ItemResult(w.image, w.image_sha, w.caption_sha, verdict, ASKED, outcome.attempts,
                              outcome.latency_s)
        verdict = interpret(reply, self.spec, self.policy, w.claims, w.tags)
        return ItemResult(w.image, w.image_sha, w.caption_sha, verdict, ASKED, outcome.attempts, outcome.latency_s,
                          reply.raw, reply.prompt_tokens, reply.completion_tokens, reply.total_tokens, reply.model)

    def _args(self, backend: str, model: str) -> dict:
        o = self.options
        return {"backend": backend, "model": model, "base_url": redact_urls(o.base_url),  # the store keeps no secret
                "policy": str(self.policy.source) if self.policy.source else None, "protocol": self.spec.protocol,
                "aspects": self.spec.checked, "concurrency": o.concurrency, "rpm": o.rpm, "timeout": o.timeout,
                "max_attempts": o.max_attempts, "image_size": o.image_size, "image_format": o.image_format,
                "fresh": o.fresh, "only": o.only, "prompt_sha": self.spec.sha}


async def verify_dataset(root: Path, policy: Policy, options: VerifyOptions, store: Store,
                         on_result: Callable[[ItemResult], None] | None = None,
                         backend: Backend | None = None,
                         on_plan: Callable[[int], None] | None = None,
                         on_notice: Callable[[str], None] | None = None) -> RunResult:
    """The library entry point: verify every captioned image under `root`."""
    verifier = Verifier(root, policy, options, store, on_result, on_plan, on_notice)
    if backend is not None:
        return await verifier.run((backend.name, backend.model), lambda: backend, close=False)
    return await verifier.run(backend_identity(options), lambda: open_backend(options, verifier.on_notice))


__all__ = ["ASKED", "DERIVED", "STATUSES", "STORED", "ItemResult", "RunResult", "VerifyOptions", "verify_dataset"]
