"""The tags audit's pure parts: which tags are asked, probes, verdicts, swaps, trust rates, the wire format."""

import json
from collections import Counter

import pytest

from captions.caption import parse, render
from captions.edit import nl_mentions, remove_tags
from captions.generic import choose_policy, generic_policy
from captions.visual import CAP, COUNT, NAME, QUALITY, RATING, TRIGGER, UNKNOWN
from captions.vocab import builtin
from verifier.core.observation import Observation, ObservationError, parse_observe
from verifier.core.prompting import build_prompt
from verifier.core.tags import (
    ABSENT,
    MAX_ASKED,
    PRESENT,
    audit,
    caption_tags,
    checkable,
    choose_probes,
    find_swaps,
    questions,
    sort_tags,
    trust_rates,
)
from verifier.core.verdict import FIX, OK, TagClaims, judge
from verifier.errors import VerifierError

from conftest import EXAMPLES

GENERIC = generic_policy()


CAPTION = ("masterpiece, best quality, score_7, safe, kanachan, brown hair, 1girl, solo, year 2024, highres, smile, "
           "glasses, cowboy shot, hatsune miku, notatag\n")


def test_checkable_leaves_out_what_no_image_shows(kanachan):
    caption = parse(CAPTION)
    # No tag CSV: the vocabulary capcheck ships decides (a name and a made-up token are not asked).
    assert caption_tags(caption, kanachan) == ["smile", "glasses", "cowboy shot"]
    # A tag a checked aspect owns is that aspect's question.
    assert caption_tags(caption, kanachan, None, frozenset({"cowboy shot", "smile"})) == ["glasses"]
    assert not checkable("1girl", GENERIC) and checkable("long hair", GENERIC)


def test_every_token_left_out_says_why_and_the_trigger_is_guessed_without_a_policy():
    asked, skipped = sort_tags(parse(CAPTION), GENERIC, None, frozenset(), trigger="kanachan")
    assert asked == ["brown hair", "smile", "glasses", "cowboy shot"]
    assert skipped == {"masterpiece": QUALITY, "best quality": QUALITY, "score_7": QUALITY, "safe": RATING,
                       "kanachan": TRIGGER, "1girl": COUNT, "solo": COUNT, "year 2024": QUALITY,
                       "highres": QUALITY, "hatsune miku": UNKNOWN, "notatag": UNKNOWN}
    # The generic policy names no trigger: questions() guesses it from the dataset, as init does.
    captions = {f"{i}": parse(f"testchar, 1girl, solo, glasses, halo, {hair} hair\n")
                for i, hair in enumerate(["blonde", "red", "black", "white"])}
    asked = questions(captions, GENERIC, None, [])
    assert all("testchar" not in q.tags and q.not_asked["testchar"] == TRIGGER for q in asked.values())
    assert asked["0"].tags == ["glasses", "halo", "blonde hair"]


def test_the_tags_asked_per_image_are_capped_and_the_rest_said():
    # letters only, a few words: the line stays a tag line (a `.` or a long run of words would make it NL)
    plain = [t for t in sorted(builtin().tags) if t.replace(" ", "").isalpha() and len(t.split()) <= 3]
    huge = parse(", ".join(plain[:5750]) + "\n")
    asked, skipped = sort_tags(huge, GENERIC, None)
    assert len(asked) == MAX_ASKED
    assert sum(1 for why in skipped.values() if why == CAP) > 5000


def test_with_the_tag_csv_only_general_tags_are_asked(kanachan, vocab):
    # A character name and an unknown tag are lint's business, not the model's.
    assert caption_tags(parse(CAPTION), kanachan, vocab) == ["smile", "glasses", "cowboy shot"]
    _, skipped = sort_tags(parse(CAPTION), kanachan, vocab)
    assert skipped["hatsune miku"] == NAME and skipped["notatag"] == UNKNOWN and skipped["kanachan"] == TRIGGER


def test_probes_ask_the_rival_outfit_first_and_never_the_captions_own():
    used = Counter({"bikini": 3, "nude": 2, "long hair": 9, "hat": 1, "dress": 4})
    for seed in map(str, range(20)):
        probes = choose_probes(["bikini", "long hair"], used, GENERIC, seed, n=3)
        assert "nude" in probes and "dress" in probes  # rivals: other outfit values the dataset uses
        assert not {"bikini", "long hair"} & set(probes) and len(probes) == 3
    assert choose_probes(["bikini"], used, GENERIC, "x", n=2) == choose_probes(["bikini"], used, GENERIC, "x", n=2)


