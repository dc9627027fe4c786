"""The eval from start to report, for either source of samples.

- `sweep_samples(DIR)`: images made anywhere, read from their metadata;
  the store and the reports in `DIR/.capcheck/`.
- `sweep_config(config)`: the trainer renders what is missing of the
  `eval:` matrix into `output_dir/eval/samples/` (trainer imported here
  only, lazily), then the same as above with `output_dir/eval/` as the
  folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from captions.policy import Policy
from verifier.core.options import VerifyOptions
from verifier.core.store import Store
from verifier.errors import VerifierError
from verifier.eval.epochs import BASELINE
from verifier.eval.evaluate import EvalRun, run_eval
from verifier.eval.findings import Findings, analyse
from verifier.eval.gather import gather, images_in
from verifier.eval.page import write_page
from verifier.eval.report import as_json, write_json
from verifier.eval.sample import Sample
from verifier.eval.spec import Wanted, tag_list

EVAL_DIR = "eval"  # output_dir/eval/: the rendered samples, the store, the reports


@dataclass
class Sweep:
    root: Path
    run: EvalRun
    found: Findings
    skipped: dict[str, str]
    data: dict
    json_path: Path
    html_path: Path


@dataclass
class Hooks:
    plan: Callable[[int], None] | None = None
    result: Callable[[object], None] | None = None
    notice: Callable[[str], None] | None = None


def wanted_from(spec, must_show: str | None, must_not_show: str | None, where: Path | None = None) -> Wanted:
    """The spec's lists, each overridden by its command-line option when given."""
    show = tag_list(must_show) if must_show is not None else tag_list(spec.must_show if spec else None)
    hide = tag_list(must_not_show) if must_not_show is not None else tag_list(spec.must_not_show if spec else None)
    wanted = Wanted(show, hide)
    wanted.check(where)
    return wanted


def _chosen(samples: list[Sample], epochs: list[int] | None, folder: Path) -> list[Sample]:
    if not epochs:
        return samples
    have = {s.epoch for s in samples}
    missing = [e for e in epochs if e not in have]
    if missing:
        listed = ", ".join(str(e) for e in sorted(have - {BASELINE})) or "none"
        raise VerifierError(folder, f"no samples of epoch {', '.join(map(str, missing))} (epochs found: {listed})")
    return [s for s in samples if s.epoch in epochs or s.epoch == BASELINE]


def _score(root: Path, samples: list[Sample], skipped: dict[str, str], policy: Policy, wanted: Wanted,
           options: VerifyOptions, prompts: dict[str, str], hooks: Hooks) -> Sweep:
    with Store(root) as store:
        run = run_eval(root, samples, policy, wanted, options, store, prompts, hooks.result, hooks.plan,
                       hooks.notice)
    earned = {n for s in run.scored for n in s.checks.show}  # a prompted framing is the base's doing anyway
    found = analyse([s.outcome() for s in run.scored], earned)
    data = as_json(run, found, skipped)
    json_path = write_json(root, data)
    html_path = write_page(root, run, found, skipped)
    return Sweep(root, run, found, skipped, data, json_path, html_path)


def sweep_samples(folder: Path, policy: Policy, wanted: Wanted, options: VerifyOptions,
                  epochs: list[int] | None = None, prompts: dict[str, str] | None = None,
                  hooks: Hooks | None = None) -> Sweep:
    folder = Path(folder)
    if not folder.is_dir():
        raise VerifierError(folder, "no such samples folder")
    images = images_in(folder)
    samples, skipped = gather(folder, images)
    if not samples:
        why = f"{len(images)} images, none with usable metadata" if images else "no images"
        first = next(iter(skipped.items()), None)
        raise VerifierError(folder, f"no usable sample image ({why}" + (f"; {first[0]}: {first[1]})" if first
                                                                        else ")"))
    return _score(folder, _chosen(samples, epochs, folder), skipped, policy, wanted, options, prompts or {},
                  hooks or Hooks())


def check_epochs(saved: dict[int, Path], epochs: list[int] | None, output: Path) -> list[int]:
    """The epochs to render: those asked for (each must have a saved LoRA), else every saved one."""
    if not epochs:
        if not saved:
            raise VerifierError(output, "no saved LoRA (NAME_epochNNN.safetensors) to evaluate: train first")
        return sorted(saved)
    missing = [e for e in epochs if e not in saved]
    if missing:
        listed = ", ".join(str(e) for e in sorted(saved)) or "none"
        raise VerifierError(output, f"no saved LoRA for epoch {', '.join(map(str, missing))} (saved epochs: {listed})")
    return sorted(epochs)


def sweep_config(config, policy: Policy, options: VerifyOptions, epochs: list[int] | None = None,
                 must_show: str | None = None, must_not_show: str | None = None,
                 hooks: Hooks | None = None, progress=None) -> Sweep | None:
    """Render the config's `eval:` matrix (what is missing of it), then score it.

    None on a rank other than 0 of a launched world (torchrun, accelerate
    launch): that process rendered its share of the matrix and is done.
    """
    from trainer.evalrender import render, saved_epochs

    spec = config.eval
    where = config.source
    if spec is None or not spec.prompts:
        raise VerifierError(where, "no eval: section with prompts (K: trigger only, KT: + tags, N: the NL block)")
    wanted = wanted_from(spec, must_show, must_not_show, where)
    output = config.path(config.output_dir)
    chosen = check_epochs(saved_epochs(config), epochs or spec.epochs, output)
    rendered = render(config, chosen, progress=progress)
    if not rendered.main:  # another rank of a launched world: it rendered its share; rank 0 scores
        return None
    root = output / EVAL_DIR
    samples, skipped = gather(root, sorted(rendered.pngs))
    if not samples:
        raise VerifierError(root, "the renderer left no usable sample")
    return _score(root, samples, skipped, policy, wanted, options, dict(spec.prompts), hooks or Hooks())
