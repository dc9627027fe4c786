"""The HTML reports: thumbnails inside the reports folder (a moved or sent
report keeps its pictures), the active filter shown, a person's answer
outranking the model's stale fix, disagreements with their pictures."""

import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from verifier.core.images import sha256_file
from verifier.core.observation import AspectObservation, Observation
from verifier.core.report import refresh_latest_page, reports_dir, write_agreement, write_reports
from verifier.core.store import Store
from verifier.core.verdict import FIX, OK, REFUSED, FixItem, Verdict
from verifier.core.verify import ASKED, ItemResult, RunResult
from verifier.errors import ReportError
from verifier.human.agreement import all_agreements

from browser import browser, page  # noqa: F401  (fixtures)

CAPTION = "masterpiece,\n1girl, solo, keichan,\nsmile, {framing},\nwhite background\n"


class Sources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.srcs += [v for k, v in attrs if k in ("src", "href") and v]


def srcs(path: Path) -> list[str]:
    parser = Sources()
    parser.feed(path.read_text())
    return parser.srcs


def make(root: Path, name: str, colour, framing: str, size=(600, 900)) -> str:
    image = root / name
    image.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(image)
    image.with_suffix(".txt").write_text(CAPTION.format(framing=framing))
    return sha256_file(image)


def item(image, sha, status, says=None, sees=None, borderline=False, reason=None):
    fixes = (FixItem("framing", says, sees, borderline),) if status == FIX else ()
    obs = Observation({"framing": AspectObservation(sees or says, borderline)}) if status != REFUSED else None
    return ItemResult(image, sha, "c" * 64, Verdict(status, fixes, reason, obs, {"framing": says}), ASKED)


def dataset(root: Path) -> RunResult:
    """Three images: a settled borderline fix, an unsettled fix, an OK."""
    a = make(root, "sub dir/a.png", "red", "full body")
    b = make(root, "b.png", "green", "full body")
    c = make(root, "c.png", "blue", "cowboy shot", size=(900, 600))
    return RunResult(7, "openai", "m", "observe", [
        item("sub dir/a.png", a, FIX, "full body", "cowboy shot", borderline=True),
        item("b.png", b, FIX, "full body", "cowboy shot"),
        item("c.png", c, OK, "cowboy shot")], {}, 1.0, 3, 3)


def test_thumbnails_beside_the_report_and_referenced_relatively(tmp_path, keichan):
    root = tmp_path / "data"
    run = dataset(root)
    _, page_path = write_reports(root, run, keichan)
    folder = reports_dir(root)
    pictures = [s for s in srcs(page_path) if s.endswith(".jpg")]
    assert sorted(pictures) == sorted(f"thumbs/{r.image_sha}.jpg" for r in run.results)
    for src in srcs(page_path):  # nothing outside the reports folder, nothing absolute
        assert not src.startswith(("/", "..", "file:")) and (folder / src).resolve().is_relative_to(folder)
    with Image.open(folder / pictures[0]) as thumb:
        assert max(thumb.size) == 320 and thumb.format == "JPEG"
    assert srcs(folder / "latest.html") == srcs(page_path)


def test_thumbnails_are_made_once_and_follow_the_image_content(tmp_path, keichan):
    root = tmp_path / "data"
    run = dataset(root)
    write_reports(root, run, keichan)
    thumbs = reports_dir(root) / "thumbs"
    made = {p.name: p.stat().st_mtime_ns for p in thumbs.iterdir()}
    write_reports(root, run, keichan)  # a second run: the same images, nothing re-made
    assert {p.name: p.stat().st_mtime_ns for p in thumbs.iterdir()} == made
    new_sha = make(root, "b.png", "yellow", "full body")  # the picture changed on disk
    run.results[1] = item("b.png", new_sha, FIX, "full body", "cowboy shot")
    _, page_path = write_reports(root, run, keichan)
    assert f"thumbs/{new_sha}.jpg" in srcs(page_path) and (thumbs / f"{new_sha}.jpg").exists()


