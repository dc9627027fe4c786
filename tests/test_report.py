import json

import pytest

from verifier.core.observation import AspectObservation, Observation
from verifier.core.report import fix_groups, read_report, write_reports
from verifier.core.report_page import highlight
from verifier.core.verdict import ERROR, FIX, OK, FixItem, Verdict
from verifier.core.verify import ASKED, ItemResult, RunResult
from verifier.errors import ReportError


def result(image, status, fixes=(), reason=None):
    obs = Observation({"framing": AspectObservation("cowboy shot")})
    return ItemResult(image, "i" * 64, "c" * 64, Verdict(status, tuple(fixes), reason, obs, {"framing": "full body"}),
                      ASKED, 1, 0.5, '{"raw": true}', 100, 7)


def test_fix_groups_count_like_the_article():
    cowboy = FixItem("framing", "full body", "cowboy shot")
    results = [result("a.png", FIX, [cowboy]), result("b.png", FIX, [cowboy, FixItem("facing", "left", "forward")]),
               result("c.png", FIX, [FixItem("framing", "full body", "cowboy shot", borderline=True)]),
               result("d.png", OK)]
    assert fix_groups(results) == [("framing", "cowboy shot", "full body", 3, 1), ("facing", "forward", "left", 1, 0)]


def test_highlight_escapes_and_marks_whole_words():
    html = highlight("a <b> full body, full bodysuit, Full Body.", ["full body"])
    assert html == "a &lt;b&gt; <mark>full body</mark>, full bodysuit, <mark>Full Body</mark>."


def test_reports_written_and_read_back(tmp_path, keichan):
    (tmp_path / "sub dir").mkdir()
    (tmp_path / "sub dir" / "a.txt").write_text("masterpiece,\nkeichan, full body, <script>,\n")
    run = RunResult(3, "openai", "m", "observe",
                    [result("sub dir/a.png", FIX, [FixItem("framing", "full body", "cowboy shot")]),
                     result("b.png", ERROR, reason="HTTP 500 (gave up after 4 attempts)")], {}, 1.0, 2, 2)
    jsonl, page = write_reports(tmp_path, run, keichan)
    assert jsonl.name == "run-0003.jsonl" and (jsonl.parent / "latest.jsonl").read_text() == jsonl.read_text()
    lines = read_report(jsonl)
    assert [x["status"] for x in lines] == ["fix", "error"] and lines[1]["error"].startswith("HTTP 500")
    assert lines[0]["fixes"] == [{"aspect": "framing", "caption": "full body", "image": "cowboy shot", "borderline": False}]
    assert lines[0]["observation"] == {"framing": {"value": "cowboy shot", "borderline": False}}
    text = page.read_text()
    assert "../../" not in text and "<mark>full body</mark>" in text  # no link out of the reports folder
    assert "no picture: sub dir/a.png could not be read" in text  # the test wrote no image: said, not a traceback
    assert "&lt;script&gt;" in text and "<script>," not in text
    assert "show('error')" in text


def test_read_report_errors_name_the_file(tmp_path):
    with pytest.raises(ReportError, match="no such report"):
        read_report(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"a": 1}) + "\n{oops\n")
    with pytest.raises(ReportError) as exc:
        read_report(bad)
    assert str(exc.value).startswith(f"{bad}: line 2: not JSON")
