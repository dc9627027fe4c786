"""Edits: change a fact, re-render only what that fact controls.

`set_facts(text, policy, {"framing": "cowboy shot"})` swaps the framing tag;
a facing change swaps the facing tag and the direction words in the NL; a
view change re-renders the NL sentences whose template the view selects.
Every line an edit does not touch stays byte-identical, and inside a tag
line only the edited item changes (spacing around the others is kept).
Pure: text in, text out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from captions.aspects import ASPECTS
from captions.caption import TagLine, TextLine, parse, render
from captions.compose import nl_sentences
from captions.facts import Facts, facts_from_caption, nl_facts, visible_outfit
from captions.policy import RATINGS, Policy
from captions.tags import normalize_tag

# The order compose writes aspect tags in; a tag with no old tag to replace
# is inserted where compose would have put it.
TAG_ORDER = ("expression", "outfit", "view", "facing", "framing")


@dataclass(frozen=True)
class Edit:
    text: str  # the new caption text
    before: Facts
    after: Facts
    notes: list[str] = field(default_factory=list)  # what could not be done, in words

    @property
    def changed(self) -> bool:
        return self.before != self.after


def target_facts(before: Facts, policy: Policy, changes: dict[str, str | None]) -> Facts:
    """The facts after `changes`, plus what the new values imply for aspects
    not changed explicitly (facing forward implies a front view)."""
    after = before
    for aspect, value in changes.items():
        after = after.with_value(aspect, value)
    for aspect, value in changes.items():
        spec = policy.aspect(aspect)
        if spec is None or value is None:
            continue
        for other, implied in spec.values[value].implies.items():
            if other not in changes:
                after = after.with_value(other, implied)
    # The rating follows the outfit. A framing fix does not cascade into the
    # outfit or rating: it swaps the framing tag and the NL the framing selects.
    if after.outfit != before.outfit:
        shown = visible_outfit(policy, after.outfit, after.framing)
        after = after.with_value("rating", policy.rating_for(shown))
    return after


def set_facts(text: str, policy: Policy, changes: dict[str, str | None]) -> Edit:
    """Rewrite `text` so the caption claims `changes`; nothing else moves.

    A change the caption cannot express (Keichan writes facing left only
    inside a three-quarter or profile sentence, so a front view has nowhere
    to say it) is not half-made: it is dropped, the others are made, and
    `notes` says why."""
    for aspect, value in changes.items():
        spec = policy.aspect(aspect)
        if spec is None or (value is not None and value not in spec.values):
            raise ValueError(f"'{value}' is not a value of aspect '{aspect}'")
    edit = _set(text, policy, changes)
    failed = [a for a, v in changes.items() if edit.after.get(a) != v]
    if not failed:
        return edit
    notes = [f"{a}: cannot say '{changes[a]}' in this caption (no tag for it, and no sentence of the policy here "
             f"names it); left as '{edit.before.get(a)}'" for a in failed]
    kept = {a: v for a, v in changes.items() if a not in failed}
    if kept:
        retry = _set(text, policy, kept)
        if all(retry.after.get(a) == v for a, v in kept.items()):
            return Edit(retry.text, retry.before, retry.after, [*retry.notes, *notes])
    before = facts_from_caption(parse(text), policy)
    return Edit(text, before, before, notes)


def _set(text: str, policy: Policy, changes: dict[str, str | None]) -> Edit:
    caption = parse(text)
    before = facts_from_caption(caption, policy)
    after = target_facts(before, policy, changes)
    if after == before:
        return Edit(text, before, after)
    notes: list[str] = []
    lines = [line.text() for line in caption.lines]
    for aspect in ASPECTS:
        if after.get(aspect) != before.get(aspect):
            _swap_tags(lines, policy, aspect, before.get(aspect), after.get(aspect), notes)
    if after.rating != before.rating and before.rating is not None and after.rating is not None:
        _replace_tag(lines, before.rating, [after.rating])
    _edit_nl(lines, caption, policy, before, after, notes)
    new_text = caption.bom + caption.newline.join(lines) + caption.tail
    return Edit(new_text, before, facts_from_caption(parse(new_text), policy), notes)


# -- tag lines ----------------------------------------------------------------

_ITEM = re.compile(r"[^,]+")


def _items(raw: str) -> list[tuple[int, int, str]]:
    """Non-blank comma-separated items of a raw tag line, with their spans (trimmed)."""
    out = []
    for m in _ITEM.finditer(raw):
        item = m.group(0)
        if item.strip():
            lead = len(item) - len(item.lstrip())
            out.append((m.start() + lead, m.start() + lead + len(item.strip()), item.strip()))
    return out


def _is_tag_line(raw: str) -> bool:
    return isinstance(parse(raw).lines[0], TagLine) if raw.strip() else False


def _tags_of(policy: Policy, aspect: str, value: str | None) -> list[str]:
    spec = policy.aspect(aspect)
    return list(spec.values[value].tags) if spec is not None and value is not None else []


def _replace_tag(lines: list[str], old: str, new: list[str]) -> bool:
    """Replace the first item equal to `old` by `new` (joined); drop later repeats."""
    found = False
    for i, raw in enumerate(lines):
        if not _is_tag_line(raw):
            continue
        for start, end, item in reversed(_items(raw)):
            if normalize_tag(item) != old:
                continue
            found = True
            lines[i] = raw = raw[:start] + ", ".join(new) + raw[end:] if new else _remove_item(raw, start, end)
    return found


def _remove_item(raw: str, start: int, end: int) -> str:
    """Cut an item and one neighbouring comma, keeping the line's shape."""
    after = raw[end:]
    m = re.match(r"\s*,\s*", after)
    if m:
        return raw[:start] + after[m.end():]
    before = raw[:start]
    m = re.search(r",\s*$", before)
    return (before[: m.start()] if m else before) + after.rstrip() + ("," if raw.rstrip().endswith(",") and m else "")


