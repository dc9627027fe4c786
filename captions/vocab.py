"""The Danbooru vocabulary, from the a1111 tag-autocomplete CSV.

Format, one tag per line, no header: `name,type,postCount,"alias1,alias2"`.
Types: 0 general, 1 artist, 3 copyright, 4 character, 5 meta. Names use
underscores on Danbooru; captions use spaces, so both are stored with spaces.

Most users have no such CSV at hand, so capcheck ships the general tags
(`data/danbooru-general.csv.gz`, see data/README.md): `builtin()`. The
tags audit reads a user's CSV first and the shipped one for the rest
(`with_builtin`); lint's unknown-tag rule uses a user's CSV only, as before.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import io
import os
import re
from functools import cache, cached_property, lru_cache
from importlib import resources
from pathlib import Path

from captions.errors import VocabularyError

GENERAL, ARTIST, COPYRIGHT, CHARACTER, META = 0, 1, 3, 4, 5
TAGS_ENV = "CAPCHECK_TAGS_CSV"
_COMPACT = re.compile(r"[\s_\-]+")


def _space(name: str) -> str:
    return name.strip().replace("_", " ").lower()


class Vocabulary:
    def __init__(self, tags: dict[str, tuple[int, int]], aliases: dict[str, str], source: Path | None = None):
        self.tags = tags  # name -> (type, post count)
        self.aliases = aliases  # alias -> canonical name
        self.source = source

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        path = Path(path)
        try:
            raw = path.read_bytes()
            data = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8")
        except FileNotFoundError:
            raise VocabularyError(path, "no such tag CSV") from None
        except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as exc:
            raise VocabularyError(path, f"cannot read tag CSV: {exc}") from None
        return cls.parse(data, path)

    @classmethod
    def parse(cls, data: str, path: Path | None = None) -> Vocabulary:
        tags: dict[str, tuple[int, int]] = {}
        aliases: dict[str, str] = {}
        for lineno, row in enumerate(csv.reader(io.StringIO(data)), start=1):
            if not row:
                continue
            try:
                name, kind, count = _space(row[0]), int(row[1]), int(row[2] or 0)
            except (IndexError, ValueError):
                raise VocabularyError(path, f"line {lineno}: expected name,type,postCount,\"aliases\"") from None
            if name not in tags:
                tags[name] = (kind, count)
            if len(row) > 3 and row[3]:
                for alias in row[3].split(","):
                    aliases.setdefault(_space(alias), name)
        if not tags:
            raise VocabularyError(path, "tag CSV holds no tags")
        return cls(tags, aliases, path)

    def __contains__(self, tag: str) -> bool:
        return tag in self.tags

    def __len__(self) -> int:
        return len(self.tags)

    def kind(self, tag: str) -> int | None:
        info = self.tags.get(tag)
        return info[0] if info else None

    def canonical(self, tag: str) -> str | None:
        """The canonical name for an alias (`bust` -> `upper body`)."""
        return self.aliases.get(tag)

    @cached_property
    def _compact(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, (_, _count) in sorted(self.tags.items(), key=lambda kv: -kv[1][1]):
            out.setdefault(_COMPACT.sub("", name), name)
        return out

    @cached_property
    def _buckets(self) -> dict[str, list[str]]:
        # Only tags with real use are worth suggesting; bucketing by first
        # letter keeps difflib's work to a few thousand strings.
        out: dict[str, list[str]] = {}
        for name, (kind, count) in self.tags.items():
            if kind == GENERAL and count >= 50:
                out.setdefault(name[:1], []).append(name)
        return out

    @lru_cache(maxsize=4096)  # noqa: B019 - one Vocabulary per process, tags repeat across captions
    def suggest(self, tag: str) -> str | None:
        """The existing tag most likely meant by an unknown one."""
        if tag in self.aliases:
            return self.aliases[tag]
        compact = self._compact.get(_COMPACT.sub("", tag))
        if compact:
            return compact
        close = difflib.get_close_matches(tag, self._buckets.get(tag[:1], []), n=1, cutoff=0.9)
        if close:
            return close[0]
        words = tag.split()
        # `left side ponytail` -> `side ponytail`: a real tag with a qualifier
        # that Danbooru does not have in front of it or behind it.
        for k in range(1, len(words)):
            for candidate in (" ".join(words[k:]), " ".join(words[:-k])):
                if candidate in self.tags:
                    return candidate
        close = difflib.get_close_matches(tag, self._buckets.get(tag[:1], []), n=1, cutoff=0.8)
        return close[0] if close else None


@cache
def builtin() -> Vocabulary:
    """The general tags capcheck ships (read once per process)."""
    with resources.as_file(resources.files(__package__).joinpath("data", "danbooru-general.csv.gz")) as path:
        return Vocabulary.load(path)


@lru_cache(maxsize=4)  # one user CSV per process, asked about per tag
def with_builtin(user: Vocabulary | None) -> Vocabulary:
    """A user's CSV, with the shipped tags it lacks; the shipped tags alone without one."""
    base = builtin()
    if user is None:
        return base
    return Vocabulary({**base.tags, **user.tags}, {**base.aliases, **user.aliases}, user.source)


def find_vocabulary(explicit: str | Path | None = None, policy=None) -> Vocabulary | None:
    """The tag CSV from `explicit` (--tags), else $CAPCHECK_TAGS_CSV, else the
    policy's `tags_csv`; None when none is set (lint then skips unknown-tag)."""
    path = explicit or os.environ.get(TAGS_ENV) or (policy.tags_csv_path() if policy is not None else None)
    return Vocabulary.load(path) if path else None
