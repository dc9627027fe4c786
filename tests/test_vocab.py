import pytest

from captions import Vocabulary
from captions.errors import VocabularyError
from captions.vocab import CHARACTER, GENERAL


def test_real_vocabulary(vocab):
    assert len(vocab) > 140_000
    assert "cowboy shot" in vocab and "side ponytail" in vocab
    assert "left side ponytail" not in vocab
    assert vocab.canonical("bust") == "upper body"
    assert vocab.kind("hatsune miku") == CHARACTER and vocab.kind("smile") == GENERAL


@pytest.mark.parametrize(
    ("tag", "want"),
    [
        ("left side ponytail", "side ponytail"),
        ("bust", "upper body"),
        ("double parted bangs", "double-parted bangs"),
        ("hair intake", "hair intakes"),
        ("tshirt", "t-shirt"),
    ],
)
def test_suggestions(vocab, tag, want):
    assert vocab.suggest(tag) == want


def test_bad_csv_names_file_and_line(tmp_path):
    path = tmp_path / "tags.csv"
    path.write_text("1girl,0,10,\nbroken line\n")
    with pytest.raises(VocabularyError) as info:
        Vocabulary.load(path)
    assert str(info.value).startswith(str(path)) and "line 2" in str(info.value)


def test_missing_and_empty_csv(tmp_path):
    with pytest.raises(VocabularyError, match="no such tag CSV"):
        Vocabulary.load(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(VocabularyError, match="no tags"):
        Vocabulary.load(tmp_path / "empty.csv")
