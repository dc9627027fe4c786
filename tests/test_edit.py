import pytest

from captions import caption_from_prompt, facts_from_caption, parse
from captions.edit import set_facts

PROMPTS = [
    "1girl, bikini, (full body:1.5), three quarters view, body turned to the left, light smile",
    "1girl, yukata, full body, full profile, body facing right, calm",
    "1girl, blue dress, full body, front view, looking at viewer, smile",
    "1girl, gym uniform, buruma, full body, from behind, looking back",
    "1girl, nude, bust shot, head and shoulders, front view, looking at viewer, (angry:1.2)",
    "1girl, t-shirt, cowboy shot, three quarters view, body turned to the right, soft smile",
]


def changed_lines(a: str, b: str) -> list[int]:
    la, lb = a.split("\n"), b.split("\n")
    assert len(la) == len(lb)
    return [i for i, (x, y) in enumerate(zip(la, lb, strict=True)) if x != y]


def test_framing_fix_swaps_one_tag_and_nothing_else(keichan):
    _, text = caption_from_prompt(PROMPTS[0], keichan)
    edit = set_facts(text, keichan, {"framing": "cowboy shot"})
    assert changed_lines(text, edit.text) == [4]
    assert edit.text.split("\n")[4] == "light smile, bikini, three quarter view, cowboy shot,"
    assert edit.after.framing == "cowboy shot" and edit.before.framing == "full body" and not edit.notes


def test_only_the_edited_item_moves_inside_a_tag_line(keichan):
    text = "masterpiece, best quality, score_7, safe,\nkeichan,\nsmile ,  yukata,three quarter view ,full body ,\n"
    edit = set_facts(text, keichan, {"framing": "cowboy shot"})
    assert edit.text == "masterpiece, best quality, score_7, safe,\nkeichan,\nsmile ,  yukata,three quarter view ,cowboy shot ,\n"


def test_facing_fix_changes_the_direction_words(keichan):
    _, text = caption_from_prompt(PROMPTS[0], keichan)
    edit = set_facts(text, keichan, {"facing": "right"})
    assert changed_lines(text, edit.text) == [2]
    assert "turned slightly to the right, with a soft smile." in edit.text
    assert facts_from_caption(parse(edit.text), keichan).facing == "right"


def test_view_fix_rerenders_the_sentences_the_view_selects(keichan):
    _, text = caption_from_prompt(PROMPTS[1], keichan)
    edit = set_facts(text, keichan, {"view": "three-quarter"})
    assert changed_lines(text, edit.text) == [2, 4]
    assert edit.text.split("\n")[2].startswith("A three-quarter view of a young girl with her body turned slightly "
                                               "to the right, with a calm expression. Her long hair intakes are visible")
    assert "three quarter view" in edit.text.split("\n")[4] and "profile" not in edit.text.split("\n")[4]


def test_expression_fix_changes_tag_and_word(keichan):
    _, text = caption_from_prompt(PROMPTS[2], keichan)
    edit = set_facts(text, keichan, {"expression": "neutral"})
    assert changed_lines(text, edit.text) == [2, 4]
    assert "with a neutral expression." in edit.text and "expressionless," in edit.text and "smile," not in edit.text


def test_facing_forward_implies_a_front_view(keichan):
    _, text = caption_from_prompt(PROMPTS[0], keichan)
    edit = set_facts(text, keichan, {"facing": "forward"})
    assert edit.after.view == "front" and edit.after.facing == "forward"
    assert "A standing front view of a young girl with a soft smile." in edit.text and "facing viewer" in edit.text


def test_a_tag_nobody_wrote_is_inserted_where_compose_would(keichan):
    text = "masterpiece, best quality, score_7, safe,\n1girl, solo, keichan,\nsmile, bikini, standing, full body,\n"
    edit = set_facts(text, keichan, {"view": "profile"})
    assert edit.text.split("\n")[2] == "smile, bikini, standing, profile, full body,"


def test_noop_idempotent_crlf_and_bad_value(keichan):
    _, text = caption_from_prompt(PROMPTS[3], keichan)
    assert set_facts(text, keichan, {"framing": "full body"}).text == text
    once = set_facts(text, keichan, {"framing": "cowboy shot"}).text
    assert set_facts(once, keichan, {"framing": "cowboy shot"}).text == once
    crlf = text.replace("\n", "\r\n")
    edited = set_facts(crlf, keichan, {"framing": "cowboy shot"}).text
    assert edited == once.replace("\n", "\r\n")
    with pytest.raises(ValueError, match="not a value of aspect 'framing'"):
        set_facts(text, keichan, {"framing": "knee shot"})


@pytest.mark.parametrize("prompt", PROMPTS)
def test_every_value_of_every_aspect_sticks_and_stays_local(keichan, prompt):
    _, text = caption_from_prompt(prompt, keichan)
    lines = text.split("\n")
    for aspect in ("framing", "view", "facing", "expression"):
        for value in keichan.aspect(aspect).values:
            edit = set_facts(text, keichan, {aspect: value})
            got = facts_from_caption(parse(edit.text), keichan).get(aspect)
            if aspect == "facing" and value in ("left", "right") and edit.before.view not in ("three-quarter", "profile"):
                # Keichan writes left/right only inside the three-quarter and profile
                # sentences: on a front view there is nowhere to say it, and the edit says so.
                assert edit.text == text and any("cannot say" in n for n in edit.notes), edit
                continue
            assert got == value and not edit.notes, (aspect, value, edit.text, edit.notes)
            for i in changed_lines(text, edit.text):
                assert lines[i] not in (lines[0], lines[1], lines[3], lines[-2]), (aspect, value, i)  # prefix, subject, kept, background


def test_hand_edited_nl_gets_only_the_placeholder_swapped(kanachan):
    _, built = caption_from_prompt("1girl, school uniform, upper body, three quarter view, facing left, smile", kanachan)
    nl_line = next(line for line in built.split("\n") if line.startswith("A three-quarter view"))
    first = nl_line.split(". ")[0] + "."
    assert first.startswith("A three-quarter view of a young girl facing left")
    text = built.replace(nl_line, first + " She has tied her hair up herself today.")  # a person's own sentence
    edit = set_facts(text, kanachan, {"facing": "right"})
    assert edit.after.facing == "right" and not edit.notes
    new_line = next(line for line in edit.text.split("\n") if line.startswith("A three-quarter view"))
    assert new_line == first.replace("facing left", "facing right") + " She has tied her hair up herself today."
