"""segment_many on this process: one record per product, a model loaded once, failures as records."""

from __future__ import annotations

from pathlib import Path

import pytest

from nimbus.engine import SegmentConfig, read_report, segment_many
from nimbus.engine.worker import absolute_ref, segmenter_for


@pytest.fixture(scope="module")
def two_products(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from nimbus.synthetic import make_product

    root = tmp_path_factory.mktemp("many")
    return [make_product(root, size=120, seed=s, date=f"2023-08-{10 + s:02d}").path for s in range(2)]


def test_records_in_order_with_a_failure_in_the_middle(two_products: list[Path], tmp_path: Path) -> None:
    cfg = SegmentConfig(progress=False)
    refs = [two_products[0], tmp_path / "missing.SAFE", two_products[1]]
    recs = list(segment_many(refs, "rules", cfg, tmp_path / "o", report=tmp_path / "o" / "r.jsonl"))
    assert [r.status for r in recs] == ["done", "failed", "done"]
    assert "missing.SAFE" in recs[1].error and not recs[1].transient
    assert all(Path(r.outputs["classes"]).exists() for r in recs if r.status == "done")
    assert [r["status"] for r in read_report(tmp_path / "o" / "r.jsonl")] == ["done", "failed", "done"]
    again = list(segment_many(two_products, "rules", cfg, tmp_path / "o"))
    assert [r.status for r in again] == ["skipped", "skipped"]


def test_a_model_is_loaded_once_per_process_and_config(tmp_path: Path) -> None:
    cfg = SegmentConfig(progress=False)
    a = segmenter_for("rules", cfg)
    assert segmenter_for("rules", SegmentConfig(progress=False)) is a
    assert segmenter_for("rules", cfg.replace(batch=4)) is not a


def test_a_model_that_cannot_load_stops_the_run_first(two_products: list[Path], tmp_path: Path) -> None:
    from nimbus.errors import ModelError

    with pytest.raises(ModelError):
        list(segment_many(two_products, tmp_path / "nope.onnx", SegmentConfig(progress=False), tmp_path / "o"))
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*_classes.tif"))


def test_references_travel(tmp_path: Path) -> None:
    assert absolute_ref("rules") == "rules" and absolute_ref("https://x/item.json") == "https://x/item.json"
    assert Path(absolute_ref("p.SAFE")).is_absolute()


def test_a_rerun_skips_from_the_report_without_any_task(two_products: list[Path], tmp_path: Path) -> None:
    """Products the report shows done by the same model into the same folder are skipped before
    anything runs; a product whose output was removed, or another model, is done again."""
    from nimbus.engine import worker

    cfg = SegmentConfig(progress=False)
    out, report = tmp_path / "o", tmp_path / "o" / "r.jsonl"
    first = list(segment_many(two_products, "rules", cfg, out, report=report))
    assert [r.status for r in first] == ["done", "done"] and all(r.model for r in first)
    Path(first[1].outputs["classes"]).unlink()
    worker._CACHE.clear()  # a fresh process: a skip from the report loads no model
    again = list(segment_many(two_products, "rules", cfg, out, report=report))
    assert [(r.status, r.worker) for r in again][0] == ("skipped", "report")
    assert again[1].status == "done" and Path(again[1].outputs["classes"]).is_file()
    wants_more = list(segment_many(two_products, "rules", cfg.replace(uncertainty=True), out, report=report))
    assert [r.status for r in wants_more] == ["done", "done"]  # an output kind the report lacks: redone
