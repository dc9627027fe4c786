"""The tags audit of a finished run: per image, the run's trust rates, the likely swaps.

Read from the stored verdicts (claims + observation), so a report written
from the store says the same as the run that asked.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from verifier.core.tags import TAGS, TagAudit, TrustRates, result_audit, run_swaps, trust_rates
from verifier.core.verdict import MISMATCH


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
                "mismatch": image in self.mismatched, "likely_swap": self.swaps.get(image)}

    def summary_lines(self) -> list[str]:
        out = [self.rates.line()]
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
