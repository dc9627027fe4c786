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


def test_the_shipped_vocabulary_is_the_script_run_on_the_tag_csv(tmp_path, vocab, monkeypatch):
    """captions/data/danbooru-general.csv.gz is what scripts/make_vocabulary.py writes
    from the a1111 CSV (so it can be made again), small, with its licence beside it."""
    import importlib.util

    from captions.vocab import builtin

    from conftest import ROOT, TAGS_CSV

    spec = importlib.util.spec_from_file_location("make_vocabulary", ROOT / "scripts" / "make_vocabulary.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    shipped = ROOT / "captions" / "data" / "danbooru-general.csv.gz"
    monkeypatch.setattr(script, "OUT", tmp_path / shipped.name)
    assert script.main([str(TAGS_CSV)]) == 0
    assert (tmp_path / shipped.name).read_bytes() == shipped.read_bytes()
    assert shipped.stat().st_size < 300_000
    assert "MIT License" in (shipped.parent / "LICENSE-danbooru-tags").read_text()
    known = builtin()
    assert {"glasses", "halo", "blonde hair", "cowboy shot"} <= set(known.tags)
    assert all(kind == 0 for kind, _ in known.tags.values()) and "hatsune miku" not in known
    assert known.canonical("bust") == vocab.canonical("bust")
