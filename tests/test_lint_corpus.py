"""lint's findings over a varied corpus stay exactly what they were (issue 19).

The rules were made faster (tables derived once per policy and vocabulary,
per-tag answers remembered); what they find must not move. The corpus is
built here, seeded: the bench's article-shaped captions, each bent by a few
of the mistakes every rule exists for (weights, underscores, SDXL ratings,
two framings, nude with clothes, absorbed tags, aliases, typos, year tags,
tag order, risky phrases, one sentence, a file named for another outfit,
blank and CRLF text), linted with each example policy, the generic one and
none, with and without a vocabulary. The figures below were printed by the
rules as they were before the change (commit 3157a2b): a finding added,
lost, reworded or reordered changes the digest.
"""

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

import pytest

from captions import Vocabulary, lint_dataset, lint_text
from captions.generic import generic_policy

MINI_CSV = """1girl,0,100,"1girls,sole_female"
solo,0,100,
blonde_hair,0,100,"blond_hair,yellow_hair"
long_hair,0,100,
blue_eyes,0,100,
smile,0,100,
angry,0,100,
frown,0,100,
calm,0,100,
portrait,0,100,
upper_body,0,100,bust
cowboy_shot,0,100,
full_body,0,100,
from_behind,0,100,
looking_at_viewer,0,100,
standing,0,100,
sitting,0,100,
nude,0,100,naked
bikini,0,100,
school_swimsuit,0,100,
dress,0,100,
blue_dress,0,100,
t-shirt,0,100,tshirt
shorts,0,100,
leotard,0,100,
yukata,0,100,
white_background,0,100,
simple_background,0,100,
braid,0,100,
blue_ribbon,0,100,
hatsune_miku,4,100,
vocaloid,3,100,
wlop,1,100,
highres,5,100,
absurdres,5,100,
"""

BASE = [
    "masterpiece, best quality, score_7, safe,",
    "1girl, solo, {trigger},",
    "A young girl with long blonde hair stands in a white room. She smiles at the viewer.",
    "blonde hair, long hair, blue eyes, braid, blue ribbon,",
    "smile, looking at viewer, {framing}, {outfit}, standing,",
    "white background, simple background",
]
FRAMINGS = ["portrait", "upper body", "cowboy shot", "full body", "from behind"]
OUTFITS = ["nude", "bikini", "school swimsuit", "blue dress", "t-shirt, shorts", "leotard", "yukata"]
TRIGGERS = ["keichan", "kanachan", "someone"]


def _bend(rng: random.Random, lines: list[str]) -> list[str]:
    """One of the mistakes the rules look for, applied to a caption's lines."""
    kind = rng.randrange(22)
    tag_rows = [i for i, line in enumerate(lines) if line.endswith(",") or "background" in line]
    row = rng.choice(tag_rows)
    if kind == 0:
        lines[row] = lines[row].replace("smile", "(smile:1.2)").replace("braid", "((braid))")
    elif kind == 1:
        lines[row] = lines[row].replace("blue eyes", "blue_eyes").replace("long hair", "long_hair")
    elif kind == 2:
        lines[0] = lines[0].replace("safe", rng.choice(["general", "questionable", "nsfw", "safe, explicit"]))
    elif kind == 3:
        lines[0] = lines[0].replace(", safe,", ",")
    elif kind == 4:
        lines[4] += " cowboy shot, full body,"
    elif kind == 5:
        lines[4] = lines[4].replace("standing", "nude, standing, skirt")
    elif kind == 6:
        lines[3] = "blonde hair, blue eyes, long hair, blonde hair,"
    elif kind == 7:
        lines[3] += " blond hair, yellow hair, sole female,"
    elif kind == 8:
        lines[3] += " blnde hair, lnog hair, zzqx tag,"
    elif kind == 9:
        lines[5] += ", year 2023"
    elif kind == 10:
        lines.insert(1, "standing, masterpiece,")
    elif kind == 11:
        lines[2] = "A girl with bound hair and a hime cut. Her hair is bound hair."
    elif kind == 12:
        lines[2] = "A girl."
    elif kind == 13:
        lines[1] = "1girl, solo,"
    elif kind == 14:
        lines[1] += " hatsune miku, vocaloid, wlop, highres,"
    elif kind == 15:
        lines.insert(3, "")
    elif kind == 16:
        lines[4] = lines[4].replace("smile", "angry, smile, frown")
    elif kind == 17:
        lines[2] = "She is shown from the waist up, facing left, looking annoyed. Full body shot in a dress."
    elif kind == 18:
        lines[4] = lines[4].replace("looking at viewer", "looking_at_viewer, sitting,")
    elif kind == 19:
        lines[0] = "score_7, masterpiece, safe, newest,"
    elif kind == 20:
        lines[5] = "White Background, SIMPLE_BACKGROUND, \\(escaped\\), saber (fate)"
    return lines


