"""Asking about the samples: one request per sample, through verify's machinery.

Each sample becomes a verify `Work` whose "caption" is its checklist in
words, with the aspects it must show as claims and its tags as the tags
question; `Verifier.answer` then plans against the store, asks live or as a
batch job, and stores each answer the moment it arrives, exactly as
`verify` does. So a re-run asks nothing it has answered, a new tag list
re-judges a stored answer that already covered it, and the refusal rules
are verify's. The observation, not the verdict, is scored: an aspect the
model could not determine, a tag it answered `cannot determine`, a refusal
or an error is unknown, never a pass.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from captions.facts import Facts
from captions.policy import Policy
from captions.tags import prompt_tags
from captions.vocab import find_vocabulary
from verifier.core.images import sha256_file, text_sha
from verifier.core.observation import ABSENT, CANNOT, PRESENT, Observation
from verifier.core.options import VerifyOptions, backend_identity, open_backend
from verifier.core.prompting import OBSERVE
from verifier.core.results import ItemResult
from verifier.core.store import Store
from verifier.core.tags import TAGS
from verifier.core.verdict import TagClaims
from verifier.core.verify import Verifier
from verifier.core.works import Work
from verifier.errors import VerifierError
from verifier.eval.sample import Sample
from verifier.eval.spec import Checklist, Wanted, checklist
from verifier.eval.stats import FAIL, PASS, UNKNOWN, Outcome


@dataclass
class Scored:
    sample: Sample
    image: str  # relative to the eval folder
    image_sha: str
    label: str  # the prompt format (K, KT, N; p1, p2, … where the samples do not name it)
    checks: Checklist
    results: dict[str, str]  # check name -> pass / fail / unknown
    status: str  # the verify verdict's status (ok / fix / refused / error)
    reason: str | None = None
    source: str = ""  # asked | store | derived

    def outcome(self) -> Outcome:
        return Outcome(self.sample.epoch, self.label, self.sample.seed, self.results)


@dataclass
class EvalRun:
    scored: list[Scored]
    backend: str
    model: str
    requests: int
    pending: int
    wall_s: float
    unreadable: dict[str, str] = field(default_factory=dict)

    @property
    def asked(self) -> int:
        return sum(1 for s in self.scored if s.source == "asked")


def labels(samples: list[Sample], prompts: dict[str, str]) -> dict[str, str]:
    """Prompt text -> format name: the sample's own, the spec's prompt it equals (as tags), else p1, p2, …"""
    named = {tuple(prompt_tags(text)): name for name, text in prompts.items()}
    out: dict[str, str] = {}
    for s in samples:
        if s.format:
            out.setdefault(s.prompt, s.format)
    unnamed = 0
    for text in sorted({s.prompt for s in samples} - out.keys()):
        if (name := named.get(tuple(prompt_tags(text)))) is None:
            unnamed += 1
            name = f"p{unnamed}"
        out[text] = name
    return out


def results_of(observation: Observation | None, checks: Checklist) -> dict[str, str]:
    """pass / fail / unknown per check from what the model saw (None: refused or error: all unknown)."""
    out: dict[str, str] = {}
    seen_aspects = observation.aspects if observation else {}
    tags = (observation.tags or {}) if observation else {}
    for aspect, wanted in checks.aspects.items():
        seen = seen_aspects.get(aspect)
        out[aspect] = UNKNOWN if seen is None or seen.value is None else PASS if seen.value == wanted else FAIL
    for tag in checks.show:
        answer = tags.get(tag, CANNOT)
        out[tag] = PASS if answer == PRESENT else FAIL if answer == ABSENT else UNKNOWN
    for tag in checks.hide:
        answer = tags.get(tag, CANNOT)
        out[tag] = PASS if answer == ABSENT else FAIL if answer == PRESENT else UNKNOWN
    return out


def eval_options(options: VerifyOptions, policy: Policy) -> VerifyOptions:
    """verify's options for an eval: the observe protocol (tags need JSON answers), the tags question added."""
    if options.protocol not in (None, OBSERVE):
        raise VerifierError(None, "eval asks tags present / absent: it needs the observe protocol (drop --protocol)")
    aspects = [a for a in options.aspects if a != TAGS and policy.aspect(a) is not None]
    return replace(options, protocol=OBSERVE, aspects=[*aspects, TAGS], only=[])


async def evaluate(root: Path, samples: list[Sample], policy: Policy, wanted: Wanted, options: VerifyOptions,
                   store: Store, prompts: dict[str, str] | None = None,
                   on_result: Callable[[ItemResult], None] | None = None,
                   on_plan: Callable[[int], None] | None = None,
                   on_notice: Callable[[str], None] | None = None) -> EvalRun:
    """Verify every sample (images under `root`, the store's dataset) against its checklist."""
    started = time.monotonic()
    options = eval_options(options, policy)
    vocab = find_vocabulary(None, policy)
    names = labels(samples, prompts or {})
    works, by_image = [], {}
    for s in samples:
        checks = checklist(s, policy, wanted, options.aspects, vocab)
        text = checks.text()
        rel = store.rel(s.path)
        sha = store.file_sha(s.path, sha256_file)
        works.append(Work(s.path, rel, sha, text, text_sha(text), Facts(**checks.aspects),
                          TagClaims(checks.tags, ())))
        by_image[rel] = (s, sha, checks)
    verifier = Verifier(root, policy, options, store, on_result, on_plan, on_notice)
    identity = backend_identity(options)
    store.start_run("eval", json.dumps({"backend": identity[0], "model": identity[1], "samples": len(works),
                                        "aspects": options.aspects, "prompt_sha": verifier.spec.sha}))
    answered = await verifier.answer(works, identity, lambda: open_backend(options, verifier.on_notice))
    scored = []
    for r in answered.results:
        s, sha, checks = by_image[r.image]
        scored.append(Scored(s, r.image, sha, names[s.prompt], checks, results_of(r.verdict.observation, checks),
                             r.verdict.status, r.verdict.reason, r.source))
    return EvalRun(scored, identity[0], answered.model, answered.requests, answered.pending,
                   time.monotonic() - started, dict(sorted(verifier.unreadable.items())))


def run_eval(*args, **kwargs) -> EvalRun:
    return asyncio.run(evaluate(*args, **kwargs))
