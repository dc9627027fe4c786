import pytest

from captions.tags import dedupe, has_emphasis, normalize_tag, prompt_tags, strip_emphasis, underscore_free


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("(hair intakes:1.5)", "hair intakes"),
        ("((smile))", "smile"),
        ("[blue ribbon]", "blue ribbon"),
        ("{blonde hair}", "blonde hair"),
        ("(full body: 1.5)", "full body"),
        ("Cowboy_Shot", "cowboy shot"),
        ("score_7", "score_7"),
        ("score_8_up", "score_8_up"),
        ("  side   ponytail ", "side ponytail"),
        ("saber (fate)", "saber (fate)"),
        (r"saber \(fate\)", "saber (fate)"),
        ("t-shirt", "t-shirt"),
    ],
)
def test_normalize_tag(raw, want):
    assert normalize_tag(raw) == want


def test_prompt_tags_strips_weights_spanning_tags_and_loras():
    prompt = "(blue eyes, blonde hair:1.2), <lora:keichan:0.8>, ((smile)), BREAK standing, smile, Full_Body"
    assert prompt_tags(prompt) == ["blue eyes", "blonde hair", "smile", "standing", "full body"]


def test_prompt_tags_multiline():
    assert prompt_tags("1girl, solo,\nblonde hair,\n(hair intakes:1.5)") == ["1girl", "solo", "blonde hair", "hair intakes"]


def test_dedupe_keeps_first_position():
    assert dedupe(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("tag", "weighted"),
    [("(smile:1.2)", True), ("((smile))", True), ("[smile]", True), ("smile", False),
     ("saber (fate)", False), (r"saber \(fate\)", False), ("smile:1.3", True)],
)
def test_has_emphasis(tag, weighted):
    assert has_emphasis(tag) is weighted


@pytest.mark.parametrize(("tag", "ok"), [("side_ponytail", False), ("score_7", True), ("side ponytail", True)])
def test_underscore_free(tag, ok):
    assert underscore_free(tag) is ok


def test_strip_emphasis_keeps_escaped_parens():
    assert strip_emphasis(r"(kaname madoka \(cosplay\):1.1)") == "kaname madoka (cosplay)"