def _swap_tags(lines: list[str], policy: Policy, aspect: str, old: str | None, new: str | None,
               notes: list[str]) -> None:
    old_tags, new_tags = _tags_of(policy, aspect, old), _tags_of(policy, aspect, new)
    placed = False
    for tag in old_tags:
        if _replace_tag(lines, tag, [] if placed else new_tags):
            placed = placed or bool(new_tags)
    if new_tags and not placed:
        _insert(lines, policy, aspect, new_tags, notes)


def _insert(lines: list[str], policy: Policy, aspect: str, tags: list[str], notes: list[str]) -> None:
    """Put `tags` where compose would: before the first tag of a later aspect,
    else after the last tag of an earlier one, else at the end of the last
    tag line before the background."""
    order = TAG_ORDER.index(aspect) if aspect in TAG_ORDER else len(TAG_ORDER)
    later = {t for a in TAG_ORDER[order + 1:] for v in (policy.aspect(a).values if policy.aspect(a) else {})
             for t in policy.aspect(a).values[v].tags}
    earlier = {t for a in TAG_ORDER[:order] for v in (policy.aspect(a).values if policy.aspect(a) else {})
               for t in policy.aspect(a).values[v].tags}
    text = ", ".join(tags)
    for i, raw in enumerate(lines):
        if _is_tag_line(raw):
            for start, _end, item in _items(raw):
                if normalize_tag(item) in later:
                    lines[i] = raw[:start] + text + ", " + raw[start:]
                    return
    for i in range(len(lines) - 1, -1, -1):
        raw = lines[i]
        if _is_tag_line(raw):
            for _start, end, item in reversed(_items(raw)):
                if normalize_tag(item) in earlier:
                    lines[i] = raw[:end] + ", " + text + raw[end:]
                    return
    background = set(policy.background)
    candidates = [i for i, raw in enumerate(lines) if _is_tag_line(raw)
                  and not {normalize_tag(x) for _, _, x in _items(raw)} <= background
                  and not {normalize_tag(x) for _, _, x in _items(raw)} & {*policy.quality, *RATINGS}]
    if not candidates:
        notes.append(f"{aspect}: no tag line to put '{text}' on")
        return
    i = candidates[-1]
    raw = lines[i]
    body = raw.rstrip()
    comma = body.endswith(",")
    core = body[:-1].rstrip() if comma else body
    lines[i] = core + ", " + text + ("," if comma else "") + raw[len(body):]


# -- NL sentences -------------------------------------------------------------

def _edit_nl(lines: list[str], caption, policy: Policy, before: Facts, after: Facts, notes: list[str]) -> None:
    """Sentences a template wrote: re-render the slot when the new facts render
    it differently. Other sentences: swap the phrase of a changed placeholder
    in place (the template's own spans)."""
    old_sentences = nl_sentences(before, policy)
    new_sentences = nl_sentences(after, policy)
    by_old = dict(zip(old_sentences, new_sentences, strict=False)) if len(old_sentences) == len(new_sentences) else {}
    spans = nl_facts(caption, policy)
    for index, line in enumerate(caption.lines):
        if not isinstance(line, TextLine):
            continue
        raw = lines[index]
        replaced = False
        for old, new in by_old.items():
            if old != new and old in raw:
                raw = raw.replace(old, new, 1)
                replaced = True
        if not replaced:
            for fact in sorted((f for f in spans if f.line == index), key=lambda f: f.start, reverse=True):
                target = after.get(fact.aspect)
                if target is not None and target != fact.value:
                    spec = policy.aspect(fact.aspect)
                    phrase = spec.values[target].phrase or target
                    raw = raw[: fact.start] + phrase + raw[fact.end:]
        lines[index] = raw
    for aspect in ("view", "facing", "expression"):
        if before.get(aspect) != after.get(aspect) and before.get(aspect) is not None:
            spec = policy.aspect(aspect)
            old_phrase = spec.values[before.get(aspect)].phrase if spec else None
            nl = " ".join(lines[i] for i, ln in enumerate(caption.lines) if isinstance(ln, TextLine))
            if old_phrase and re.search(rf"\b{re.escape(old_phrase)}\b", nl) and not by_old:
                notes.append(f"{aspect}: the NL still says '{old_phrase}' (not written by a policy template)")


# -- single tags (the tags audit) ---------------------------------------------

def remove_tags(text: str, tags: list[str]) -> str:
    """`text` without `tags` on its tag lines: each removed item takes one
    neighbouring comma with it; NL lines and every other item stay as written."""
    caption = parse(text)
    lines = [line.text() for line in caption.lines]
    for tag in tags:
        _replace_tag(lines, normalize_tag(tag), [])
    return caption.bom + caption.newline.join(lines) + caption.tail


def nl_mentions(text: str, tag: str) -> bool:
    """Does the natural-language block say `tag` in words (`... in a bikini.`)?
    Then removing the tag alone would leave the caption contradicting itself."""
    nl = parse(text).nl_text
    return bool(nl) and re.search(r"(?<![\w-])" + re.escape(tag) + r"(?![\w-])", nl, re.I) is not None


def apply_changes(text: str, policy: Policy, changes: dict[str, str | None]) -> str:
    return set_facts(text, policy, changes).text


__all__ = ["Edit", "apply_changes", "nl_mentions", "remove_tags", "render", "set_facts", "target_facts"]
