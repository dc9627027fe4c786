"""eval's checklist: what a sample must show, from its own prompt, the spec, and the policy's defaults."""

from pathlib import Path

import pytest

from verifier.errors import VerifierError
from verifier.eval.sample import Sample
from verifier.eval.spec import Wanted, checklist, load_spec

ASPECTS = ["framing", "view", "facing", "expression"]
NEGATIVE = ("worst quality, low quality, score_4, (ahoge:1.5), antenna hair, (hime cut:1.3), multiple views, "
            "watermark")


def sample(prompt: str, negative: str = NEGATIVE) -> Sample:
    return Sample(Path("x.png"), "capcheck", prompt, negative, 42, None, 0.0, 0)


def test_defaults_are_the_absorbed_tags_and_the_negative_prompts_visual_tags(keichan):
    checks = checklist(sample("keichan, 1girl, solo, upper body, facing left"), keichan, Wanted(), ASPECTS)
    assert checks.show == ("blonde hair", "blue eyes", "hair intakes", "long hair")  # what the trigger absorbs
    assert checks.hide == ("ahoge", "antenna hair", "hime cut", "multiple views")  # no quality, score or meta words
    assert checks.aspects == {"framing": "upper body", "facing": "left"}  # what the prompt says, nothing more


def test_an_aspect_the_prompt_does_not_name_is_not_scored(keichan):
    checks = checklist(sample("keichan, 1girl, solo"), keichan, Wanted(), ASPECTS)
    assert checks.aspects == {}  # the policy's defaults (a guess) are not checks
    smiling = checklist(sample("keichan, 1girl, solo, cowboy shot, smile"), keichan, Wanted(), ["framing"])
    assert smiling.aspects == {"framing": "cowboy shot"}  # expression is not among the checked aspects


def test_the_spec_and_the_command_line_replace_the_defaults(keichan):
    wanted = Wanted(["blonde hair"], ["ahoge", "blonde hair"])
    with pytest.raises(VerifierError, match="blonde hair: in both must_show and must_not_show"):
        wanted.check("spec.yaml")
    checks = checklist(sample("keichan, 1girl"), keichan, Wanted(["blonde hair"], []), ASPECTS)
    assert (checks.show, checks.hide) == (("blonde hair",), ())


def test_spec_file_may_hold_only_the_two_lists_and_names_an_unknown_key(tmp_path):
    spec = tmp_path / "eval.yaml"
    spec.write_text("must_show: blonde hair, long hair\nmust_not_show: [ahoge]\n")
    loaded = load_spec(spec)
    assert (loaded.prompts, loaded.must_show, loaded.must_not_show) == ({}, ["blonde hair", "long hair"], ["ahoge"])
    spec.write_text("eval:\n  prompts: {K: 'keichan, 1girl'}\n  must_show: [blonde hair]\n")  # a train.yaml's section
    assert load_spec(spec).prompts == {"K": "keichan, 1girl"}
    spec.write_text("must_show: [blonde hair]\nseed: [1]\n")
    with pytest.raises(VerifierError, match="unknown key 'seed'") as exc:
        load_spec(spec)
    assert str(exc.value).startswith(str(spec))
    spec.write_text("must_show: [unclosed\n")
    with pytest.raises(VerifierError, match="not valid YAML"):
        load_spec(spec)
