import json

import pytest

from verifier.core.observation import (
    CANNOT,
    AspectObservation,
    Observation,
    ObservationError,
    extract_json,
    observe_schema,
    parse_observe,
    resolve,
)

ASPECTS = ["framing", "view", "facing", "expression"]


@pytest.mark.parametrize("text, aspect, value", [
    ("cowboy shot", "framing", "cowboy shot"),
    ("Cowboy_Shot", "framing", "cowboy shot"),
    ("full-body view", "framing", "full body"),  # the NL phrase
    ("bust shot", "framing", "portrait"),  # a prompt keyword
    ("three quarters view", "view", "three-quarter"),
    ("three-quarter", "view", "three-quarter"),
    ("side profile", "view", "profile"),
    ("softly smiling", "expression", "soft smile"),
    ("light smile", "expression", "soft smile"),  # the Danbooru tag the policy writes
    ("neutral expression", "expression", "neutral"),
    ("facing left", "facing", "left"),
    ("Forward.", "facing", "forward"),
    ("the left", "facing", "left"),
])
def test_resolve_spellings(keichan, text, aspect, value):
    assert resolve(keichan, aspect, text) == value


def test_resolve_unknown_is_none(keichan):
    assert resolve(keichan, "framing", "medium shot") is None
    assert resolve(keichan, "nope", "x") is None


def test_schema_is_strict_and_closed(keichan):
    schema = observe_schema(keichan, ["framing", "facing"])
    assert schema["required"] == ["framing", "facing", "note"]
    assert schema["additionalProperties"] is False
    framing = schema["properties"]["framing"]
    assert framing["properties"]["value"]["enum"] == ["portrait", "upper body", "cowboy shot", "full body", CANNOT]
    assert framing["required"] == ["value", "borderline"] and framing["additionalProperties"] is False
    assert schema["properties"]["note"]["type"] == ["string", "null"]


def _answer(**values):
    return {a: {"value": v, "borderline": a == "framing"} for a, v in values.items()} | {"note": None}


def test_parse_plain_fenced_and_chatty(keichan):
    data = _answer(framing="cowboy shot", view="front", facing="forward", expression="smile")
    want = Observation({
        "framing": AspectObservation("cowboy shot", True), "view": AspectObservation("front"),
        "facing": AspectObservation("forward"), "expression": AspectObservation("smile")})
    for text in (json.dumps(data), f"```json\n{json.dumps(data, indent=2)}\n```",
                 f"Sure! Here you go: {json.dumps(data)} Hope that helps {{:"):
        assert parse_observe(text, keichan, ASPECTS) == want


def test_parse_loose_shapes_and_undetermined(keichan):
    text = json.dumps({"Framing": "Full Body", "view": {"value": "from behind"}, "facing": "back",
                       "expression": {"value": "cannot determine", "borderline": False}, "note": "  back turned "})
    obs = parse_observe(text, keichan, ASPECTS)
    assert obs.aspects["framing"].value == "full body"
    assert obs.aspects["expression"].value is None
    assert obs.note == "back turned"
    assert parse_observe(json.dumps({**_answer(framing="portrait", view="front", facing="forward"),
                                     "expression": {"value": None, "borderline": False}}),
                         keichan, ASPECTS).aspects["expression"].value is None


@pytest.mark.parametrize("text, message", [
    ("I can see a girl.", "no JSON"),
    (json.dumps({"framing": {"value": "medium shot"}}), "'medium shot' is not one of"),
    (json.dumps({"framing": "full body"}), "no 'view'"),
    (json.dumps({"framing": {"value": 3}}), "expected a value"),
])
def test_parse_errors_say_why(keichan, text, message):
    with pytest.raises(ObservationError, match=message):
        parse_observe(text, keichan, ASPECTS if "view" in message else ["framing"])


def test_extract_json_skips_broken_braces():
    assert extract_json('note {not json} then {"a": 1}') == {"a": 1}


def test_observation_round_trips_through_dict():
    obs = Observation({"framing": AspectObservation("full body", True), "facing": AspectObservation("left", implicit=True)},
                      "n")
    assert Observation.from_dict(json.loads(json.dumps(obs.as_dict()))) == obs