def test_questions_cover_every_caption_and_probe_only_dataset_tags():
    asked = questions({"a": parse("nude, long hair\n"), "b": parse("bikini, long hair, hat\n")}, GENERIC, None, [])
    assert asked["a"][0] == ["nude", "long hair"] and set(asked["a"][1]) == {"bikini", "hat"}
    assert asked["b"][1] == ["nude"]


def test_audit_refutes_suggests_and_flags_a_mismatch():
    answers = {"a": ABSENT, "b": PRESENT, "c": "cannot determine", "p": PRESENT, "q": ABSENT}
    a = audit(answers, ["a", "b", "c"], ["p", "q"])
    assert (a.refuted, a.confirmed, a.suggested, a.probes_answered) == (["a"], ["b"], ["p"], 2)
    assert a.undetermined == ["c"] and not a.mismatch
    many = audit({t: ABSENT for t in "abc"} | {"d": PRESENT}, list("abcd"), [])
    assert many.mismatch and not audit({t: ABSENT for t in "ab"}, list("ab"), []).mismatch  # too few answered


def test_verdict_tag_items_and_mismatch_items_are_borderline(keichan):
    obs = Observation({}, None, {"glasses": ABSENT, "smile": PRESENT, "hat": PRESENT, "long hair": PRESENT})
    from captions.facts import Facts

    v = judge(obs, Facts(), [], TagClaims(("glasses", "smile", "long hair"), ("hat",)))
    assert v.status == FIX and [(f.aspect, f.caption, f.image, f.borderline) for f in v.fixes] == [
        ("tags", "glasses", "absent", False)]
    assert v.claims == {"tags": ["glasses", "smile", "long hair"], "probes": ["hat"], "not_asked": {}}
    assert judge(obs, Facts(), [], TagClaims(("smile",), ("glasses",))).status == OK  # a probe is never a fix
    swapped = judge(Observation({}, None, {t: ABSENT for t in "abc"}), Facts(), [], TagClaims(tuple("abc")))
    assert all(f.borderline for f in swapped.fixes) and swapped.reason.startswith("mismatch")


def test_a_swap_is_a_pair_that_fits_each_others_caption():
    shared = ["long hair", "blue eyes"]
    bikini_caption, nude_caption = [*shared, "bikini", "navel"], [*shared, "nude", "collarbone"]
    # The bikini image carries the nude caption and was asked about bikini (a probe), and the reverse.
    on_bikini_image = {"long hair": PRESENT, "blue eyes": PRESENT, "nude": ABSENT, "collarbone": ABSENT,
                       "bikini": PRESENT}
    on_nude_image = {"long hair": PRESENT, "blue eyes": PRESENT, "bikini": ABSENT, "navel": ABSENT, "nude": PRESENT}
    third = {"long hair": PRESENT, "blue eyes": PRESENT, "hat": ABSENT, "glasses": ABSENT}
    found = find_swaps({"bikini.png": (nude_caption, on_bikini_image), "nude.png": (bikini_caption, on_nude_image),
                        "third.png": ([*shared, "hat", "glasses"], third)})
    assert found == [("bikini.png", "nude.png")]
    # Shared tags alone never make a swap.
    assert find_swaps({"x": (["long hair", "hat"], {"long hair": PRESENT, "hat": ABSENT}),
                       "y": (["long hair", "cap"], {"long hair": PRESENT, "cap": ABSENT})}) == []


def test_trust_rates():
    rates = trust_rates([audit({"a": ABSENT, "b": PRESENT, "p": PRESENT, "q": ABSENT}, ["a", "b"], ["p", "q"]),
                         audit({"c": PRESENT, "r": PRESENT}, ["c"], ["r"])])
    assert (rates.yes_rate, rates.disagreement_rate) == (2 / 3, 1 / 3)
    assert rates.line().startswith("tags: probe yes-rate 67% (2 of 3 probes called present)")
    assert trust_rates([]).yes_rate is None