def test_an_unreadable_image_is_said_on_its_card(tmp_path, keichan):
    root = tmp_path / "data"
    run = dataset(root)
    data = (root / "b.png").read_bytes()
    (root / "b.png").write_bytes(data[: len(data) // 2])  # truncated
    run.results[1] = item("b.png", sha256_file(root / "b.png"), FIX, "full body", "cowboy shot")
    _, page_path = write_reports(root, run, keichan)
    assert "no picture: b.png could not be read" in page_path.read_text()
    assert not list((reports_dir(root) / "thumbs").glob(f"{run.results[1].image_sha}*"))


def test_a_moved_report_keeps_its_pictures_in_a_real_browser(tmp_path, keichan, page):  # noqa: F811
    root = tmp_path / "data"
    write_reports(root, dataset(root), keichan)
    sent = tmp_path / "sent elsewhere"
    shutil.copytree(reports_dir(root), sent)
    shutil.rmtree(root)  # the dataset is gone: only what was sent is left
    page.goto((sent / "latest.html").as_uri())
    page.wait_for_load_state("load")
    # lazy pictures load when shown: make them load now
    assert page.eval_on_selector_all("img", "imgs => imgs.map(i => { i.loading = 'eager'; return i.alt; })") == [
        "sub dir/a.png", "b.png", "c.png"]
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    assert page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)") == [213, 213, 320]


def test_the_active_filter_is_shown_and_kept_in_the_address(tmp_path, keichan, page):  # noqa: F811
    root = tmp_path / "data"
    _, page_path = write_reports(root, dataset(root), keichan)
    assert "showing all: 3 of 3" in page_path.read_text()  # without JavaScript too
    page.goto(page_path.as_uri())
    assert page.text_content("#showing") == "showing all: 3 of 3"
    assert page.get_attribute("button[data-show=all]", "aria-pressed") == "true"
    page.click("button[data-show=fix]")
    assert page.text_content("#showing") == "showing only fix: 2 of 3"
    assert page.get_attribute("button[data-show=fix]", "aria-pressed") == "true"
    assert page.get_attribute("button[data-show=all]", "aria-pressed") == "false"
    assert page.eval_on_selector_all(".card", "cs => cs.filter(c => !c.hidden).map(c => c.dataset.status)") == [
        "fix", "fix"]
    assert page.url.endswith("#fix")
    page.reload()
    assert page.text_content("#showing") == "showing only fix: 2 of 3"  # a reload keeps the view


def test_a_settled_image_shows_the_persons_answer_not_the_stale_fix(tmp_path, keichan):
    root = tmp_path / "data"
    run = dataset(root)
    a = run.results[0]
    with Store(root) as store:  # what ingest records when a person sorted a.png into full_body/
        store.add_human("sub dir/a.png", a.image_sha, "framing", "full body", "_review/framing/full_body/a.png")
    _, page_path = write_reports(root, run, keichan)
    cards = page_path.read_text().split('<div class="card"')[1:]
    assert cards[0].startswith(' data-status="settled"')
    assert "a person sorted it: framing full body" in cards[0]
    assert "<s>framing: image shows cowboy shot (caption says full body) (borderline)</s>" in cards[0]
    assert '<span class="st fix">' not in cards[0] and "<mark>" not in cards[0]
    assert cards[1].startswith(' data-status="fix"') and "<mark>full body</mark>" in cards[1]
    assert "settled 1</button>" in page_path.read_text() and "fix 1</button>" in page_path.read_text()


def test_a_refusal_a_person_settled_is_settled(tmp_path, keichan):
    root = tmp_path / "data"
    run = dataset(root)
    run.results[2] = item("c.png", run.results[2].image_sha, REFUSED, "cowboy shot", reason="refused: filtered")
    with Store(root) as store:
        store.add_human("c.png", run.results[2].image_sha, "framing", "cowboy shot", "sorted")
    _, page_path = write_reports(root, run, keichan)
    card = page_path.read_text().split('<div class="card"')[3]
    assert card.startswith(' data-status="settled"') and "refused: filtered" not in card
    assert "refused 0</button>" in page_path.read_text()


def test_a_person_who_disagrees_with_the_caption_leaves_it_a_fix(tmp_path, keichan):
    root = tmp_path / "data"
    run = dataset(root)
    b = run.results[1]
    with Store(root) as store:
        store.add_human("b.png", b.image_sha, "framing", "cowboy shot", "sorted")
    _, page_path = write_reports(root, run, keichan)
    card = page_path.read_text().split('<div class="card"')[2]
    assert card.startswith(' data-status="fix"') and "a person sorted it: framing cowboy shot" in card


def test_after_ingest_the_latest_page_is_rendered_again(tmp_path, keichan):
    root = tmp_path / "data"
    run = dataset(root)
    write_reports(root, run, keichan)
    latest = reports_dir(root) / "latest.html"
    assert 'data-status="settled"' not in latest.read_text()
    with Store(root) as store:
        store.add_human("sub dir/a.png", run.results[0].image_sha, "framing", "full body", "sorted")
    assert refresh_latest_page(root, keichan) == latest
    assert 'data-status="settled"' in latest.read_text()
    assert refresh_latest_page(tmp_path / "nothing", keichan) is None
    (reports_dir(root) / "latest.jsonl").write_text('{"image": "a.png"}\n')
    with pytest.raises(ReportError, match=r"latest.jsonl: not a capcheck report \(KeyError: 'image_sha'\)"):
        refresh_latest_page(root, keichan)


def test_the_agreement_page_shows_each_disagreement_with_its_picture(tmp_path, keichan):
    root = tmp_path / "data"
    run = dataset(root)
    with Store(root) as store:
        store.start_run("verify", '{"backend": "openai", "model": "m"}')
        for r in run.results:
            store.put_verdict(image=r.image, image_sha=r.image_sha, caption_sha=r.caption_sha, prompt_sha="p",
                              backend="openai", model="m", protocol="observe", status=r.verdict.status,
                              observation=r.verdict.observation.as_dict())
        store.add_human("sub dir/a.png", run.results[0].image_sha, "framing", "full body", "sorted")
        store.add_human("c.png", run.results[2].image_sha, "framing", "cowboy shot", "sorted")
        found = all_agreements(store, keichan)
    page_path = write_agreement(root, found)
    text = page_path.read_text()
    assert "1 disagreement(s)" in text and "person <b>full body</b>, model <b>cowboy shot</b>" in text
    assert srcs(page_path) == [f"thumbs/{run.results[0].image_sha}.jpg"]  # the one they disagree on
    assert (page_path.parent / srcs(page_path)[0]).exists()
    assert (page_path.parent / "agreement.json").exists()
