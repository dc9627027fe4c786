import pytest

from captions import Facts
from verifier.core.fixline import letters, parse_fixline
from verifier.core.observation import ObservationError

ASPECTS = ["framing", "view", "facing", "expression"]
CLAIMS = Facts(framing="full body", view="three-quarter", facing="left", expression="soft smile")


def shown(obs):
    return {a: (o.value, o.borderline, o.implicit) for a, o in obs.aspects.items()}


def test_letters_follow_checked_order():
    assert letters(["framing", "facing", "expression"]) == {"A": "framing", "B": "facing", "C": "expression"}


@pytest.mark.parametrize("text", ["OK", "ok", "OK.", "Answer: OK", "```\nOK\n```", "**OK**", "  OK  \n"])
def test_ok_variants_agree_with_the_caption(keichan, text):
    obs = parse_fixline(text, keichan, ASPECTS, CLAIMS)
    assert shown(obs) == {a: (CLAIMS.get(a), False, True) for a in ASPECTS}


@pytest.mark.parametrize("text", [
    "FIX: A=cowboy shot (caption says full body), C=right (caption says left)",
    "fix: a=Cowboy Shot (caption says full body), c=right (caption says left).",
    "Answer: FIX: A = cowboy shot (caption says full body); C: right (caption says left)",
    "```\nFIX: A=cowboy shot (caption says full body),\nC=right (caption says left)\n```",
    "Here is my check.\nFIX: A=cowboy shot (caption says full body)\nC=right (caption says left)",
    "**FIX:** A=cowboy_shot (caption says full body), C=facing right (caption says left/right)",
])
def test_fix_variants(keichan, text):
    obs = parse_fixline(text, keichan, ASPECTS, CLAIMS)
    assert shown(obs) == {
        "framing": ("cowboy shot", False, False), "view": ("three-quarter", False, True),
        "facing": ("right", False, False), "expression": ("soft smile", False, True)}


def test_view_named_under_framing_is_a_view(keichan):
    # the article's model wrote "A=three quarters view (caption says full body)"
    claims = Facts(framing="full body", view="front", facing="forward", expression="smile")
    obs = parse_fixline("FIX: A=three quarters view (caption says full body)", keichan, ASPECTS, claims)
    assert obs.aspects["view"].value == "three-quarter" and not obs.aspects["view"].implicit
    assert obs.aspects["framing"] == obs.aspects["framing"].__class__("full body", False, True)


def test_borderline_marks(keichan):
    obs = parse_fixline("FIX: A=cowboy shot (borderline) (caption says full body), D=neutral? (caption says soft smile)",
                        keichan, ASPECTS, CLAIMS)
    assert obs.aspects["framing"].borderline and obs.aspects["expression"].borderline
    assert obs.aspects["expression"].value == "neutral"


def test_cannot_determine(keichan):
    obs = parse_fixline("FIX: D=cannot determine (caption says soft smile)", keichan, ASPECTS, CLAIMS)
    assert obs.aspects["expression"].value is None


@pytest.mark.parametrize("text, message", [
    ("The image shows a girl in a cowboy shot.", "no line starting with OK or FIX"),
    ("OK, here is my analysis of the image", "no line starting"),
    ("FIX: Z=left (caption says right)", "unknown letter Z"),
    ("FIX: A=medium shot (caption says full body)", "'medium shot' is not a value"),
    ("FIX: the framing is off", "without any readable item"),
])
def test_unreadable(keichan, text, message):
    with pytest.raises(ObservationError, match=message):
        parse_fixline(text, keichan, ASPECTS, CLAIMS)
