import pytest

from captions.caption import TagLine, TextLine, compose, is_text_line, parse, render

CANONICAL = """masterpiece, best quality, score_7, safe,
1girl, solo, keichan,
A close-up portrait of a young girl with a bright smile looking at the viewer. Her long, thick hair intakes hang down past her shoulders.
blunt bangs, long sidelocks, half updo, braid, blue ribbon,
smile, looking at viewer, portrait,
white background, simple background
"""

KANACHAN_V1 = """masterpiece, best quality, score_7, safe,
1girl, solo, kanachan,
A close-up portrait of a young girl with an angry expression and a slight frown looking directly at the viewer.
Her bound hair with a blue scrunchie is visible on the right side of the image,
and a small antenna of hair rises from the top of her head.
brown eyes, left side ponytail, ahoge, brown hair, double parted bangs, medium hair, blue scrunchie,
angry, frown, looking at viewer, portrait, bare shoulders,
white background, simple background,
"""

OLD = "kanachan, 1girl, solo, angry, portrait, front view, white background"


@pytest.mark.parametrize("text", [CANONICAL, KANACHAN_V1, OLD, OLD + "\n", CANONICAL.replace("\n", "\r\n"),
                                  "a, b,\n\nSome sentence here.\n\n", "", "  \n"])
def test_round_trip_is_exact(text):
    assert render(parse(text)) == text


def test_canonical_structure():
    cap = parse(CANONICAL)
    kinds = [type(line).__name__ for line in cap.lines]
    assert kinds == ["TagLine", "TagLine", "TextLine", "TagLine", "TagLine", "TagLine"]
    assert cap.tags[:7] == ["masterpiece", "best quality", "score_7", "safe", "1girl", "solo", "keichan"]
    assert len(cap.sentences) == 2
    assert cap.lines[-1].trailing_comma is False


def test_old_one_line_caption_keeps_every_tag():
    cap = parse(OLD)
    assert cap.tags == ["kanachan", "1girl", "solo", "angry", "portrait", "front view", "white background"]
    assert cap.sentences == []


def test_wrapped_nl_block_is_text():
    cap = parse(KANACHAN_V1)
    assert len(cap.sentences) == 2
    assert "left side ponytail" in cap.tags and "Her bound hair" not in " ".join(cap.tags)


@pytest.mark.parametrize(
    ("line", "text"),
    [
        ("masterpiece, best quality, score_7, safe,", False),
        ("A view from behind of a young girl.", True),
        ("Her side ponytail with a blue scrunchie is visible on the right side of the image,", True),
        ("and a small antenna of hair rises from the top of her head.", True),
        ("white background, simple background", False),
        ("holding hands, hand on own hip, looking at viewer", False),
        # a tag line whose last tag ends in . ! or ? (658 Danbooru tags do) is still tags
        ("1girl, solo, k-on!", False),
        ("open mouth, ?", False),
        ("1boy, super smash bros.", False),
        ("k-on!", False),
        ("a girl smiles.", True),
        ("Smiling.", True),
        ("She waves, smiling.", True),
    ],
)
def test_is_text_line(line, text):
    assert is_text_line(line) is text


def test_editing_one_line_leaves_others_byte_identical():
    weird = "masterpiece,best quality ,  score_7, safe,\n1girl, solo, keichan,\nfull body, smile\n"
    cap = parse(weird)
    line = cap.lines[2]
    edited = cap.with_line(2, TagLine(tuple("cowboy shot" if t == "full body" else t for t in line.items), False))
    assert render(edited) == "masterpiece,best quality ,  score_7, safe,\n1girl, solo, keichan,\ncowboy shot, smile\n"


def test_compose_puts_comma_on_all_but_last_line():
    text = render(compose([["a", "b"], "One sentence. Two sentences.", [], ["c"]]))
    assert text == "a, b,\nOne sentence. Two sentences.\nc\n"
    assert isinstance(parse(text).lines[1], TextLine)


def test_a_tag_line_ending_in_a_bang_keeps_its_tags_checked():
    cap = parse("1girl, solo, k-on!\nA girl with a guitar smiles at the viewer.\n")
    assert cap.tags == ["1girl", "solo", "k-on!"] and len(cap.sentences) == 1
