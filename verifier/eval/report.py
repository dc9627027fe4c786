"""The eval report: `eval.json` and the console table, beside the store.

Written to `<eval folder>/.capcheck/reports/eval.json` (and `eval.html`,
see `page.py`): with `--config` the eval folder is `output_dir/eval/`,
with `--samples DIR` it is DIR. The JSON holds every count the console
shows, so a script reads the same numbers a person does.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from rich.table import Table
from rich.text import Text

from verifier.core.report import reports_dir
from verifier.eval.evaluate import EvalRun
from verifier.eval.findings import Findings
from verifier.eval.stats import ALPHA, TEST, Counts

EVAL_JSON, EVAL_HTML = "eval.json", "eval.html"


def _counts(c: Counts) -> dict:
    return {**c.as_dict(), "score": c.score}


def as_json(run: EvalRun, found: Findings, skipped: dict[str, str]) -> dict:
    return {
        "recommended_epoch": found.recommended,
        "tied_epochs": found.tied,
        "recommendation": found.recommendation(),
        "test": TEST, "alpha": ALPHA, "seeds": found.seeds,
        "comparisons": [{"epoch": c.other, "against": c.best, "pass": c.other_counts[0], "known": c.other_counts[1],
                         "best_pass": c.best_counts[0], "best_known": c.best_counts[1], "p": c.p,
                         "seeds_needed": c.seeds_needed, "line": c.line(found.seeds)} for c in found.comparisons],
        "warnings": found.warnings,
        "epochs": [{"epoch": n, "samples": e.samples, "score": e.score, **e.total.as_dict(),
                    "checks": {name: c.as_dict() for name, c in e.checks.items()},
                    "formats": {name: _counts(c) for name, c in sorted(e.formats.items())}}
                   for n, e in found.epochs.items()],
        "samples": [{"image": s.image, "epoch": s.sample.epoch, "format": s.label, "seed": s.sample.seed,
                     "strength": s.sample.strength, "lora": s.sample.lora, "source": s.sample.source,
                     "prompt": s.sample.prompt, "status": s.status, "reason": s.reason, "answer": s.source,
                     "checks": s.results} for s in sorted(run.scored, key=lambda s: (s.sample.epoch, s.image))],
        "skipped": skipped, "unreadable": run.unreadable,
        "backend": run.backend, "model": run.model, "requests": run.requests, "asked": run.asked,
        "pending": run.pending,
    }


def write_json(root: Path, data: dict) -> Path:
    folder = reports_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / EVAL_JSON
    _atomic(target, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return target


def _atomic(path: Path, text: str) -> None:
    """All or nothing: a reader never sees half a report."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_names(found: Findings) -> list[str]:
    names: dict[str, None] = {}
    for e in found.epochs.values():
        names.update(dict.fromkeys(e.checks))
    return list(names)


def table(found: Findings) -> Table:
    """Epochs × checks: passes of known checks per cell (and the unknowns), then the epoch's score."""
    t = Table(title="eval: checks passed of known, per epoch", title_justify="left")
    t.add_column("epoch")
    t.add_column("samples", justify="right")
    names = check_names(found)
    for name in names:
        t.add_column(Text(name), justify="right")
    t.add_column("score", justify="right")
    for n, e in found.epochs.items():
        label = "ep0 (no LoRA)" if n == 0 else f"ep{n}" + (" *" if n == found.recommended else "")
        cells = [_cell(e.checks[name]) if name in e.checks else Text("–") for name in names]
        score = f"{e.total.words()} {e.score:.0%}" if e.score is not None else f"{e.total.words()} –"
        t.add_row(Text(label), str(e.samples), *cells, Text(score))
    return t


def format_table(found: Findings) -> Table | None:
    """Epochs × prompt formats (K, KT, N): where one format hides what another shows. None with one format."""
    formats = sorted({f for e in found.epochs.values() for f in e.formats})
    if len(formats) < 2:
        return None
    t = Table(title="per prompt format: checks passed of known", title_justify="left")
    t.add_column("epoch")
    for name in formats:
        t.add_column(Text(name), justify="right")
    for n, e in found.epochs.items():
        t.add_row(Text("ep0 (no LoRA)" if n == 0 else f"ep{n}"),
                  *[_cell(e.formats[f]) if f in e.formats else Text("–") for f in formats])
    return t


def _cell(c: Counts) -> Text:
    return Text(c.words() + (f" ?{c.unknown}" if c.unknown else ""))


def summary_lines(run: EvalRun, found: Findings, skipped: dict[str, str], json_path: Path, html_path: Path
                  ) -> list[str]:
    """What follows the table: the run, the recommendation, the comparisons, the warnings, where the report is."""
    n = len(run.scored)
    lines = [f"capcheck eval: {n} samples · {run.asked} asked, {n - run.asked} from the store · {run.requests} "
             f"requests · {run.backend}/{run.model}"]
    lines += [f"skipped {image}: {why}" for image, why in skipped.items()]
    lines += [f"skipped {image}: {why}" for image, why in run.unreadable.items()]
    if run.pending:
        lines.append(f"pending: {run.pending} samples wait for a batch's answers (not counted)")
    lines += [f"  {line}" for line in found.details()]
    lines += [f"warning: {w}" for w in found.warnings]
    lines.append(found.recommendation())
    lines.append(f"report: {json_path}\n        {html_path}")
    return lines
