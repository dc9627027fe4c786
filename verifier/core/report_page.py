"""The HTML pages of a verify run: the contact sheet and the agreement page.

Pure functions from the run (and what a person settled) to HTML. Pictures
are the thumbnails in `reports/thumbs/` (see `thumbs.py`), referenced
relative to the reports folder, so a moved or sent folder keeps them.

A person's folder sort outranks the model: once `ingest` recorded an answer
for an aspect, that aspect's card shows the person's value, and an image
whose every disputed aspect a person settled is shown `settled`, not the
model's stale `fix`.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from urllib.parse import quote

from captions.caption import parse
from captions.dataset import caption_path
from captions.facts import Facts, facts_from_caption
from captions.journal import read_caption
from captions.policy import Policy
from verifier.core.results import ItemResult, RunResult
from verifier.core.tag_report import RunTags, card_html, run_tags
from verifier.core.verdict import ERROR, FIX, REFUSED, STATUSES, FixItem

SETTLED = "settled"  # shown instead of the model's status once a person answered what was in dispute

STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
.bar button{margin-right:.4em;padding:.3em .8em;border:1px solid #aaa;border-radius:4px;background:#fff;cursor:pointer}
.bar button[aria-pressed=true]{background:#224;color:#fff;border-color:#224}
#showing{color:#555;margin:.5em 0 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:12px;margin-top:1em}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px}
.card img{max-width:100%;max-height:320px;display:block;margin:auto}
.card pre{white-space:pre-wrap;font-size:12px;background:#f4f4f4;padding:6px}
.noimg{color:#a00;text-align:center;padding:2em 0}
.st{font-weight:bold;text-transform:uppercase}.ok{color:#2a7}.fix{color:#c60}.refused{color:#a3a}.error{color:#c22}
.settled{color:#26c}.person{color:#26c;font-weight:bold}.overruled{color:#888}
mark{background:#ffd54f}
del{color:#c22}ins{color:#27a;text-decoration:none;font-style:italic}.swap{color:#c22;font-weight:bold}
.cm td,.cm th{border:1px solid #ccc;padding:2px 8px;text-align:right}
.dis{display:flex;flex-wrap:wrap;gap:10px;list-style:none;padding:0}
.dis li{background:#fff;border:1px solid #ddd;border-radius:6px;padding:6px;width:180px;font-size:12px}
.dis li div{word-break:break-all}
.dis img{max-width:100%;max-height:200px;display:block;margin:auto}
"""
# The active filter is pressed, named under the bar and kept in the address
# (#fix), so a reload or a shared link opens the same view.
SCRIPT = """
function show(s){
  let n=0, total=0;
  document.querySelectorAll('.card').forEach(c=>{total++;c.hidden=(s!=='all'&&c.dataset.status!==s);if(!c.hidden)n++;});
  document.querySelectorAll('.bar button').forEach(b=>b.setAttribute('aria-pressed',String(b.dataset.show===s)));
  document.getElementById('showing').textContent=(s==='all'?'showing all: ':'showing only '+s+': ')+n+' of '+total;
  try{history.replaceState(null,'',s==='all'?location.pathname:'#'+s);}catch(e){}
}
addEventListener('DOMContentLoaded',()=>{const s=location.hash.slice(1);
  if(s&&document.querySelector('.bar button[data-show="'+s+'"]'))show(s);});
"""


def highlight(text: str, words: list[str]) -> str:
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


def value_words(policy: Policy | None, aspect: str, value: str | None) -> list[str]:
    """The words a caption uses for `value`: the value, its tags, its phrase."""
    if value is None:
        return []
    spec = policy.aspect(aspect) if policy else None
    words = [value]
    if spec and value in spec.values:
        found = spec.values[value]
        words += [*found.tags, *([found.phrase] if found.phrase else [])]
    return words


def shown_status(r: ItemResult, people: dict[str, str], says: dict) -> str:
    """The model's status, or `settled` once a person answered everything in
    dispute and the caption now says what they said (`says`: the caption's
    facts as it reads today, the way the training gate counts it)."""
    v = r.verdict
    if not people:
        return v.status
    if v.status == FIX and all(_overruled(f, people, says) for f in v.fixes):
        return SETTLED
    if v.status in (REFUSED, ERROR) and all(says.get(a) == value for a, value in people.items()):
        return SETTLED
    return v.status


def _overruled(f: FixItem, people: dict[str, str], says: dict) -> bool:
    """The person answered this aspect and the caption says what they said."""
    return f.aspect in people and says.get(f.aspect) == people[f.aspect]


def caption_facts(text: str | None, policy: Policy | None, claims: dict) -> Facts | dict:
    """What the caption claims today (it may have been fixed since the run);
    the claims recorded with the verdict when there is no policy or caption."""
    if text is None or policy is None:
        return claims
    return facts_from_caption(parse(text), policy)


