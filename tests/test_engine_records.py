"""Product records, the JSON Lines run report and the transient / deterministic split."""

from __future__ import annotations

import errno
import json

import pytest

from nimbus.engine.records import ProductRecord, RunReport, is_transient, read_report
from nimbus.errors import CorruptArchiveError, MissingBandError, ModelError, OutputError, RemoteReadError


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (RemoteReadError("http://x/B04.tif: HTTP 503", "http://x/B04.tif", 503), True),
        (RemoteReadError("http://x/B04.tif: connection dropped", "http://x/B04.tif", None), True),
        (RemoteReadError("http://x/B04.tif: HTTP 404", "http://x/B04.tif", 404), False),
        (ConnectionResetError("peer reset"), True),
        (OSError(errno.ETIMEDOUT, "timed out"), True),
        (OSError(errno.ENOSPC, "no space"), False),
        (MissingBandError("B04 missing"), False),
        (CorruptArchiveError("truncated zip"), False),
        (ModelError("needs B10"), False),
        (OutputError("disk full"), False),
        (ValueError("bad value"), False),
    ],
)
def test_transient_or_deterministic(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_the_root_cause_decides() -> None:
    try:
        try:
            raise ConnectionResetError("peer reset")
        except ConnectionResetError as inner:
            raise RuntimeError("read failed") from inner
    except RuntimeError as outer:
        assert is_transient(outer)


def test_report_lines_arrive_one_by_one_and_survive_a_cut_line(tmp_path) -> None:
    path = tmp_path / "r" / "report.jsonl"
    with RunReport(path, run="r1") as rep:
        rep.add(ProductRecord("a.SAFE", "done", 1.5, outputs={"classes": "a_classes.tif"}, windows=4))
        assert len(read_report(path)) == 1  # flushed at once, not at close
        rep.add(ProductRecord.failure("b.SAFE", MissingBandError("b.SAFE: band B04 missing")))
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"product": "c.SAFE", "sta')  # a run killed mid-line
    recs = read_report(path)
    assert [r["product"] for r in recs] == ["a.SAFE", "b.SAFE"] and {r["run"] for r in recs} == {"r1"}
    assert recs[1]["status"] == "failed" and "B04" in recs[1]["error"] and recs[1]["transient"] is False
    assert rep.counts == {"done": 1, "skipped": 0, "failed": 1}
    assert json.loads(ProductRecord("x", "skipped").to_json())["status"] == "skipped"
    assert "--overwrite" in ProductRecord("x", "skipped", outputs={"classes": "m.tif"}).line()


def test_a_report_that_cannot_be_written_is_a_warning_not_a_crash(tmp_path) -> None:
    from nimbus.errors import NimbusWarning

    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "report.jsonl").mkdir()  # a folder where the file should be: open() fails
    rep = RunReport(tmp_path / "ro" / "report.jsonl")
    with pytest.warns(NimbusWarning, match="report.jsonl cannot be written"):
        rep.add(ProductRecord("a.SAFE", "done"))
    rep.add(ProductRecord("b.SAFE", "done"))  # warned once, still counted
    rep.close()
    assert rep.counts["done"] == 2
