"""`capcheck run`: sidecars to checkpoints, stage by stage, safe to run again.

1. build captions for images with a sidecar and no caption (never overwrites);
2. lint, and stop on errors;
3. verify (a re-run answers from the store);
4. apply the confident fixes (a person's folder sort always wins);
5. if anything still needs a person (what the training gate leaves pending:
   borderline calls, refusals, errors), route it and stop (REVIEW), saying
   what waits and the commands to run next; an image that cannot be read
   is named, and never routed (nobody can sort a broken file);
6. otherwise preflight, then train (a killed training run resumes; a
   finished one on the same dataset is not repeated);
7. with an `eval:` section in the config, evaluate the saved epochs
   (`verifier.eval`: only missing samples are rendered, only unanswered
   ones asked) and name the recommended epoch.

Interrupted anywhere, the next run ends in the same state: every stage
writes atomically and the store remembers what was answered.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from captions.build import DIFFERS, INVALID, UNCHANGED, WRITTEN, build_dataset
from captions.lint import ERROR, lint_dataset
from captions.vocab import find_vocabulary
from verifier.core.policy_rule import choose
from verifier.core.prompting import check_aspects
from verifier.core.report import read_report, reports_dir, write_reports
from verifier.core.results import ItemResult
from verifier.core.verdict import ERROR as VERDICT_ERROR
from verifier.core.verdict import FIX, OK, REFUSED
from verifier.core.verify import VerifyOptions, verify_dataset
from verifier.core.works import other_note
from verifier.core.writer import writing
from verifier.human import gate
from verifier.human.agreement import all_agreements
from verifier.human.apply import CHANGED, READ_ONLY, SKIPPED, STALE, apply_report
from verifier.human.folders import UNSURE
from verifier.human.route import route

DONE, FILES_TO_FIX, REVIEW, CANNOT_TRAIN = 0, 1, 3, 5

# Why build left an existing caption as it is, by what last wrote it
# (the journal knows); a caption nobody journaled was edited by hand.
KEPT_BECAUSE = {"apply": "changed by apply", "ingest": "changed by ingest", "build": "built by an older policy",
                "undo": "restored by undo"}
HAND = "edited by hand"


@dataclass
class Stage:
    name: str
    summary: str
    outputs: str = ""


@dataclass
class Outcome:
    code: int
    stages: list[Stage] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)  # what is wrong, one line each
    messages: list[str] = field(default_factory=list)  # what to do next (commands stand on lines of their own)


@dataclass
class Hooks:
    stage: Callable[[Stage], None] = lambda s: None
    verify_plan: Callable[[int], None] | None = None
    verify_result: Callable[[ItemResult], None] | None = None
    train_step: Callable[[object], None] | None = None
    event: Callable[[str], None] = lambda m: None


class Pipeline:
    def __init__(self, root: Path, policy: Path | None, verify: VerifyOptions, *, config: Path | None = None,
                 apply_aspects: list[str] | None = None, no_train: bool = False, hooks: Hooks | None = None):
        self.root, self.policy_path, self.verify_options = Path(root), policy, verify
        self.config, self.apply_aspects, self.no_train = config, apply_aspects, no_train
        self.hooks = hooks or Hooks()
        self.outcome = Outcome(DONE)
        # images a person cannot settle by sorting (a file that cannot be read, a
        # caption that may not be written): named, never routed
        self.held: dict[str, str] = {}

    def _stage(self, name: str, summary: str, outputs: str = "") -> None:
        stage = Stage(name, summary, outputs)
        self.outcome.stages.append(stage)
        self.hooks.stage(stage)

    def run(self) -> Outcome:
        chosen = choose(self.policy_path, self.root)
        self.hooks.event(chosen.how)  # which policy, and why: the same rule and line as every command
        policy = chosen.policy
        config = None
        if self.config is not None and not self.no_train:
            from trainer.config import load_config

            config = load_config(self.config, data_dir=str(self.root.resolve()))  # a bad config fails first
        check_aspects(policy, self.verify_options.aspects)  # a typo fails before any work
        if self.apply_aspects:
            self.apply_aspects = check_aspects(policy, self.apply_aspects)
        with writing(self.root, "run", self.hooks.event) as store:
            if not self._build(policy, store) or not self._lint(policy):
                return self.outcome
            self._verify(policy, store)
            self._apply(policy, store)
            checked = gate.check(self.root, store, policy)
            if checked.pending:
                self._route(policy, store, checked)
                return self.outcome
            self._stage("review", f"nothing needs a person ({len(checked.passed)} captions: {checked.describe()})")
            if self.no_train or config is None:
                self._stage("train", "skipped (--no-train)" if self.no_train else "skipped (no --config)")
                return self.outcome
            metadata = checked.metadata(policy)
        self._train(config, metadata)
        if config.eval is not None and self.outcome.code == DONE:
            self._eval(config, policy)
        return self.outcome

    def _build(self, policy, store) -> bool:
        source = str(policy.source) if policy.source else None
        store.start_run("build", json.dumps({"policy": source, "missing_only": True}))
        report = build_dataset(self.root, policy, missing_only=True, journal=store)
        kept: dict[str, int] = {}
        for o in report.of(DIFFERS):
            writer = store.last_writer(o.image.with_suffix(".txt"))
            why = KEPT_BECAUSE.get(writer, HAND)
            kept[why] = kept.get(why, 0) + 1
        detail = f" ({', '.join(f'{why} {n}' for why, n in sorted(kept.items()))})" if kept else ""
        self._stage("build", f"written {report.count(WRITTEN)}, unchanged {report.count(UNCHANGED)}, "
                             + (f"kept {report.count(DIFFERS)}{detail}, " if kept else "")
                             + f"invalid sidecars {report.count(INVALID)}")
        self.outcome.findings += [f"invalid: {o.reason}" for o in report.of(INVALID)]
        return True

    def _lint(self, policy) -> bool:
        vocab = find_vocabulary(None, policy)
        findings = lint_dataset(self.root, policy, vocab)
        errors = [f for f in findings if f.severity == ERROR]
        self._stage("lint", f"{len(errors)} error(s), {len(findings) - len(errors)} warning(s)"
                            + ("" if vocab else " (no tag CSV: unknown-tag skipped)"))
        if errors:
            self.outcome.code = FILES_TO_FIX
            self.outcome.findings += [str(f) for f in errors]
            self.outcome.messages.append("fix these captions (or the policy), then run again")
        return not errors

    def _verify(self, policy, store) -> None:
        run = asyncio.run(verify_dataset(self.root, policy, self.verify_options, store, self.hooks.verify_result,
                                         on_plan=self.hooks.verify_plan, on_notice=self.hooks.event))
        _, page = write_reports(self.root, run, policy, all_agreements(store, policy))
        asked = len(run.asked)
        counts = " · ".join(f"{s} {run.count(s)}" for s in (OK, FIX, REFUSED, VERDICT_ERROR))
        broken = f", {len(run.unreadable)} could not be read" if run.unreadable else ""
        self._stage("verify", f"{len(run.results)} images ({asked} asked, {len(run.results) - asked} from the store"
                              f"{broken}): {counts}", str(page))
        self.outcome.findings += [f"skipped {image}: {why}" for image, why in run.unreadable.items()]
        if run.others:
            self.outcome.findings.append(other_note(run.others))
        self.held.update({image: "replace or remove the file" for image in run.unreadable})

    def _apply(self, policy, store) -> None:
        store.start_run("apply", json.dumps({"aspects": self.apply_aspects}))
        done = apply_report(self.root, policy, reports_dir(self.root) / "latest.jsonl", store,
                            aspects=self.apply_aspects)
        count = {s: sum(1 for d in done if d.status == s) for s in (CHANGED, SKIPPED, STALE, READ_ONLY)}
        self._stage("apply", f"changed {count[CHANGED]}, borderline left for a person {count[SKIPPED]}, "
                             f"stale {count[STALE]}"
                             + (f", read-only (left alone) {count[READ_ONLY]}" if count[READ_ONLY] else ""))
        read_only = [d.image for d in done if d.status == READ_ONLY]
        self.outcome.findings += [f"read-only, not changed: {image}" for image in read_only]
        self.held.update({image: "make its caption writable (or edit it by hand)" for image in read_only})

    def _route(self, policy, store, checked) -> None:
        """Route what the gate leaves pending, by the aspects in dispute, and stop.

        What is held (a broken image, a read-only caption) is not routed: sorting
        by eye cannot settle it. It was named among the findings."""
        sortable = {image: why for image, why in checked.pending.items() if image not in self.held}
        if not sortable:
            self._stage("review", f"nothing to sort; {len(self.held)} file(s) to fix first")
            self.outcome.messages += [f"  {image}: {todo}" for image, todo in self.held.items()]
            self.outcome.messages.append("then run this same `capcheck run` command again")
            self.outcome.code = FILES_TO_FIX
            return
        report = reports_dir(self.root) / "latest.jsonl"
        lines = {line["image"]: line for line in read_report(report)}
        aspects: dict[str, set[str]] = {}
        first = self.verify_options.aspects[0]
        for image in sortable:
            line = lines.get(image, {})
            disputed = {f["aspect"] for f in line.get("fixes", []) if f.get("borderline")} or {first}
            for aspect in disputed:
                aspects.setdefault(aspect, set()).add(image)
        store.start_run("route", json.dumps({"aspects": sorted(aspects)}))
        folders, review = [], None
        for aspect, images in sorted(aspects.items()):
            routed = route(self.root, policy, report, aspect, store, only=images)
            placed = [f"{routed.folder}/{folder}/{Path(image).name}" for image, folder, _ in routed.placed]
            folders += placed or [f"{routed.folder}: {image}" for image in routed.already]
            review = routed.folder.parent
        self._stage("review", f"{len(sortable)} image(s) need a person", ", ".join(folders))
        self.outcome.messages += [
            "why:", *[f"  {image}: {why}" for image, why in sorted(sortable.items())],
            f"sort by eye: in {shlex.quote(str(review))}, move each image into the folder of what it shows "
            f"({UNSURE}/ holds what the model refused or failed on); then run:",
            f"  capcheck ingest {shlex.quote(str(review))} --aspects {','.join(sorted(aspects))}",
            "and this same `capcheck run` command again",
            "(or sort them in a browser, which runs the ingest for you: "
            f"capcheck review {shlex.quote(str(self.root))})"]
        self.outcome.code = REVIEW

    def _train(self, config, metadata) -> None:
        from trainer.errors import PreflightFailed
        from trainer.loop import Trainer
        from trainer.preflight import run_preflight

        output = config.path(config.output_dir)
        state = _read_json(output / "state.json")
        same = state is not None and state.get("dataset_hash") == metadata["capcheck_dataset_hash"]
        if same and state.get("status") == "done":
            loras = sorted(output.glob(f"{config.output_name}_epoch*.safetensors"))
            self._stage("train", f"already done on this exact dataset ({state['step']} steps)",
                        str(loras[-1]) if loras else str(output))
            return
        try:
            checks = run_preflight(config)
        except PreflightFailed as exc:
            self._stage("preflight", f"failed: {exc.check}: {exc.problem}")
            self.outcome.messages += [f"fix: {exc.fix}",
                                      "everything before training is done; run again where the fix holds "
                                      "(or add --no-train)"]
            self.outcome.code = CANNOT_TRAIN
            return
        self._stage("preflight", f"{len(checks)} checks passed")
        resume = same and (output / f"{config.output_name}_state.pt").exists()
        trainer = Trainer(config, self.root, metadata, on_step=self.hooks.train_step, on_event=self.hooks.event)
        result = trainer.run(resume=resume)
        if result.interrupted:
            raise KeyboardInterrupt
        resumed = f", resumed at step {result.resumed_from}" if result.resumed_from is not None else ""
        self._stage("train", f"{result.steps}/{result.total_steps} steps{resumed}, "
                             f"{len(result.loras)} LoRA file(s)", str(result.loras[-1]) if result.loras else "")

    def _eval(self, config, policy) -> None:
        """Which epoch: render what is missing of the eval: matrix, ask what the store has not answered."""
        from verifier.eval.sweep import Hooks as EvalHooks
        from verifier.eval.sweep import sweep_config

        sweep = sweep_config(config, policy, self.verify_options, hooks=EvalHooks(notice=self.hooks.event))
        run = sweep.run
        self._stage("eval", f"{len(run.scored)} samples ({run.asked} asked, {len(run.scored) - run.asked} from the "
                            f"store): {sweep.found.recommendation()}", str(sweep.html_path))
        self.outcome.findings += [f"eval warning: {w}" for w in sweep.found.warnings]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
