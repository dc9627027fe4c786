import pytest

import prompts
from verifier.core.prompting import build_prompt
from verifier.errors import VerifierError


def test_templates_are_package_data():
    assert {"verify_observe", "verify_fixline"} <= set(prompts.names())


def test_fixline_prompt_is_the_articles(keichan):
    spec = build_prompt(keichan, "fixline", ["framing", "facing", "expression"])
    text = spec.render("masterpiece, best quality,\nkeichan, {not a field}")
    assert "Caption: ---\nmasterpiece, best quality,\nkeichan, {not a field}\n---" in text
    assert "judge from the IMAGE" in text
    assert "A. FRAMING — portrait / upper body / cowboy shot / full body" in text
    assert "B. BODY FACING (viewer's perspective) — forward / left / right / back" in text
    assert "C. EXPRESSION" in text
    assert "full body: the whole figure including the feet is in frame" in text  # the policy's definition
    assert '"FIX: <letter>=<what image actually shows> (caption says <claim>), ..."' in text
    assert spec.schema is None and spec.sends_caption


def test_observe_prompt_sends_no_caption_and_has_a_schema(keichan):
    spec = build_prompt(keichan, "observe", ["framing", "view"])
    assert not spec.sends_caption and spec.render("CAPTION TEXT") == spec.text
    assert "CAPTION TEXT" not in spec.render("CAPTION TEXT")
    assert "cowboy shot: from mid-thigh up; the knees are not in frame" in spec.text
    assert set(spec.schema["properties"]) == {"framing", "view", "note"}


def test_prompt_sha_changes_with_what_shapes_the_request(keichan):
    a = build_prompt(keichan, "observe", ["framing"])
    assert a.sha == build_prompt(keichan, "observe", ["framing"]).sha
    assert a.sha != build_prompt(keichan, "observe", ["framing", "view"]).sha
    assert a.sha != build_prompt(keichan, "fixline", ["framing"]).sha
    assert a.sha != build_prompt(keichan, "observe", ["framing"], image_size=512).sha
    assert a.sha != build_prompt(keichan, "observe", ["framing"], image_format="png").sha


def test_bad_aspect_or_protocol(keichan):
    with pytest.raises(VerifierError, match="no aspect 'pose' in the policy"):
        build_prompt(keichan, "observe", ["framing", "pose"])
    with pytest.raises(VerifierError, match="protocol must be"):
        build_prompt(keichan, "json", ["framing"])
