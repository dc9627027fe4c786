"""The caption as text: parse and render.

A caption file is a sequence of lines. Each line is either a *tag line*
(comma-separated Danbooru tags) or a *text line* (natural-language
sentences). The seeds' template is one block per line:

    masterpiece, best quality, score_7, safe,
    1girl, solo, keichan,
    A close-up portrait of a young girl ... . Her long, thick hair ... .
    blunt bangs, long sidelocks, half updo, braid, blue ribbon,
    smile, looking at viewer, portrait, bare shoulders,
    white background, simple background

`parse` keeps each line's original text, and `render` writes an untouched
line back verbatim, so `render(parse(t)) == t` for any text and an edit
leaves every line it did not touch byte-identical. Lines that an edit
changed are rendered in canonical form (`a, b, c,`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache

from captions.tags import normalize_tag, split_raw

BOM = "\ufeff"
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z])")


@dataclass(frozen=True)
class TagLine:
    items: tuple[str, ...]  # tags as written (stripped), in order
    trailing_comma: bool = True
    raw: str | None = None  # original text, rendered verbatim while unchanged

    @cached_property
    def tags(self) -> list[str]:
        return [normalize_tag(item) for item in self.items]

    def text(self) -> str:
        if self.raw is not None:
            return self.raw
        return ", ".join(self.items) + ("," if self.trailing_comma else "")


@dataclass(frozen=True)
class TextLine:
    value: str  # natural language, as written

    def text(self) -> str:
        return self.value


Line = TagLine | TextLine


@dataclass(frozen=True)
class Caption:
    lines: tuple[Line, ...] = ()
    newline: str = "\n"
    tail: str = "\n"  # whatever whitespace follows the last line, kept for exactness
    bom: str = ""  # a UTF-8 byte order mark some editors write (Windows Notepad): kept, never a tag

    @cached_property
    def tags(self) -> list[str]:
        """Every tag, normalised, in order (repeats kept: lint wants them)."""
        return [tag for line in self.tag_lines for tag in line.tags]

    @property
    def raw_tags(self) -> list[str]:
        return [item for line in self.tag_lines for item in line.items]

    @property
    def tag_lines(self) -> list[TagLine]:
        return [line for line in self.lines if isinstance(line, TagLine)]

    @cached_property
    def nl_text(self) -> str:
        return " ".join(line.value.strip() for line in self.lines if isinstance(line, TextLine))

    @property
    def sentences(self) -> list[str]:
        return split_sentences(self.nl_text)

    def with_line(self, index: int, line: Line) -> Caption:
        lines = list(self.lines)
        lines[index] = line
        return replace(self, lines=tuple(lines))


def split_sentences(text: str) -> list[str]:
    text = text.strip()
    if not text:
        return []
    return [part.strip() for part in _SENTENCE_SPLIT.split(text) if part.strip()]


def is_text_line(line: str) -> bool:
    """Tell a natural-language line from a tag line.

    Sentences end with punctuation, or start with a capital and carry a long
    comma-free run of words (`Her side ponytail ... of the image,` wraps onto
    the next line in the second article). Danbooru tags are lowercase and
    rarely longer than five words.
    """
    s = line.strip()
    if not s:
        return False
    parts = [len(part.split()) for part in s.split(",")]
    longest = max(parts)
    if _SENTENCE_END.search(s):
        # ...unless it is a tag line whose last tag ends so: `1girl, solo, k-on!`, `open mouth, ?`,
        # `super smash bros.` (658 Danbooru tags end in . ! or ?). Lowercase, short comma-separated
        # parts: tags. A lone lowercase token (`k-on!`) is a tag; a lowercase sentence has words.
        taglike = not s[0].isupper() and longest <= 3 and (len(parts) > 1 or longest == 1)
        return not taglike
    return (s[0].isupper() and longest >= 4) or longest >= 7


@lru_cache(maxsize=4096)  # lines are immutable values, and a dataset's tag lines repeat (quality, subject, background)
def parse_line(line: str) -> Line:
    if is_text_line(line):
        return TextLine(line)
    stripped = line.rstrip()
    return TagLine(tuple(split_raw(stripped)), stripped.endswith(","), raw=line)


def parse(text: str) -> Caption:
    """Parse caption text; exact for any input: `render(parse(t)) == t`."""
    bom = BOM if text.startswith(BOM) else ""
    text = text[len(bom):]
    newline = "\r\n" if "\r\n" in text else "\n"
    body = text.rstrip()
    tail = text[len(body) :]
    # Blank lines inside a caption stay as empty tag lines so render is exact.
    lines = tuple(
        parse_line(raw) if raw.strip() else TagLine((), False, raw=raw)
        for raw in (body.split(newline) if body else [])
    )
    return Caption(lines=lines, newline=newline, tail=tail, bom=bom)


def render(caption: Caption) -> str:
    return caption.bom + caption.newline.join(line.text() for line in caption.lines) + caption.tail


def tag_line(tags: list[str], trailing_comma: bool = True) -> TagLine:
    return TagLine(tuple(tags), trailing_comma)


def compose(blocks: list[list[str] | str]) -> Caption:
    """Build a canonical caption from blocks: a list is a tag line, a str a text line.

    Every tag line ends with a comma except the last line of the caption,
    as in the seeds' template.
    """
    blocks = [b for b in blocks if b]
    lines: list[Line] = []
    for i, block in enumerate(blocks):
        last = i == len(blocks) - 1
        lines.append(TextLine(block) if isinstance(block, str) else tag_line(list(block), not last))
    return Caption(lines=tuple(lines))
