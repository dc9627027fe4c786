import pytest

from captions import caption_from_prompt, facts_from_caption, facts_from_prompt, parse
from captions.facts import nl_facts

BUST = ("1girl, solo, teenager, blonde hair, long hair, blue eyes, blunt bangs, (hair intakes:1.5), long sidelocks, "
        "half updo, braid, blue ribbon, bare shoulders, nude, bust shot, head and shoulders, face focus, "
        "close to head, front view, looking at viewer, {expr}, simple background, white background")


@pytest.mark.parametrize(
    ("prompt", "want"),
    [
        (BUST.format(expr="smile"), dict(framing="portrait", view="front", facing="forward", expression="smile",
                                         outfit=None, rating="safe")),
        # expression by priority: angry > ... > smile
        (BUST.format(expr="smile, (angry:1.3)"), dict(expression="angry")),
        (BUST.format(expr="light smile, smile"), dict(expression="soft smile")),
        ("bikini, (full body:1.5), (three quarters view:1.5), body turned to the left",
         dict(framing="full body", view="three-quarter", facing="left", outfit="bikini", rating="sensitive")),
        ("from behind, full body, gym uniform", dict(view="from behind", facing="back", rating="sensitive")),
        ("nude, full body, full profile, body facing right", dict(view="profile", facing="right", rating="explicit",
                                                                  outfit="nude")),
        ("blue dress, cowboy shot", dict(outfit="dress", framing="cowboy shot", view="front", rating="safe")),
        ("standing, looking back", dict(view="front", expression=None)),
    ],
)
def test_facts_from_prompt(keichan, prompt, want):
    facts = facts_from_prompt(prompt, keichan).as_dict()
    assert {k: facts[k] for k in want} == want


@pytest.mark.parametrize(
    "prompt",
    [
        BUST.format(expr="smile"),
        BUST.format(expr="calm"),
        "bikini, full body, three quarters view, body turned to the left, light smile",
        "yukata, full body, full profile, body facing right, calm",
        "nude, full body, from behind",
        "school swimsuit, cowboy shot, front view, angry",
    ],
)
def test_built_captions_read_back_to_the_same_facts(keichan, prompt):
    facts, text = caption_from_prompt(prompt, keichan)
    assert facts_from_caption(parse(text), keichan) == facts


def test_nl_facts_give_the_span_of_the_direction_phrase(keichan):
    _, text = caption_from_prompt("bikini, full body, three quarters view, body turned to the left, smile", keichan)
    cap = parse(text)
    facing = [f for f in nl_facts(cap, keichan) if f.aspect == "facing"]
    assert len(facing) == 1
    line = cap.lines[facing[0].line].value
    assert line[facing[0].start:facing[0].end] == "left"


def test_hand_written_caption_facts(kanachan):
    cap = parse("kanachan, 1girl, solo, angry, portrait, front view, white background")
    facts = facts_from_caption(cap, kanachan)
    assert (facts.framing, facts.expression, facts.view, facts.facing, facts.rating) == (
        "portrait", "angry", "front", "forward", None)


def test_hand_written_nl_direction(kanachan):
    cap = parse("safe, 1girl, kanachan,\nA young girl in profile facing the viewer's left. She looks calm.\nprofile,\n")
    assert facts_from_caption(cap, kanachan).facing == "left"


def _corpus_captions():
    from test_lint_corpus import corpus

    return [parse(text) for _, text in corpus(600) if text.strip()]


def test_the_outfit_alone_is_what_all_the_facts_say(keichan, kanachan, tmp_path):
    """lint reads only the outfit (`outfit_from_caption`): over the lint corpus it must be the outfit
    of the whole facts, for each example policy, the generic one, and a policy where another aspect's
    value implies an outfit (there the whole facts are read when the caption says none itself)."""
    from pathlib import Path

    from captions.facts import outfit_from_caption
    from captions.generic import generic_policy
    from captions.policy import load_policy

    text = (Path(__file__).resolve().parent.parent / "examples" / "keichan" / "policy.yaml").read_text()
    assert "implies: {facing: back}" in text
    implying = tmp_path / "policy.yaml"
    implying.write_text(text.replace("implies: {facing: back}", "implies: {facing: back, outfit: nude}"))
    implying = load_policy(implying)
    assert "outfit" in implying.aspects.implied and "outfit" not in keichan.aspects.implied
    behind = parse("masterpiece, safe,\n1girl, solo, keichan,\nfrom behind, full body,\nwhite background\n")
    captions = [*_corpus_captions(), behind]
    filled = 0
    for policy in (keichan, kanachan, generic_policy(), implying):
        for caption in captions:
            whole = facts_from_caption(caption, policy).outfit
            assert outfit_from_caption(caption, policy) == whole, caption
            filled += policy is implying and whole == "nude" and "nude" not in caption.tags
    assert filled > 0  # a from-behind caption without an outfit of its own: the fallback ran
