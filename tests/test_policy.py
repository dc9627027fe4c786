import pytest

from captions.errors import PolicyError
from captions.policy import load_policy

MINIMAL = "trigger: keichan\n"


def write(tmp_path, text):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_examples_load(keichan, kanachan):
    assert keichan.trigger == "keichan"
    assert keichan.kept == ["blunt bangs", "long sidelocks", "half updo", "braid", "blue ribbon"]
    assert keichan.rating_for("nude") == "explicit" and keichan.rating_for("tshirt") == "safe"
    assert kanachan.absorbed == ["brown hair", "brown eyes"]
    assert "side ponytail" in kanachan.kept


def test_minimal_policy_has_the_seed_defaults(tmp_path):
    pol = load_policy(write(tmp_path, MINIMAL))
    assert pol.quality == ["masterpiece", "best quality", "score_7"]
    assert pol.subject == ["1girl", "solo"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MINIMAL + "trigerr: x\n", "unknown key 'trigerr'"),
        (MINIMAL + "aspects:\n  framing:\n    values:\n      full body: {tagz: [full body]}\n",
         "unknown key 'aspects.framing.values.full body.tagz'"),
        (MINIMAL + "aspects:\n  mood: {values: {}}\n", "unknown key 'aspects.mood'"),
        ("trigger: ''\n", "trigger must not be empty"),
        (MINIMAL + "rating: {by_outfit: {nude: explicit}}\n", "'nude' is not a value of aspect 'outfit'"),
        (MINIMAL + "rating: {default: general}\n", "rating.default"),
        (MINIMAL + "nl: [[{text: 'A {mood} girl.'}]]\n", "unknown placeholder {mood}"),
        (MINIMAL + "aspects:\n  framing:\n    priority: [portrait]\n    values: {full body: {}}\n",
         "'portrait' is not one of the values"),
        ("trigger: [unclosed\n", "not valid YAML"),
        ("- a list\n", "expected a mapping"),
        (MINIMAL + "source: x\n", "unknown key 'source'"),
    ],
)
def test_bad_policies_name_the_file_and_the_problem(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert message in str(info.value)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)


def test_missing_policy_file(tmp_path):
    with pytest.raises(PolicyError, match="no such policy file"):
        load_policy(tmp_path / "nope.yaml")


def test_tags_are_normalised_and_csv_is_relative_to_the_policy(tmp_path):
    pol = load_policy(write(tmp_path, MINIMAL + "kept: [Side_Ponytail, '(ahoge:1.2)']\ntags_csv: tags/danbooru.csv\n"))
    assert pol.kept == ["side ponytail", "ahoge"]
    assert pol.tags_csv_path() == (tmp_path / "tags" / "danbooru.csv").resolve()