def test_wire_format_is_strict_and_keyed_by_the_tag_text():
    spec = build_prompt(GENERIC, "observe", ["framing", "tags"])
    text, schema = spec.request("ignored", ["school swimsuit", "long hair"])
    tags = schema["properties"]["tags"]
    assert tags == {"type": "object", "additionalProperties": False, "required": ["school swimsuit", "long hair"],
                    "properties": {t: {"type": "string", "enum": ["present", "absent", "cannot determine"]}
                                   for t in ("school swimsuit", "long hair")}}
    assert schema["required"] == ["framing", "tags", "note"] and schema["additionalProperties"] is False
    assert "- school swimsuit\n- long hair" in text and "{tags}" not in text
    assert spec.checked == ["framing", "tags"] and spec.sha != build_prompt(GENERIC, "observe", ["framing"]).sha
    answer = json.dumps({"framing": {"value": "full body", "borderline": False},
                         "tags": {"school_swimsuit": "Present", "long hair": "no"}, "note": None})
    obs = parse_observe(answer, GENERIC, ["framing"], ["school swimsuit", "long hair", "hat"])
    assert obs.tags == {"school swimsuit": PRESENT, "long hair": ABSENT, "hat": "cannot determine"}
    assert Observation.from_dict(obs.as_dict()) == obs
    with pytest.raises(ObservationError, match="no 'tags' object"):
        parse_observe('{"framing": "full body"}', GENERIC, ["framing"], ["hat"])
    with pytest.raises(ObservationError, match="'hat': 'maybe'"):
        parse_observe('{"tags": {"hat": "maybe"}}', GENERIC, [], ["hat"])
    with pytest.raises(VerifierError, match="the tags audit needs the observe protocol"):
        build_prompt(GENERIC, "fixline", ["framing", "tags"])


def test_remove_tags_touches_only_the_tag_items():
    text = "\ufeffkanachan,1girl ,  glasses, smile,\r\nA girl with glasses smiles.\r\nhat, white background\r\n"
    assert remove_tags(text, ["glasses", "hat"]) == (
        "\ufeffkanachan,1girl ,  smile,\r\nA girl with glasses smiles.\r\nwhite background\r\n")
    assert nl_mentions(text, "glasses") and not nl_mentions(text, "hat") and not nl_mentions("glasses, hat\n", "hat")


def test_a_bom_is_kept_and_never_part_of_a_tag():
    text = "\ufeffkanachan, 1girl, smile\n"
    caption = parse(text)
    assert caption.tags == ["kanachan", "1girl", "smile"] and render(caption) == text


def test_the_policy_without_a_flag(tmp_path):
    assert choose_policy(None, tmp_path).policy == GENERIC
    assert "generic" in choose_policy(None, tmp_path).how
    own = tmp_path / ".capcheck" / "policy.yaml"
    own.parent.mkdir()
    own.write_text((EXAMPLES / "kanachan" / "policy.yaml").read_text())
    assert choose_policy(None, tmp_path).policy.trigger == "kanachan"
    assert choose_policy(EXAMPLES / "keichan" / "policy.yaml", tmp_path).policy.trigger == "keichan"
    assert GENERIC.trigger is None and GENERIC.nl == []


def test_probes_come_from_the_whole_dataset_when_only_some_images_are_checked():
    everyone = [parse("nude, long hair\n"), parse("bikini, long hair\n"), parse("hat\n")]
    asked = questions({"a": parse("bikini, long hair\n")}, GENERIC, None, [], 4, everyone)
    assert set(asked["a"][1]) == {"nude", "hat"}
    assert questions({"a": parse("bikini, long hair\n")}, GENERIC, None, [], 4)["a"][1] == []


def test_the_summary_names_what_was_not_asked_and_the_cap():
    from verifier.core.tag_report import RunTags
    from verifier.core.tags import TagAudit

    over = {f"tag{i}": CAP for i in range(5686)}
    run = RunTags(audits={"a.png": TagAudit(["glasses"], not_asked={"keichan": TRIGGER, "1girl": COUNT}),
                          "b.png": TagAudit(["hat"], not_asked={"keichan": TRIGGER, "score_7": QUALITY, **over})})
    first, cap = run.not_asked_lines()
    assert first.startswith("tags not asked (3 tokens in 2 of 2 captions;")
    assert first.endswith(": keichan (trigger); 1girl (count); score_7 (quality)")
    assert cap == ("tags not asked past the cap of 64 per image: 5686 tags in 1 caption(s) (the first ones in caption "
                   "order were asked)")
    assert run.not_asked_json()["trigger"]["tags"] == {"keichan": 2} and "tag1" in run.not_asked_json()[CAP]["tags"]
