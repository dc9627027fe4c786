"""Each rule is a pure function over a Context; tested table-first."""

from pathlib import Path

import pytest

from captions import Vocabulary, lint_dataset, lint_text, parse
from captions.lint import RULES, Context

# A small vocabulary in the CSV's own format, for rules that need one.
MINI_CSV = """1girl,0,100,"1girls,sole_female"
solo,0,100,
upper_body,0,100,bust
side_ponytail,0,100,"side_tail,sidetail"
smile,0,100,
angry,0,100,
portrait,0,100,
white_background,0,100,
simple_background,0,100,
hatsune_miku,4,100,
vocaloid,3,100,
wlop,1,100,
highres,5,100,
"""


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    path = tmp_path_factory.mktemp("csv") / "tags.csv"
    path.write_text(MINI_CSV)
    return Vocabulary.load(path)


def run(rule, text, policy=None, vocab=None, name="a.txt"):
    return list(RULES[rule](Context(Path(name), parse(text), policy, vocab)))


CLEAN_PREFIX = "masterpiece, best quality, score_7, safe,\n1girl, solo, kanachan,\n"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("1girl, solo, smile", []),
        ("1girl, bust", [("warning", "'bust' is a Danbooru alias; the tag is 'upper body'")]),
        ("1girl, left side ponytail", [("error", "'left side ponytail' is not a Danbooru tag; did you mean 'side ponytail'?")]),
        ("masterpiece, score_7, safe, year 2024, newest, 1girl", []),
    ],
)
def test_unknown_tag(mini, text, want):
    assert run("unknown-tag", text, vocab=mini) == want


def test_unknown_tag_needs_a_vocabulary():
    assert run("unknown-tag", "1girl, zzz") == []


@pytest.mark.parametrize(
    ("text", "n"),
    [("1girl, (smile:1.2)", 1), ("((smile)), [solo]", 2), ("saber (fate), smile", 0), ("1girl, smile", 0)],
)
def test_weight_syntax(text, n):
    found = run("weight-syntax", text)
    assert len(found) == n and all(sev == "error" for sev, _ in found)


def test_weight_syntax_message_names_the_flat_tag():
    assert run("weight-syntax", "(hair_intakes:1.5)")[0][1].endswith("write 'hair intakes'")


@pytest.mark.parametrize(("text", "n"), [("side_ponytail, score_7, score_8_up", 1), ("side ponytail", 0)])
def test_underscore(text, n):
    assert len(run("underscore", text)) == n


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("masterpiece, safe, 1girl", []),
        ("masterpiece, general, 1girl", ["'general' is the SDXL-era rating; Anima uses 'safe'"]),
        ("masterpiece, 1girl", ["no rating tag (safe, sensitive or explicit)"]),
        ("safe, explicit, 1girl", ["more than one rating: safe, explicit"]),
        ("nsfw, 1girl", ["'nsfw' is not an Anima rating; use 'explicit'", "no rating tag (safe, sensitive or explicit)"]),
    ],
)
def test_rating(text, want):
    assert [m for _, m in run("rating", text)] == want


def test_rating_follows_the_outfit_with_a_policy(kanachan):
    assert run("rating", "safe, kanachan, nude", kanachan) == [
        ("error", "rated 'safe' but the outfit 'nude' is rated 'explicit' by the policy")]
    assert run("rating", "explicit, kanachan, nude", kanachan) == []


@pytest.mark.parametrize(("text", "n"), [("smile, smile", 1), ("smile, (smile:1.2), Smile", 1), ("a, b", 0)])
def test_duplicate_tag(text, n):
    assert len(run("duplicate-tag", text)) == n


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("full body, cowboy shot", ["two framing tags: cowboy shot and full body"]),
        ("nude, school uniform, thighhighs", ["'nude' together with clothing: school uniform"]),
        ("nude, hair ribbon, thighhighs, full body", []),
    ],
)
def test_conflicting_tags(text, want):
    assert [m for _, m in run("conflicting-tags", text)] == want


def test_conflicting_tags_uses_policy_framings(keichan):
    assert run("conflicting-tags", "portrait, full body", keichan) == [("error", "two framing tags: portrait and full body")]


@pytest.mark.parametrize(
    ("text", "n"),
    [("a, b,\nOne sentence. Another one.\nc", 0), ("a, b,\nOnly one sentence here.\nc", 1), ("a, b", 1)],
)
def test_nl_sentences(text, n):
    assert len(run("nl-sentences", text)) == n


def test_risky_phrase_builtin_and_policy(keichan):
    assert "tied-up" in run("risky-phrase", "a,\nHer bound hair is tied. Second sentence.\n")[0][1]
    assert run("risky-phrase", "a, hime cut", keichan)[0][1].startswith("'hime cut'")
    assert run("risky-phrase", "a, boundary hair") == []


def test_absorbed_leak_and_missing_trigger(kanachan):
    assert run("absorbed-leak", "kanachan, brown hair, smile", kanachan) == [
        ("error", "'brown hair' is absorbed by the trigger 'kanachan'; remove the tag")]
    assert run("missing-trigger", "1girl, smile", kanachan) == [
        ("error", "the trigger 'kanachan' is not among the tags")]
    assert run("missing-trigger", "1girl, kanachan", kanachan) == []


def test_year_tag():
    assert len(run("year-tag", "1girl, year 2024")) == 1 and run("year-tag", "1girl, 2024") == []


