import json
import re

from captions import build_dataset, parse
from captions.build import DIFFERS, INVALID, SKIPPED, UNCHANGED, WRITTEN
from verifier.core.store import Store

from article import make_article_dataset

SILHOUETTE = ["developed body", "slim figure", "curved waist", "proportional body", "womanly figure"]
AGE = ["teenager", "16 years old", "high school student"]
ABSORBED = ["blonde hair", "blue eyes", "hair intakes"]


def test_example_dataset_builds_and_second_run_is_unchanged(example_dataset, keichan):
    first = build_dataset(example_dataset, keichan)
    assert (len(first.outcomes), first.count(WRITTEN)) == (12, 12)
    second = build_dataset(example_dataset, keichan)
    assert second.count(UNCHANGED) == 12 and second.count(WRITTEN) == 0


def test_dry_run_writes_nothing(example_dataset, keichan):
    report = build_dataset(example_dataset, keichan, dry_run=True)
    assert report.count(WRITTEN) == 12
    assert not list(example_dataset.rglob("*.txt"))


def test_hand_edit_is_kept_without_force_and_journaled_with_force(example_dataset, keichan):
    build_dataset(example_dataset, keichan)
    caption = next(example_dataset.rglob("020101.txt"))
    edited = caption.read_text().replace("full body", "cowboy shot")
    caption.write_text(edited)
    report = build_dataset(example_dataset, keichan)
    assert [o.image.stem for o in report.of(DIFFERS)] == ["020101"]
    assert caption.read_text() == edited
    assert build_dataset(example_dataset, keichan, missing_only=True).count(WRITTEN) == 0
    with Store(example_dataset) as store:
        store.start_run("build")
        forced = build_dataset(example_dataset, keichan, force=True, journal=store)
        rows = store.journal(store.run_id)
    assert forced.count(WRITTEN) == 1
    assert [(r["path"], r["before"]) for r in rows] == [("02_clothed_pose/available/020101.txt", edited)]
    assert "full body" in caption.read_text()


def test_missing_and_bad_sidecars_are_reported_not_fatal(example_dataset, keichan):
    next(example_dataset.rglob("010001.json")).unlink()
    bad = next(example_dataset.rglob("010002.json"))
    bad.write_text("{oops")
    report = build_dataset(example_dataset, keichan)
    assert [(o.image.stem, o.reason) for o in report.of(SKIPPED)] == [("010001", "no JSON sidecar")]
    [invalid] = report.of(INVALID)
    assert invalid.reason.startswith(str(bad)) and "not valid JSON" in invalid.reason
    assert report.count(WRITTEN) == 10


def test_review_tree_and_state_are_not_walked(example_dataset, keichan):
    review = example_dataset / "_review" / "framing" / "full_body"
    review.mkdir(parents=True)
    img = next(example_dataset.rglob("020102.png"))
    (review / img.name).hardlink_to(img)
    (review / "020102.json").write_text(json.dumps({"prompt": "x"}))
    assert len(build_dataset(example_dataset, keichan).outcomes) == 12


def test_article_shaped_dataset_follows_the_template(tmp_path, keichan):
    """39 bust / 47 clothed / 5 nude: every caption follows the template exactly."""
    kinds = make_article_dataset(tmp_path)
    report = build_dataset(tmp_path, keichan)
    assert report.count(WRITTEN) == 91
    dist = report.distribution()
    assert dist["framing"]["portrait"] == 39 and dist["framing"]["full body"] == 50
    for outcome in report.outcomes:
        kind = kinds[outcome.image.relative_to(tmp_path).as_posix()]
        text = outcome.text
        lines = text.split("\n")
        cap = parse(text)
        rating = {"bust": "safe", "nude": "explicit"}.get(kind, outcome.facts.rating)
        assert lines[0] == f"masterpiece, best quality, score_7, {rating},", outcome.image
        assert lines[1] == "1girl, solo, keichan,"
        assert len(cap.sentences) >= 2 and "hair intakes" in cap.nl_text
        assert lines[3] == "blunt bangs, long sidelocks, half updo, braid, blue ribbon,"
        assert lines[-2] == "white background, simple background" and text.endswith("\n")
        tags = cap.tags
        for forbidden in ABSORBED + SILHOUETTE + AGE:
            assert forbidden not in tags, (outcome.image, forbidden)
        assert not re.search(r"[()\[\]{}:]", ", ".join(cap.raw_tags))
        assert "keichan" in tags and tags.count("keichan") == 1
        if kind == "nude":
            assert "medium breasts" in tags and "explicit" in tags
        if kind == "bust":
            assert "portrait" in tags and "medium breasts" not in tags and "nude" not in tags
        if kind == "clothed":
            prompt = json.loads(outcome.image.with_suffix(".json").read_text())["prompt"]
            want = "full body" if "full body" in prompt else "upper body"
            assert want in tags  # `full body` stays `full body` at this stage
    ratings = dist["rating"]
    assert ratings["explicit"] == 5 and ratings["sensitive"] > 0 and ratings["safe"] > 39


def test_an_unreadable_caption_is_reported_for_that_image_and_never_overwritten(example_dataset, keichan):
    build_dataset(example_dataset, keichan)
    broken = sorted(example_dataset.rglob("*.txt"))[0]
    broken.write_bytes(b"\xff\xfe not utf-8\n")
    report = build_dataset(example_dataset, keichan, force=True)
    bad = report.of(INVALID)
    assert [o.image.with_suffix(".txt") for o in bad] == [broken] and "not valid UTF-8" in bad[0].reason
    assert broken.read_bytes() == b"\xff\xfe not utf-8\n"
    assert report.count(UNCHANGED) == len(report.outcomes) - 1
