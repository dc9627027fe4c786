"""Verify reports: the summary, `<run>.jsonl` and `<run>.html` (a contact sheet).

Written to `DATASET/.capcheck/reports/`, with `latest.jsonl` / `latest.html`
as copies of the newest (copies, not links: they work on every file system
and survive a zip of the dataset), and the pictures as thumbnails in
`reports/thumbs/`: the folder is self-contained, so it can be moved or sent.
The HTML itself is `report_page.py`.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from captions.journal import atomic_write
from captions.policy import Policy
from verifier.core.observation import Observation
from verifier.core.report_page import agreement_page, render_html
from verifier.core.results import ItemResult, RunResult
from verifier.core.store import Store
from verifier.core.tag_report import RunTags, run_tags
from verifier.core.thumbs import reports_dir, thumb
from verifier.core.verdict import ERROR, FixItem, Verdict
from verifier.errors import ReportError


def fix_groups(results: list[ItemResult]) -> list[tuple[str, str, str | None, int, int]]:
    """(aspect, image shows, caption says, how many, how many borderline), most common first."""
    counts: Counter[tuple[str, str, str | None]] = Counter()
    borderline: Counter[tuple[str, str, str | None]] = Counter()
    for r in results:
        for f in r.verdict.fixes:
            counts[(f.aspect, f.image, f.caption)] += 1
            borderline[(f.aspect, f.image, f.caption)] += f.borderline
    return [(a, i, c, n, borderline[(a, i, c)]) for (a, i, c), n in counts.most_common()]


def line(r: ItemResult, run: RunResult, tags: RunTags | None = None) -> dict:
    v = r.verdict
    extra = {"tags": entry} if tags is not None and (entry := tags.line(r.image)) is not None else {}
    return {**extra,
        "image": r.image, "status": v.status, "fixes": [f.as_dict() for f in v.fixes],
        "observation": v.observation.as_dict() if v.observation else None, "claims": v.claims,
        "backend": run.backend, "model": run.model, "protocol": run.protocol, "attempts": r.attempts,
        "latency_s": round(r.latency_s, 3) if r.latency_s is not None else None,
        "error": v.reason if v.status == ERROR else None, "reason": v.reason, "source": r.source,
        "image_sha": r.image_sha, "caption_sha": r.caption_sha, "run": run.run_id,
        "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens, "raw": r.raw,
    }


def free_stem(folder: Path, run_id: int) -> str:
    """`run-NNNN` for the run, or the next number no report holds yet: a report
    that exists is never overwritten (a store started over numbers its runs
    from 1 again, and those old reports are a person's record)."""
    number = run_id
    while any(folder.glob(f"run-{number:04d}.*")):
        number += 1
    return f"run-{number:04d}"


def write_reports(root: Path, run: RunResult, policy: Policy | None = None,
                  agreements: list | None = None) -> tuple[Path, Path]:
    folder = reports_dir(root)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(folder, f"cannot make the reports folder: {exc.strerror or exc}") from None
    stem = free_stem(folder, run.run_id)
    jsonl = folder / f"{stem}.jsonl"
    page = folder / f"{stem}.html"
    tags = run_tags(run.results)
    atomic_write(jsonl, "".join(json.dumps(line(r, run, tags), ensure_ascii=False) + "\n" for r in run.results))
    _write_page(root, run, policy, agreements, page, tags)
    copies = [(jsonl, "latest.jsonl"), (page, "latest.html")]
    if tags:
        # The run's trust rates: how readily this model says yes, how often it disagrees.
        summary = folder / f"{stem}.tags.json"
        atomic_write(summary, json.dumps({**tags.rates.as_dict(), "mismatched": tags.mismatched,
                                          "likely_swaps": sorted({tuple(sorted(p)) for p in tags.swaps.items()}),
                                          "not_asked": tags.not_asked_json()}, indent=1, ensure_ascii=False) + "\n")
        copies.append((summary, "latest.tags.json"))
    for src, name in copies:  # whole or not at all, like the reports themselves (a full disk)
        with open(src, encoding="utf-8", newline="") as fh:
            atomic_write(folder / name, fh.read())
    return jsonl, page


def refresh_latest_page(root: Path, policy: Policy | None, agreements: list | None = None) -> Path | None:
    """Render `latest.html` again from `latest.jsonl` after a person settled
    images (ingest), so it shows their answers; None when there is no report."""
    source = reports_dir(root) / "latest.jsonl"
    if not source.exists():
        return None
    page = reports_dir(root) / "latest.html"
    try:
        run = run_from_lines(read_report(source))
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportError(source, f"not a capcheck report ({type(exc).__name__}: {exc})") from None
    _write_page(root, run, policy, agreements, page)
    return page


def _write_page(root: Path, run: RunResult, policy: Policy | None, agreements: list | None, page: Path,
                tags: RunTags | None = None) -> None:
    with Store(root) as store:  # what a person settled (ingest) outranks the model's stale call
        settled = {r.image_sha: store.human_answers(r.image_sha) for r in run.results}
    thumbs = {r.image_sha: thumb(page.parent, Path(root) / r.image, r.image_sha) for r in run.results}
    thumbs.update(_disagreement_thumbs(root, agreements or []))
    atomic_write(page, render_html(root, run, policy, agreements, settled, thumbs, tags))


def run_from_lines(lines: list[dict]) -> RunResult:
    """A run as its report recorded it (what the pages need; no timings)."""
    results = [ItemResult(x["image"], x["image_sha"], x["caption_sha"], Verdict(
        x["status"], tuple(FixItem(**f) for f in x.get("fixes", [])), x.get("reason"),
        Observation.from_dict(x["observation"]) if x.get("observation") else None, x.get("claims") or {}),
        x.get("source", "store")) for x in lines]
    first = lines[0] if lines else {}
    return RunResult(first.get("run", 0), first.get("backend", ""), first.get("model", ""), first.get("protocol", ""),
                     results, {}, 0.0, 0, 0)


def read_report(path: Path) -> list[dict]:
    """A report's lines; ReportError names the file and the bad line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(path, "no such report (run `capcheck verify` first)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(path, f"cannot read: {exc}") from None
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.strip():
            try:
                out.append(json.loads(raw))
            except json.JSONDecodeError as exc:
                raise ReportError(path, f"line {number}: not JSON ({exc.msg})") from None
    return out


def write_agreement(root: Path, agreements: list) -> Path:
    """`agreement.json` and `agreement.html` (each disagreement with its thumbnail); returns the page."""
    folder = reports_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "agreement.json", json.dumps([a.as_dict() for a in agreements], indent=1) + "\n")
    page = folder / "agreement.html"
    atomic_write(page, agreement_page(agreements, _disagreement_thumbs(root, agreements)))
    return page


def _disagreement_thumbs(root: Path, agreements: list) -> dict[str, str | None]:
    return {d.image_sha: thumb(reports_dir(root), Path(root) / d.image, d.image_sha)
            for a in agreements for d in a.disagreements}