def corpus(n: int = 1200) -> list[tuple[str, str]]:
    """(file name, caption text), seeded: the same corpus on every run."""
    rng = random.Random(19)
    out = []
    for i in range(n):
        lines = [line.format(trigger=TRIGGERS[i % 3], framing=FRAMINGS[i % 5], outfit=OUTFITS[(i // 5) % 7])
                 for line in BASE]
        for _ in range(rng.randrange(4)):
            lines = _bend(rng, lines)
        text = "\n".join(lines) + "\n"
        if i % 37 == 0:
            text = text.replace("\n", "\r\n")
        if i % 101 == 0:
            text = " \n\n"
        name = rng.choice(["", "bikini_", "nude-", "dress.", "yukata ", "uniform_"]) + f"{i:04d}.txt"
        out.append((name, text))
    return out


def findings_of(policy, vocab) -> list[str]:
    return [str(f) + f" [{f.severity}]" for name, text in corpus() for f in lint_text(Path(name), text, policy, vocab)]


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    path = tmp_path_factory.mktemp("csv") / "tags.csv"
    path.write_text(MINI_CSV)
    return Vocabulary.load(path)


def summary(found: list[str]) -> tuple[str, dict[str, int]]:
    digest = hashlib.sha256("\n".join(found).encode()).hexdigest()[:16]
    rules = Counter(line.split(": ")[1] for line in found)
    return digest, dict(sorted(rules.items()))


def _policies(keichan, kanachan):
    return {"keichan": keichan, "kanachan": kanachan, "generic": generic_policy(), "none": None}


RECORDED = {  # (policy, vocabulary used): (digest of every finding, findings per rule), before the change
    ("keichan", True): ("8870eaafea1b1b6e", {
        "absorbed-leak": 3564, "conflicting-tags": 189, "duplicate-tag": 344, "empty": 12, "filename-hint": 866,
        "missing-trigger": 810, "nl-sentences": 62, "rating": 842, "risky-phrase": 120, "tag-order": 231,
        "underscore": 193, "unknown-tag": 1490, "weight-syntax": 33, "year-tag": 81
    }),
    ("keichan", False): ("9c3cc54a52face44", {
        "absorbed-leak": 3564, "conflicting-tags": 189, "duplicate-tag": 344, "empty": 12, "filename-hint": 866,
        "missing-trigger": 810, "nl-sentences": 62, "rating": 842, "risky-phrase": 120, "tag-order": 231,
        "underscore": 193, "weight-syntax": 33, "year-tag": 81
    }),
    ("kanachan", True): ("7dc3917ee57bd28f", {
        "conflicting-tags": 189, "duplicate-tag": 344, "empty": 12, "filename-hint": 218, "missing-trigger": 817,
        "nl-sentences": 62, "rating": 574, "risky-phrase": 60, "tag-order": 231, "underscore": 193,
        "unknown-tag": 1497, "weight-syntax": 33, "year-tag": 81
    }),
    ("kanachan", False): ("774e8c8292084504", {
        "conflicting-tags": 189, "duplicate-tag": 344, "empty": 12, "filename-hint": 218, "missing-trigger": 817,
        "nl-sentences": 62, "rating": 574, "risky-phrase": 60, "tag-order": 231, "underscore": 193,
        "weight-syntax": 33, "year-tag": 81
    }),
    ("generic", True): ("5c4ceeb8d5f2a34b", {
        "conflicting-tags": 189, "duplicate-tag": 344, "empty": 12, "filename-hint": 659, "nl-sentences": 62,
        "rating": 709, "risky-phrase": 60, "tag-order": 231, "underscore": 193, "unknown-tag": 1868,
        "weight-syntax": 33, "year-tag": 81
    }),
    ("generic", False): ("e11ee7e84d367c5f", {
        "conflicting-tags": 189, "duplicate-tag": 344, "empty": 12, "filename-hint": 659, "nl-sentences": 62,
        "rating": 709, "risky-phrase": 60, "tag-order": 231, "underscore": 193, "weight-syntax": 33, "year-tag": 81
    }),
    ("none", True): ("0b45c4acae437119", {
        "conflicting-tags": 189, "duplicate-tag": 344, "empty": 12, "filename-hint": 635, "nl-sentences": 62,
        "rating": 215, "risky-phrase": 60, "tag-order": 231, "underscore": 193, "unknown-tag": 1868,
        "weight-syntax": 33, "year-tag": 81
    }),
    ("none", False): ("8dd4906736319d3c", {
        "conflicting-tags": 189, "duplicate-tag": 344, "empty": 12, "filename-hint": 635, "nl-sentences": 62,
        "rating": 215, "risky-phrase": 60, "tag-order": 231, "underscore": 193, "weight-syntax": 33, "year-tag": 81
    }),
}


@pytest.mark.parametrize("vocab_used", [True, False], ids=["vocab", "no-vocab"])
@pytest.mark.parametrize("name", ["keichan", "kanachan", "generic", "none"])
def test_findings_over_a_varied_corpus_are_unchanged(name, vocab_used, keichan, kanachan, mini):
    found = findings_of(_policies(keichan, kanachan)[name], mini if vocab_used else None)
    print(json.dumps({f"{name}/{vocab_used}": summary(found)}))
    assert summary(found) == RECORDED[(name, vocab_used)]


def test_the_corpus_exercises_every_rule(keichan, mini):
    from captions.lint import RULES

    seen = {line.split(": ")[1] for line in findings_of(keichan, mini)}
    assert set(RULES) | {"empty"} <= seen

RECORDED_DATASET = ("48e0b8436a45c523", {  # lint_dataset over write_dataset's folder, keichan and the mini CSV
    "absorbed-leak": 1128, "conflicting-tags": 69, "duplicate-tag": 99, "empty": 3, "filename-hint": 285,
    "missing-caption": 14, "missing-trigger": 257, "nl-sentences": 15, "rating": 276, "risky-phrase": 36,
    "tag-order": 74, "underscore": 69, "unknown-tag": 466, "unreadable": 7, "weight-syntax": 14, "year-tag": 25,
})


def write_dataset(root: Path) -> Path:
    """The corpus as a dataset: captions beside images, in two folders (one a kohya repeat folder), with
    images that have no caption, a `.caption` caption, one that is not UTF-8, and files lint must pass over."""
    for i, (name, text) in enumerate(corpus(400)):
        folder = root / ("10_set" if i % 3 else "") / ("deep" if i % 7 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        stem = Path(name).stem
        (folder / f"{stem}.png").touch()
        if i % 29 == 0:
            continue  # an image without a caption
        ext = ".caption" if i % 31 == 0 else ".txt"
        (folder / f"{stem}{ext}").write_bytes(b"\xff\xfe bad" if i % 53 == 0 else text.encode())
    (root / "notes.txt").write_text("not a caption: no image beside it")
    (root / ".hidden.png").touch()
    (root / "anim.gif").touch()
    return root


def test_lint_dataset_over_the_corpus_as_files_is_unchanged(tmp_path, keichan, mini):
    root = write_dataset(tmp_path / "set")
    found = [str(f) + f" [{f.severity}]" for f in lint_dataset(root, keichan, mini)]
    print(json.dumps({"dataset": summary(found)}))
    assert summary(found) == RECORDED_DATASET
    one = next(root.rglob("*.txt"))  # a file given as the dataset: named from its own folder
    assert [f.path for f in lint_dataset(one, keichan, mini)] == [one.name] * len(lint_dataset(one, keichan, mini))
