"""`capcheck init`'s guesses, pure: the trigger, the common tags, the starter file."""

import json

from PIL import Image

from captions.init import guess, render_starter, write_starter
from captions.policy import load_policy

OLD = [["kanachan", "1girl", "solo", "angry", "portrait", "front view", "white background"],
       ["kanachan", "1girl", "solo", "smile", "upper body", "white background"],
       ["1girl", "kanachan", "solo", "frown", "cowboy shot", "white background"]]


def test_the_trigger_is_the_unknown_token_in_nearly_every_caption():
    g = guess(OLD)
    assert g.trigger == "kanachan" and g.captions == 3 and g.counts["angry"] == 1
    assert guess([["a girl", "smile"], ["smile"]]).trigger is None  # in half the captions only


def test_with_the_tag_csv_a_danbooru_tag_is_never_the_trigger(vocab):
    lists = [["long hair", "kanachan", "smile"], ["long hair", "kanachan"]]
    assert guess(lists, vocab).trigger == "kanachan"
    assert guess([["masterpiece", "kanachan"]] * 3, vocab).quality == ["masterpiece"]


def test_common_tags_are_kept_candidates_and_the_starter_loads(tmp_path):
    lists = [["kanachan", "long hair", "blue eyes", t] for t in ("smile", "frown", "angry", "smile", "calm")]
    g = guess(lists)
    assert g.common == ["long hair", "blue eyes"]
    path = tmp_path / "p.yaml"
    path.write_text(render_starter(g, None, "the captions"))
    policy = load_policy(path)
    assert policy.trigger == "kanachan" and policy.kept == ["long hair", "blue eyes"]
    assert policy.aspect("framing") is not None and "#       5  kanachan" in path.read_text()


def test_from_sidecars(tmp_path):
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.png")
        (tmp_path / f"{i}.json").write_text(json.dumps({"prompt": f"keichan, 1girl, (smile:1.2), pose{i}"}))
    path, g = write_starter(tmp_path, from_sidecars=True)
    assert g.trigger == "keichan" and path == tmp_path / ".capcheck" / "policy.yaml"
