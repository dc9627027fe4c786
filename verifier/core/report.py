"""Verify reports: the summary, `<run>.jsonl` and `<run>.html` (a contact sheet).

Written to `DATASET/.capcheck/reports/`, with `latest.jsonl` / `latest.html`
as copies of the newest (copies, not links: they work on every file system
and survive a zip of the dataset).
"""

from __future__ import annotations

import html
import json
import re
import shutil
from collections import Counter
from pathlib import Path
from urllib.parse import quote

from captions.dataset import caption_path
from captions.journal import atomic_write, read_caption
from captions.policy import Policy
from verifier.core.store import STATE_DIR
from verifier.core.tag_report import RunTags, card_html, run_tags
from verifier.core.verdict import ERROR, STATUSES
from verifier.core.verify import ItemResult, RunResult
from verifier.errors import ReportError

REPORTS = "reports"


def reports_dir(root: Path) -> Path:
    return Path(root) / STATE_DIR / REPORTS


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


def write_reports(root: Path, run: RunResult, policy: Policy | None = None,
                  agreements: list | None = None) -> tuple[Path, Path]:
    folder = reports_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"run-{run.run_id:04d}"
    jsonl = folder / f"{stem}.jsonl"
    page = folder / f"{stem}.html"
    tags = run_tags(run.results)
    atomic_write(jsonl, "".join(json.dumps(line(r, run, tags), ensure_ascii=False) + "\n" for r in run.results))
    atomic_write(page, render_html(root, run, policy, agreements, tags))
    copies = [(jsonl, "latest.jsonl"), (page, "latest.html")]
    if tags:
        # The run's trust rates: how readily this model says yes, how often it disagrees.
        summary = folder / f"{stem}.tags.json"
        atomic_write(summary, json.dumps({**tags.rates.as_dict(), "mismatched": tags.mismatched,
                                          "likely_swaps": sorted({tuple(sorted(p)) for p in tags.swaps.items()})},
                                         indent=1) + "\n")
        copies.append((summary, "latest.tags.json"))
    for src, name in copies:
        shutil.copyfile(src, folder / name)
    return jsonl, page


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


def _highlight(text: str, words: list[str]) -> str:
    """HTML of `text` with every occurrence of `words` marked."""
    spans: list[tuple[int, int]] = []
    for word in sorted({w for w in words if w}, key=len, reverse=True):
        for m in re.finditer(r"(?<![\w-])" + re.escape(word) + r"(?![\w-])", text, re.I):
            if not any(s < m.end() and m.start() < e for s, e in spans):
                spans.append((m.start(), m.end()))
    out, at = [], 0
    for s, e in sorted(spans):
        out += [html.escape(text[at:s]), "<mark>", html.escape(text[s:e]), "</mark>"]
        at = e
    out.append(html.escape(text[at:]))
    return "".join(out)


def _disputed_words(r: ItemResult, policy: Policy | None) -> list[str]:
    words: list[str] = []
    for f in r.verdict.fixes:
        spec = policy.aspect(f.aspect) if policy else None
        if f.caption is None:
            continue
        words.append(f.caption)
        if spec and f.caption in spec.values:
            value = spec.values[f.caption]
            words += [*value.tags, *([value.phrase] if value.phrase else [])]
    return words


_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
.bar button{margin-right:.4em;padding:.3em .8em}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:12px;margin-top:1em}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px}
.card img{max-width:100%;max-height:320px;display:block;margin:auto}
.card pre{white-space:pre-wrap;font-size:12px;background:#f4f4f4;padding:6px}
.st{font-weight:bold;text-transform:uppercase}.ok{color:#2a7}.fix{color:#c60}.refused{color:#a3a}.error{color:#c22}
mark{background:#ffd54f}
del{color:#c22}ins{color:#27a;text-decoration:none;font-style:italic}.swap{color:#c22;font-weight:bold}
.cm td,.cm th{border:1px solid #ccc;padding:2px 8px;text-align:right}
"""
_SCRIPT = """
function show(s){document.querySelectorAll('.card').forEach(c=>{c.hidden=(s!=='all'&&c.dataset.status!==s)});}
"""


def agreement_html(agreements: list) -> str:
    """Per aspect: the confusion matrix (rows: the person, columns: the model),
    accuracy, Cohen's kappa and the disagreeing images."""
    parts = []
    for a in agreements:
        head = "".join(f"<th>{html.escape(b)}</th>" for b in a.labels)
        rows = "".join(
            f"<tr><th>{html.escape(p)}</th>" + "".join(f"<td>{a.matrix.get((p, m), 0) or ''}</td>" for m in a.labels)
            + "</tr>" for p in a.labels)
        listed = "".join(f"<li>{html.escape(i)}: person {html.escape(p)}, model {html.escape(m)}</li>"
                         for i, p, m in a.disagreements)
        parts.append(
            f"<h2>agreement on {html.escape(a.aspect)}: {html.escape(a.backend)}/{html.escape(a.model)} vs the person"
            f"</h2><p>{a.n} images · accuracy {a.accuracy:.1%} · Cohen's kappa {a.kappa:.3f}</p>"
            f"<table class=cm><tr><th>person \\ model</th>{head}</tr>{rows}</table><ul>{listed}</ul>")
    return "".join(parts)


def agreement_page(agreements: list) -> str:
    return (f"<!doctype html><meta charset=utf-8><title>capcheck agreement</title><style>{_STYLE}</style>"
            f"<h1>capcheck agreement</h1>{agreement_html(agreements)}\n")


def render_html(root: Path, run: RunResult, policy: Policy | None = None, agreements: list | None = None,
                tags: RunTags | None = None) -> str:
    tags = tags if tags is not None else run_tags(run.results)
    counts = {s: run.count(s) for s in STATUSES}
    buttons = [f"<button onclick=\"show('all')\">all {len(run.results)}</button>"]
    buttons += [f"<button onclick=\"show('{s}')\">{s} {n}</button>" for s, n in counts.items()]
    cards = []
    for r in run.results:
        text = read_caption(caption_path(Path(root) / r.image)) or ""
        items = "".join(f"<li>{html.escape(str(f))}</li>" for f in r.verdict.fixes)
        reason = f"<p>{html.escape(r.verdict.reason)}</p>" if r.verdict.reason else ""
        cards.append(
            f'<div class="card" data-status="{r.verdict.status}">'
            f'<img loading="lazy" src="../../{quote(r.image)}" alt="{html.escape(r.image)}">'
            f'<div><span class="st {r.verdict.status}">{r.verdict.status}</span> {html.escape(r.image)}</div>'
            f"<ul>{items}</ul>{reason}{card_html(tags.audits.get(r.image), tags.line(r.image))}"
            f"<pre>{_highlight(text, _disputed_words(r, policy))}</pre></div>")
    title = f"capcheck verify run {run.run_id}: {run.backend} / {run.model} ({run.protocol})"
    return (f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title><style>{_STYLE}</style>"
            f"<script>{_SCRIPT}</script><h1>{html.escape(title)}</h1>"
            f"<div class=bar>{''.join(buttons)}</div>{tags.summary_html() if tags else ''}"
            f"{agreement_html(agreements or [])}"
            f"<div class=grid>{''.join(cards)}</div>\n")
