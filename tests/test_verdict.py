import json

import pytest

from captions import Facts
from verifier.core.answers import interpret
from verifier.core.backends import Reply
from verifier.core.observation import AspectObservation, Observation
from verifier.core.prompting import build_prompt
from verifier.core.verdict import ERROR, FIX, OK, REFUSED, FixItem, judge

ASPECTS = ["framing", "view", "facing", "expression"]
CLAIMS = Facts(framing="full body", view="front", facing="forward", expression="smile")


def obs(**values):
    return Observation({a: AspectObservation(v, a == "framing") for a, v in values.items()})


def test_judge_ok_and_fix():
    assert judge(obs(framing="full body", view="front", facing="forward", expression="smile"), CLAIMS, ASPECTS).status == OK
    v = judge(obs(framing="cowboy shot", view="front", facing="forward", expression="calm"), CLAIMS, ASPECTS)
    assert v.status == FIX
    assert v.fixes == (FixItem("framing", "full body", "cowboy shot", True), FixItem("expression", "smile", "calm"))
    assert str(v.fixes[0]) == "framing: image shows cowboy shot (caption says full body) (borderline)"


def test_no_claim_cannot_be_contradicted_and_undetermined_claim_is_refused():
    behind = Facts(framing="full body", view="from behind", facing="back", expression=None)
    seen = obs(framing="full body", view="from behind", facing="back", expression=None)
    assert judge(seen, behind, ASPECTS).status == OK  # no face, no expression claimed: fine
    v = judge(obs(framing="full body", view="front", facing="forward", expression=None), CLAIMS, ASPECTS)
    assert v.status == REFUSED and "could not determine expression" in v.reason  # claimed, unchecked: never OK
    assert judge(Observation({}), CLAIMS, ["framing"]).status == REFUSED


@pytest.fixture(scope="module")
def observe(keichan):
    return build_prompt(keichan, "observe", ASPECTS)


@pytest.fixture(scope="module")
def fixline(keichan):
    return build_prompt(keichan, "fixline", ASPECTS)


def _json(**v):
    return json.dumps({a: {"value": x, "borderline": False} for a, x in v.items()} | {"note": None})


GOOD = dict(framing="full body", view="front", facing="forward", expression="smile")


@pytest.mark.parametrize("reply, why", [
    (Reply(None, refusal="I can't help with that."), "refused: I can't help"),
    (Reply(None, finish_reason="content_filter"), "content_filter"),
    (Reply("", finish_reason="SAFETY"), "SAFETY"),
    (Reply(_json(**GOOD), finish_reason="content_filter"), "content_filter"),  # filtered is never OK
    (Reply("   ", finish_reason="stop"), "empty answer"),
    (Reply("I'm sorry, but I can't help with evaluating this image.", finish_reason="stop"), "declined"),
    (Reply("As an AI, I cannot analyze images of people.", finish_reason="stop"), "declined"),
])
def test_refusals_are_never_ok(keichan, observe, fixline, reply, why):
    for spec in (observe, fixline):
        v = interpret(reply, spec, keichan, CLAIMS)
        assert v.status == REFUSED and why in v.reason


def test_garbage_and_cut_off_answers_are_errors(keichan, observe):
    v = interpret(Reply("The image shows a girl.", finish_reason="stop"), observe, keichan, CLAIMS)
    assert v.status == ERROR and "unreadable answer" in v.reason
    v = interpret(Reply('{"framing": {"val', finish_reason="length"), observe, keichan, CLAIMS)
    assert v.status == ERROR and "token limit" in v.reason


def test_interpret_both_protocols(keichan, observe, fixline):
    assert interpret(Reply(_json(**GOOD), finish_reason="stop"), observe, keichan, CLAIMS).status == OK
    v = interpret(Reply(_json(**{**GOOD, "framing": "cowboy shot"}), finish_reason="STOP"), observe, keichan, CLAIMS)
    assert v.status == FIX and v.fixes[0].image == "cowboy shot"  # an upper-case STOP is a normal finish
    v = interpret(Reply("FIX: A=cowboy shot (caption says full body)"), fixline, keichan, CLAIMS)
    assert v.status == FIX and [f.aspect for f in v.fixes] == ["framing"]
    assert v.claims == {"framing": "full body", "view": "front", "facing": "forward", "expression": "smile"}
