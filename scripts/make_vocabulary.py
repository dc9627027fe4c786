"""Write captions/data/danbooru-general.csv.gz: the vocabulary capcheck ships.

    python scripts/make_vocabulary.py path/to/danbooru.csv

From the a1111 tag-autocomplete CSV (`name,type,postCount,"aliases"`, MIT):
the general tags (type 0) with at least FLOOR posts, in the same format
(aliases kept, so `bust` still reads as `upper body`), gzipped with no
timestamp so the same input writes the same bytes. Which of them are not
visual facts (counts, names written on the image, ...) is decided at run
time by `captions/visual.py`, so it applies to a user's own CSV too.
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
from pathlib import Path

FLOOR = 200  # posts: below this a tag is too rare to be worth a question (and the file stays small)
OUT = Path(__file__).resolve().parent.parent / "captions" / "data" / "danbooru-general.csv.gz"


def rows(source: Path):
    with source.open(encoding="utf-8", newline="") as f:
        for row in csv.reader(f):
            if len(row) >= 3 and row[1] == "0" and row[2].isdigit() and int(row[2]) >= FLOOR:
                yield [row[0], "0", row[2], row[3] if len(row) > 3 else ""]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    n = 0
    for row in rows(Path(argv[0])):
        writer.writerow(row)
        n += 1
    data = buffer.getvalue().encode("utf-8")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
        gz.write(data)
    print(f"{OUT.name}: {n} general tags with >= {FLOOR} posts, {len(data)} bytes, {OUT.stat().st_size} gzipped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