@pytest.mark.parametrize(
    ("text", "first_complaint"),
    [
        ("masterpiece, safe, 1girl, solo, kanachan, smile", None),
        ("kanachan, 1girl, solo, angry", "'1girl' (subject) comes after 'kanachan' (character)"),
        ("1girl, masterpiece", "'masterpiece' (quality/rating) comes after '1girl' (subject)"),
        ("1girl, hatsune miku, vocaloid, wlop, smile", None),
        ("1girl, smile, hatsune miku", "'hatsune miku' (character) comes after 'smile' (general)"),
        ("1girl, wlop, vocaloid", "'vocaloid' (series) comes after 'wlop' (artist)"),
        # across lines: each line in order, the second starting below the first's highest (a line is read
        # whole when it cannot break the order, tag by tag when it can)
        ("masterpiece, safe,\n1girl, kanachan,\nsmile, hatsune miku", "'hatsune miku' (character) comes after 'smile'"
                                                                      " (general)"),
        ("1girl, kanachan, smile,\nmasterpiece, safe", "'masterpiece' (quality/rating) comes after 'smile' (general)"),
        ("masterpiece,\n1girl, hatsune miku,\nvocaloid, wlop,\nsmile,\n\nangry", None),
        ("1girl, wlop,\nvocaloid", "'vocaloid' (series) comes after 'wlop' (artist)"),
    ],
)
def test_tag_order(mini, kanachan, text, first_complaint):
    for _ in range(2):  # the second time from what the tables remember of each line
        found = run("tag-order", text, kanachan, mini)
        assert (found[0][1].split(";")[0] if found else None) == first_complaint


@pytest.mark.parametrize(
    ("name", "text", "n"),
    [
        ("kanachan_bikini.txt", "explicit, kanachan, nude", 1),
        ("kanachan_nude.txt", "sensitive, kanachan, bikini, pink bikini, from behind", 1),
        ("kanachan_nude.txt", "explicit, kanachan, nude", 0),
        ("kanachan_blazer_angry.txt", "safe, kanachan, angry", 0),
        ("kanachan_angry.txt", "safe, kanachan, bikini", 0),
    ],
)
def test_filename_hint(kanachan, name, text, n):
    assert len(run("filename-hint", text, kanachan, name=name)) == n
    assert len(run("filename-hint", text, None, name=name)) == n  # built-in outfit words work without a policy


# --- the kanachan-like fixture ---------------------------------------------------------------

def kanachan_caption(nl2="Her side ponytail with a blue scrunchie is visible on the right side of the image.",
                     kept="side ponytail, ahoge, double-parted bangs, medium hair, blue scrunchie",
                     rating="safe", variable="angry, looking at viewer, portrait, bare shoulders"):
    return (f"masterpiece, best quality, score_7, {rating},\n1girl, solo, kanachan,\n"
            f"A close-up portrait of a young girl with an angry expression looking directly at the viewer. {nl2}\n"
            f"{kept},\n{variable},\nwhite background, simple background\n")


CLEAN = {
    "kanachan_angry.txt": kanachan_caption(),
    "kanachan_smile.txt": kanachan_caption(variable="smile, looking at viewer, portrait"),
    "kanachan_bikini.txt": kanachan_caption(rating="sensitive", variable="pink bikini, from behind, full body"),
    "kanachan_nude.txt": kanachan_caption(rating="explicit", variable="nude, medium breasts, full body"),
}
PLANTED = {
    # the second article's swapped captions
    "kanachan_bikini.txt": (kanachan_caption(rating="explicit", variable="nude, full body"), "filename-hint"),
    "kanachan_nude.txt": (kanachan_caption(rating="sensitive", variable="bikini, pink bikini, from behind"),
                          "filename-hint"),
    "kanachan_left.txt": (kanachan_caption(kept="left side ponytail, ahoge, blue scrunchie"), "unknown-tag"),
    "kanachan_bound.txt": (kanachan_caption(nl2="Her bound hair with a blue scrunchie is visible on the right."),
                           "risky-phrase"),
    "kanachan_brown.txt": (kanachan_caption(kept="side ponytail, ahoge, brown hair, blue scrunchie"), "absorbed-leak"),
    "kanachan_general.txt": (kanachan_caption(rating="general"), "rating"),
    "kanachan_weight.txt": (kanachan_caption(variable="(angry:1.3), portrait"), "weight-syntax"),
    "kanachan_year.txt": (kanachan_caption(variable="angry, portrait, year 2024"), "year-tag"),
}


def write_all(root, files):
    for name, text in files.items():
        (root / name).write_text(text)
        (root / name).with_suffix(".png").write_bytes(b"")


def test_clean_kanachan_captions_have_no_findings(tmp_path, kanachan, vocab):
    write_all(tmp_path, CLEAN)
    assert lint_dataset(tmp_path, kanachan, vocab) == []


def test_every_planted_defect_is_found(tmp_path, kanachan, vocab):
    write_all(tmp_path, {name: text for name, (text, _) in PLANTED.items()})
    found = {(f.path, f.rule) for f in lint_dataset(tmp_path, kanachan, vocab)}
    for name, (_, rule) in PLANTED.items():
        assert (name, rule) in found, (name, rule)
    messages = {f.message for f in lint_dataset(tmp_path, kanachan, vocab)}
    assert "'left side ponytail' is not a Danbooru tag; did you mean 'side ponytail'?" in messages


def test_lint_text_empty_and_missing_caption(tmp_path):
    assert [f.rule for f in lint_text(Path("x.txt"), "  \n")] == ["empty"]
    (tmp_path / "lonely.png").write_bytes(b"")
    assert [(f.path, f.rule) for f in lint_dataset(tmp_path)] == [("lonely.png", "missing-caption")]


def test_built_example_captions_are_lint_clean(example_dataset, keichan, vocab):
    from captions import build_dataset

    build_dataset(example_dataset, keichan)
    assert lint_dataset(example_dataset, keichan, vocab) == []
