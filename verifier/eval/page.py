"""`eval.html`: the sweep as the articles laid it out, and each check's pass rate over epochs.

The contact sheet has a row per prompt format × seed (× strength where
there are several) and a column per epoch; each cell is the sample's
thumbnail (from `reports/thumbs/`, so the folder travels whole, like the
verify page) with its failed and unknown checks under it. The chart is an
inline SVG: one line per check, the recommended epoch marked. Every user
string (tags, prompts, file names) is escaped, never markup.
"""

from __future__ import annotations

import html
from pathlib import Path

from verifier.core.report import reports_dir
from verifier.core.thumbs import thumb
from verifier.eval.evaluate import EvalRun, Scored
from verifier.eval.findings import Findings
from verifier.eval.report import EVAL_HTML, _atomic, check_names
from verifier.eval.stats import FAIL, UNKNOWN

STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
table.sheet{border-collapse:collapse}.sheet th,.sheet td{border:1px solid #ddd;padding:4px;vertical-align:top}
.sheet td{background:#fff;width:170px;font-size:12px}.sheet img{max-width:160px;max-height:200px;display:block}
.fail{color:#c22}.unknown{color:#a3a}.pass{color:#2a7}.best{background:#eef6ff}
.warn{color:#a50}ul{padding-left:1.2em}
"""
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
DASHES = ("", "7 4", "2 3", "9 3 2 3")


def _e(text: object) -> str:
    return html.escape(str(text))


def _cell(root: Path, s: Scored) -> str:
    name = thumb(reports_dir(root), root / s.image, s.image_sha)
    pic = f'<img src="{_e(name)}" alt="{_e(s.image)}">' if name else '<div class="fail">cannot read the image</div>'
    failed = [f'<span class="fail">✗ {_e(n)}</span>' for n, r in s.results.items() if r == FAIL]
    unknown = [f'<span class="unknown">? {_e(n)}</span>' for n, r in s.results.items() if r == UNKNOWN]
    passed = sum(1 for r in s.results.values() if r not in (FAIL, UNKNOWN))
    marks = "<br>".join([*failed, *unknown]) or '<span class="pass">all checks pass</span>'
    return f'<td title="{_e(s.sample.prompt)}">{pic}{passed}/{len(s.results)} pass<br>{marks}</td>'


def sheet(root: Path, run: EvalRun, found: Findings) -> str:
    epochs = list(found.epochs)
    strengths = {s.sample.strength for s in run.scored if s.sample.epoch}
    rows: dict[tuple, dict[int, Scored]] = {}
    for s in sorted(run.scored, key=lambda s: (s.label, s.sample.seed or 0, s.sample.strength, s.image)):
        key = (s.label, s.sample.seed, s.sample.strength if len(strengths) > 1 and s.sample.epoch else None)
        rows.setdefault(key, {}).setdefault(s.sample.epoch, s)
    head = "".join(f'<th class="{"best" if e == found.recommended else ""}">'
                   f'{"ep0 (no LoRA)" if e == 0 else f"ep{e}"}</th>' for e in epochs)
    body = []
    for (label, seed, strength), cells in rows.items():
        name = f"{_e(label)} · seed {_e(seed)}" + (f" · strength {strength:g}" if strength is not None else "")
        tds = "".join(_cell(root, cells[e]) if e in cells else "<td>–</td>" for e in epochs)
        body.append(f"<tr><th>{name}</th>{tds}</tr>")
    return f'<table class="sheet"><tr><th>prompt · seed</th>{head}</tr>{"".join(body)}</table>'


def chart(found: Findings, width: int = 720, height: int = 300) -> str:
    """Each check's pass rate (of its known checks) over the epochs; the recommended epoch marked."""
    epochs = list(found.epochs)
    names = check_names(found)
    if not epochs or not names:
        return "<p>nothing to chart</p>"
    left, right, top, bottom = 50, 20, 20, 40
    span = max(len(epochs) - 1, 1)

    def x(i: int) -> float:
        return left + (width - left - right) * i / span

    def y(rate: float) -> float:
        return top + (height - top - bottom) * (1 - rate)

    parts = [f'<line x1="{left}" y1="{y(r)}" x2="{width - right}" y2="{y(r)}" stroke="#ddd"/>'
             f'<text x="{left - 6}" y="{y(r) + 4}" text-anchor="end" font-size="11">{r:.0%}</text>'
             for r in (0, 0.5, 1)]
    for i, e in enumerate(epochs):
        label = "base" if e == 0 else f"ep{e}"
        parts.append(f'<text x="{x(i)}" y="{height - bottom + 16}" text-anchor="middle" font-size="11">{label}</text>')
        if e == found.recommended:
            parts.append(f'<line x1="{x(i)}" y1="{top}" x2="{x(i)}" y2="{height - bottom}" stroke="#224" '
                         f'stroke-dasharray="4 3"/><text x="{x(i)}" y="{top - 6}" text-anchor="middle" '
                         f'font-size="11">recommended</text>')
    legend = []
    for k, name in enumerate(names):
        colour = COLOURS[k % len(COLOURS)]
        dash = DASHES[k % len(DASHES)]
        points = [(x(i), y(c.passed / c.known), e, c) for i, e in enumerate(epochs)
                  if (c := found.epochs[e].checks.get(name)) is not None and c.known]
        if points:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in points)
            # lines on the same rates hide each other: each its own dash, and every point says its counts
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}" '
                         f'points="{path}"><title>{_e(name)}</title></polyline>')
            parts += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{colour}"><title>{_e(name)} '
                      f'{"baseline" if e == 0 else f"ep{e}"}: {c.passed} of {c.known} known pass'
                      f'{f", {c.unknown} unknown" if c.unknown else ""}</title></circle>' for px, py, e, c in points]
        legend.append(f'<span style="color:{colour}">■</span> {_e(name)}')
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">{"".join(parts)}</svg>'
    return svg + f'<p>{" &nbsp; ".join(legend)}</p>'


def write_page(root: Path, run: EvalRun, found: Findings, skipped: dict[str, str]) -> Path:
    warnings = "".join(f'<li class="warn">{_e(w)}</li>' for w in found.warnings) or "<li>none</li>"
    details = "".join(f"<li>{_e(line)}</li>" for line in found.details())
    left_out = "".join(f"<li>{_e(i)}: {_e(w)}</li>" for i, w in {**skipped, **run.unreadable}.items())
    page = (f'<!doctype html><html><head><meta charset="utf-8"><title>capcheck eval</title><style>{STYLE}</style>'
            f"</head><body><h1>capcheck eval</h1><p><b>{_e(found.recommendation())}</b></p>"
            f"<ul>{details}</ul><h2>warnings</h2><ul>{warnings}</ul>"
            f"<h2>pass rate per check</h2>{chart(found)}<h2>samples</h2>{sheet(root, run, found)}"
            + (f"<h2>left out</h2><ul>{left_out}</ul>" if left_out else "")
            + f"<p>{len(run.scored)} samples · {_e(run.backend)}/{_e(run.model)}</p></body></html>\n")
    target = reports_dir(root) / EVAL_HTML
    target.parent.mkdir(parents=True, exist_ok=True)
    _atomic(target, page)
    return target