def picture(src: str | None, alt: str) -> str:
    if src is None:
        return f'<div class="noimg">no picture: {html.escape(alt)} could not be read</div>'
    return f'<img loading="lazy" src="{quote(src)}" alt="{html.escape(alt)}">'


def _card(r: ItemResult, status: str, text: str, says: dict, policy: Policy | None, people: dict[str, str],
          thumb: str | None, tags: str = "") -> str:
    v = r.verdict
    items, words = [], []
    for f in v.fixes:
        if _overruled(f, people, says):
            person = html.escape(people[f.aspect])
            items.append(f'<li class="overruled"><s>{html.escape(str(f))}</s> (the person: {person})</li>')
        else:
            items.append(f"<li>{html.escape(str(f))}</li>")
            words += value_words(policy, f.aspect, f.caption)
    said = "".join(f'<p class="person">a person sorted it: {html.escape(a)} {html.escape(value)}</p>'
                   for a, value in sorted(people.items()))
    reason = f"<p>{html.escape(v.reason)}</p>" if v.reason and status != SETTLED else ""
    return (f'<div class="card" data-status="{status}">{picture(thumb, r.image)}'
            f'<div><span class="st {status}">{status}</span> {html.escape(r.image)}</div>'
            f"{said}<ul>{''.join(items)}</ul>{reason}{tags}<pre>{highlight(text, words)}</pre></div>")


def render_html(root: Path, run: RunResult, policy: Policy | None = None, agreements: list | None = None,
                settled: dict[str, dict[str, str]] | None = None, thumbs: dict[str, str | None] | None = None,
                tags: RunTags | None = None) -> str:
    """The contact sheet. `settled`: image sha -> the person's answers (aspect -> value);
    `thumbs`: image sha -> thumbnail path relative to the reports folder; `tags`: the tags audit."""
    settled, thumbs = settled or {}, thumbs or {}
    tags = tags if tags is not None else run_tags(run.results)
    cards, statuses = [], []
    for r in run.results:
        text = read_caption(caption_path(Path(root) / r.image))
        people = settled.get(r.image_sha, {})
        says = caption_facts(text, policy, r.verdict.claims) if people else r.verdict.claims
        statuses.append(shown_status(r, people, says))
        cards.append(_card(r, statuses[-1], text or "", says, policy, people, thumbs.get(r.image_sha),
                           card_html(tags.audits.get(r.image), tags.line(r.image))))
    shown = [*STATUSES, *([SETTLED] if SETTLED in statuses else [])]
    buttons = [f"<button data-show=all aria-pressed=true onclick=\"show('all')\">all {len(run.results)}</button>"]
    buttons += [f"<button data-show={s} aria-pressed=false onclick=\"show('{s}')\">{s} {statuses.count(s)}</button>"
                for s in shown]
    title = f"capcheck verify run {run.run_id}: {run.backend} / {run.model} ({run.protocol})"
    return (f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title><style>{STYLE}</style>"
            f"<script>{SCRIPT}</script><h1>{html.escape(title)}</h1>"
            f"<div class=bar>{''.join(buttons)}<p id=showing>showing all: {len(run.results)} of {len(run.results)}"
            f"</p></div>{tags.summary_html() if tags else ''}{agreement_html(agreements or [], thumbs)}"
            f"<div class=grid>{''.join(cards)}</div>\n")


def agreement_html(agreements: list, thumbs: dict[str, str | None]) -> str:
    """Per aspect: the confusion matrix (rows: the person, columns: the model),
    accuracy, Cohen's kappa, and each disagreeing image with its thumbnail."""
    parts = []
    for a in agreements:
        head = "".join(f"<th>{html.escape(b)}</th>" for b in a.labels)
        rows = "".join(
            f"<tr><th>{html.escape(p)}</th>" + "".join(f"<td>{a.matrix.get((p, m), 0) or ''}</td>" for m in a.labels)
            + "</tr>" for p in a.labels)
        listed = "".join(
            f"<li>{picture(thumbs.get(d.image_sha), d.image)}<div>{html.escape(d.image)}</div>"
            f"<div>person <b>{html.escape(d.person)}</b>, model <b>{html.escape(d.model)}</b></div></li>"
            for d in a.disagreements)
        parts.append(
            f"<h2>agreement on {html.escape(a.aspect)}: {html.escape(a.backend)}/{html.escape(a.model)} vs the person"
            f"</h2><p>{a.n} images · accuracy {a.accuracy:.1%} · Cohen's kappa {a.kappa:.3f} · "
            f"{len(a.disagreements)} disagreement(s)</p>"
            f"<table class=cm><tr><th>person \\ model</th>{head}</tr>{rows}</table><ul class=dis>{listed}</ul>")
    return "".join(parts)


def agreement_page(agreements: list, thumbs: dict[str, str | None]) -> str:
    return (f"<!doctype html><meta charset=utf-8><title>capcheck agreement</title><style>{STYLE}</style>"
            f"<h1>capcheck agreement</h1>{agreement_html(agreements, thumbs)}\n")
