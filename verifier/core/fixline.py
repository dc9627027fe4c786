"""The fixline protocol: the first article's one-line answer.

    OK
    FIX: A=cowboy shot (caption says full body), C=forward (caption says left)

Aspects are lettered in the order they are checked. Parsing is tolerant of
what models really write: markdown fences, a leading `Answer:`, bold, a
trailing period, any case, `:` for `=`, items on several lines, a
`(borderline)` mark, and a value that belongs to another aspect than its
letter (the article's `A=three quarters view` under FRAMING is a view).
Aspects a FIX line does not mention agree with the caption.
"""

from __future__ import annotations

import re
import string

from captions.facts import Facts
from captions.policy import Policy
from verifier.core.observation import AspectObservation, Observation, ObservationError, is_undetermined, resolve

_LEAD = re.compile(r"^[\s>*_`\"']*(?:(?:final )?answer|result|verdict|output)?\s*[:\-]?\s*[*_`\"']*", re.I)
_HEAD = re.compile(r"^(ok|fix)\b[\s*_`\"']*:?[\s*_`\"']*(.*)$", re.I | re.S)
_ITEM = re.compile(r"^[\s*_`]*([a-z])\s*[=:]\s*(.+)$", re.I | re.S)
_PARENS = re.compile(r"\(([^()]*)\)")


def letters(aspects: list[str]) -> dict[str, str]:
    """A -> first checked aspect, B -> second, ..."""
    return dict(zip(string.ascii_uppercase, aspects, strict=False))


def _split_items(body: str) -> list[str]:
    """Split on commas/semicolons/newlines outside parentheses."""
    items, depth, current = [], 0, []
    for ch in body:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        if ch in ",;\n" and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    items.append("".join(current))
    return [i.strip() for i in items if i.strip()]


def _answer_lines(text: str) -> list[str]:
    text = text.replace("```", "\n")
    return [_LEAD.sub("", line, count=1).strip() for line in text.splitlines() if line.strip()]


def parse_fixline(text: str, policy: Policy, aspects: list[str], claims: Facts) -> Observation:
    """A fixline answer -> Observation (unmentioned aspects: implicit agreement)."""
    lines = _answer_lines(text)
    for index, line in enumerate(lines):
        head = _HEAD.match(line)
        if not head:
            continue
        if head.group(1).lower() == "ok":
            if head.group(2).strip(" .!*_`\"'"):
                continue  # "OK, here is what I see": prose, not the verdict
            return _agree(aspects, claims, {})
        rest = [head.group(2)] + [ln for ln in lines[index + 1:] if _ITEM.match(ln)]
        return _agree(aspects, claims, _items(" \n".join(rest), policy, aspects))
    raise ObservationError("no line starting with OK or FIX")


def _items(body: str, policy: Policy, aspects: list[str]) -> dict[str, AspectObservation]:
    by_letter = letters(aspects)
    found: dict[str, AspectObservation] = {}
    for item in _split_items(body):
        m = _ITEM.match(item)
        if not m:
            continue
        letter, rest = m.group(1).upper(), m.group(2)
        if letter not in by_letter:
            raise ObservationError(f"FIX item for unknown letter {letter}: '{item}'")
        notes = _PARENS.findall(rest)
        value_text = _PARENS.sub(" ", rest).strip().rstrip(".").strip()
        borderline = any("borderline" in n.lower() or "unsure" in n.lower() for n in notes) or value_text.endswith("?")
        value_text = value_text.rstrip("?").strip()
        aspect, value = _place(policy, by_letter[letter], aspects, value_text)
        found[aspect] = AspectObservation(value, borderline)
    if not found:
        raise ObservationError(f"FIX without any readable item: '{body.strip()[:120]}'")
    return found


def _place(policy: Policy, lettered: str, aspects: list[str], text: str) -> tuple[str, str | None]:
    """The aspect and value `text` names: its letter's aspect first, then the
    other checked aspects (a view named under FRAMING is a view)."""
    if is_undetermined(text):
        return lettered, None
    for aspect in [lettered, *(a for a in aspects if a != lettered)]:
        value = resolve(policy, aspect, text)
        if value is not None:
            return aspect, value
    raise ObservationError(f"'{text}' is not a value of {lettered} or any checked aspect")


def _agree(aspects: list[str], claims: Facts, found: dict[str, AspectObservation]) -> Observation:
    out = {}
    for aspect in aspects:
        out[aspect] = found.get(aspect) or AspectObservation(claims.get(aspect), False, implicit=True)
    return Observation(out)
