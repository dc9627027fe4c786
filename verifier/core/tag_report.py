"""The tags audit of a finished run: per image, the run's trust rates, the likely swaps.

Read from the stored verdicts (claims + observation), so a report written
from the store says the same as the run that asked.
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from captions.visual import CAP, WHY
from verifier.core.tags import MAX_ASKED, TAGS, TagAudit, TrustRates, result_audit, run_swaps, trust_rates
from verifier.core.verdict import MISMATCH

SHOWN = 8  # tokens named per reason in the summary line (all of them in tags.json)


@dataclass
class RunTags:
    audits: dict[str, TagAudit] = field(default_factory=dict)  # image -> its audit
    mismatched: list[str] = field(default_factory=list)
    swaps: dict[str, str] = field(default_factory=dict)  # image -> the image whose caption it likely carries
    rates: TrustRates = field(default_factory=lambda: trust_rates([]))

    def __bool__(self) -> bool:
        return bool(self.audits)

    def line(self, image: str) -> dict | None:
        """The report line's `tags` entry for one image."""
        a = self.audits.get(image)
        if a is None:
            return None
        return {"checked": a.claimed, "refuted": a.refuted, "suggested": a.suggested, "undetermined": a.undetermined,
                "not_asked": a.not_asked, "mismatch": image in self.mismatched, "likely_swap": self.swaps.get(image)}

    def not_asked(self) -> dict[str, Counter]:
        """why -> tag -> the captions that have it, over the run (a key of captions.visual.WHY)."""
        out: dict[str, Counter] = defaultdict(Counter)
        for a in self.audits.values():
            for tag, why in a.not_asked.items():
                out[why][tag] += 1
        return dict(out)

    def not_asked_json(self) -> dict:
        return {why: {"why": WHY.get(why, why), "tags": dict(tags.most_common())}
                for why, tags in self.not_asked().items()}

    def not_asked_lines(self) -> list[str]:
        """Which tokens were never asked about, and why: `kanachan (trigger), 1girl, solo (count)`."""
        groups = self.not_asked()
        out = []
        parts = []
        for why, tags in sorted(groups.items(), key=lambda kv: -sum(kv[1].values())):
            if why == CAP:
                continue
            names = [t for t, _ in tags.most_common(SHOWN)]
            more = f" +{len(tags) - SHOWN} more" if len(tags) > SHOWN else ""
            parts.append(f"{', '.join(names)}{more} ({why})")
        if parts:
            captions = sum(1 for a in self.audits.values() if any(w != CAP for w in a.not_asked.values()))
            tokens = sum(len(tags) for why, tags in groups.items() if why != CAP)
            out.append(f"tags not asked ({tokens} tokens in {captions} of {len(self.audits)} captions; no model "
                       f"can see them as a fact of the image, and apply never removes them): {'; '.join(parts)}")
        if CAP in groups:
            over = [a for a in self.audits.values() if CAP in a.not_asked.values()]
            n = sum(1 for a in over for w in a.not_asked.values() if w == CAP)
            out.append(f"tags not asked past the cap of {MAX_ASKED} per image: {n} tags in {len(over)} caption(s) "
                       "(the first ones in caption order were asked)")
        return out

    def summary_lines(self) -> list[str]:
        out = [self.rates.line(), *self.not_asked_lines()]
        pairs = sorted({tuple(sorted(p)) for p in self.swaps.items()})
        out += [f"likely swap: {a} <-> {b} (each image fits the other's caption)" for a, b in pairs]
        out += [f"mismatch: {i}: the caption may belong to another image (routed to a person)"
                for i in self.mismatched if i not in self.swaps]
        suggested = sum(len(a.suggested) for a in self.audits.values())
        if suggested:
            out.append(f"tag suggestions (probes the model called present; never applied): {suggested}")
        return out

    def summary_html(self) -> str:
        return "".join(f"<p class=tags>{html.escape(s)}</p>" for s in self.summary_lines())


def run_tags(results) -> RunTags:
    """The tags audit of every result that has one (results: ItemResult-like, with .image and .verdict)."""
    out = RunTags()
    answers: dict[str, tuple[TagAudit, dict[str, str]]] = {}
    for r in results:
        v = r.verdict
        a = result_audit(v.claims or {}, v.observation.tags if v.observation else None)
        if a is None:
            continue
        out.audits[r.image] = a
        answers[r.image] = (a, v.observation.tags or {})
        if (v.reason or "").startswith(MISMATCH):
            out.mismatched.append(r.image)
    out.swaps = run_swaps(answers, set(out.mismatched))
    out.rates = trust_rates(out.audits.values())
    return out


def card_html(audit: TagAudit | None, tags_line: dict | None) -> str:
    """A report card's tags: refuted struck through, suggestions marked, mismatch and swap said."""
    if audit is None or tags_line is None:
        return ""
    refuted = set(audit.refuted)
    items = [f"<del>{html.escape(t)}</del>" if t in refuted else html.escape(t) for t in audit.claimed]
    items += [f'<ins title="suggested: a probe the model called present">+{html.escape(t)}</ins>'
              for t in audit.suggested]
    out = f"<p class=tags>{TAGS}: {', '.join(items)}</p>"
    if tags_line.get("likely_swap"):
        out += f"<p class=swap>likely swap with {html.escape(tags_line['likely_swap'])}</p>"
    elif tags_line.get("mismatch"):
        out += "<p class=swap>mismatch: the caption may belong to another image</p>"
    return out
