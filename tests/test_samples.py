"""nimbus.samples: the samples folder, its manifest, label validation and conflict detection."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from _samples_data import CRS, H, PRODUCT, W, make_samples

from nimbus.errors import LabelError
from nimbus.legend import DEFAULT_LEGEND
from nimbus.samples import RevisionConflictError, Sample, SampleSet, sample_id, validate_label


def test_manifest_round_trips(tmp_path) -> None:
    ss = make_samples(tmp_path / "s")
    again = SampleSet(tmp_path / "s")
    assert [s.to_dict() for s in again.samples()] == [s.to_dict() for s in ss.samples()]
    s = again.samples()[0]
    assert s.product_id == PRODUCT and s.window == (1000, 2000, W, H) and s.status == "todo" and s.revision == 0
    assert s.date == "2023-07-04" and s.score == pytest.approx(0.3)
    assert Sample.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert again.selection == {"method": "std", "passes": 16}


def test_layers_are_georeferenced(tmp_path) -> None:
    ss = make_samples(tmp_path / "s", n=1)
    sid = ss.samples()[0].id
    for layer, dtype, count in [("truecolor", "uint16", 3), ("falsecolor", "uint16", 3), ("auto_label", "uint8", 1),
                                ("prediction", "uint8", 1), ("uncertainty", "float32", 1)]:
        with rasterio.open(ss.layer_path(sid, layer)) as src:
            assert src.crs.to_string() == CRS
            assert src.transform.a == 10 and src.transform.c == 600000 + 10 * 1000
            assert (src.count, src.dtypes[0], src.shape) == (count, dtype, (H, W))
    with rasterio.open(ss.layer_path(sid, "auto_label")) as src:
        cmap = src.colormap(1)
        assert src.nodata == 255 and cmap[255][3] == 0
        assert all(cmap[v][:3] == DEFAULT_LEGEND.color(v) for v in DEFAULT_LEGEND.values)  # the one palette


def test_read_label_falls_back_to_auto_then_hand(tmp_path) -> None:
    ss = make_samples(tmp_path / "s", n=1)
    sid = ss.samples()[0].id
    label, source = ss.read_label(sid)
    assert source == "auto" and label[0, 0] == 255 and label[10, 10] == 1
    assert ss.hand_label(sid) is None
    new = label.copy()
    new[5, 5:20] = 0
    saved = ss.save_label(sid, new, base_revision=0, status="done")
    assert saved.revision == 1 and saved.status == "done"
    label, source = ss.read_label(sid)
    assert source == "hand" and (label == new).all()
    with rasterio.open(ss.layer_path(sid, "label")) as src:
        assert src.crs.to_string() == CRS and src.transform.c == 600000 + 10 * 1000 and src.nodata == 255
        assert (src.read(1) == new).all()
    assert not list((tmp_path / "s" / sid).glob(".*tmp*")), "temporary files left behind"


def test_revision_conflict(tmp_path) -> None:
    ss = make_samples(tmp_path / "s", n=1)
    sid = ss.samples()[0].id
    first = np.zeros((H, W), np.uint8)
    ss.save_label(sid, first, base_revision=0)
    with pytest.raises(RevisionConflictError, match="revision 1"):
        ss.save_label(sid, np.full((H, W), 3, np.uint8), base_revision=0)
    assert (ss.hand_label(sid) == 0).all()
    ss.save_label(sid, np.full((H, W), 3, np.uint8), base_revision=1)
    assert (ss.hand_label(sid) == 3).all() and ss.get(sid).revision == 2


def test_validate_label() -> None:
    ok = validate_label(np.array([[0, 1], [2, 255]], np.int64), (2, 2))
    assert ok.dtype == np.uint8
    with pytest.raises(LabelError, match="shape"):
        validate_label(np.zeros((3, 2)), (2, 2))
    with pytest.raises(LabelError, match=r"unknown class values \[4, 7\]"):
        validate_label(np.array([[0, 4], [7, 1]]), (2, 2))
    with pytest.raises(LabelError, match="2-D"):
        validate_label(np.zeros((1, 2, 2)), (2, 2))
    with pytest.raises(LabelError, match="integers"):
        validate_label(np.array([[0.5, 1], [1, 1]]), (2, 2))


def test_bad_manifest_and_ids(tmp_path) -> None:
    with pytest.raises(LabelError, match="no samples manifest"):
        SampleSet(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{}")
    with pytest.raises(LabelError, match="not a Nimbus samples manifest"):
        SampleSet(tmp_path / "bad")
    ss = make_samples(tmp_path / "s", n=1)
    with pytest.raises(LabelError, match="no sample named"):
        ss.sample_dir("../../etc")
    with pytest.raises(LabelError, match="unsafe sample id"):
        Sample.from_dict({"id": "../x", "product_id": "p", "window": [0, 0, 2, 2]})
    assert sample_id("a/b..c", (5, 7, 2, 2)) == "a-b..c__r00007_c00005"


def test_validate_label_refuses_ragged_and_huge_values() -> None:
    from nimbus.errors import LabelError
    from nimbus.samples import validate_label

    with pytest.raises(LabelError, match="rectangular"):
        validate_label([[1, 2], [3]], (2, 2))
    with pytest.raises(LabelError, match="integers"):
        validate_label([[1e300, 0], [0, 0]], (2, 2))


def test_context_window_is_centred_and_clipped() -> None:
    from nimbus.samples import context_window

    assert context_window((100, 200, 64, 64), (1000, 1000)) == (36, 136, 192, 192)  # 3x, centred
    assert context_window((0, 10, 64, 64), (1000, 1000)) == (0, 0, 192, 192)  # shifted inside at the edge
    assert context_window((0, 0, 64, 64), (100, 80)) == (0, 0, 80, 100)  # clipped to a small product (h 100, w 80)
    assert context_window((5, 5, 10, 10), (100, 100), factor=1) == (5, 5, 10, 10)


def test_context_layers_round_trip_and_are_checked(tmp_path) -> None:
    from _samples_data import context_image

    ss = make_samples(tmp_path / "s", n=1, context=True)
    s = SampleSet(tmp_path / "s").samples()[0]
    assert s.context == (904, 1936, 3 * W, 3 * H) and s.context_shape == (3 * H, 3 * W)
    assert Sample.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    with rasterio.open(ss.layer_path(s.id, "context_truecolor")) as src:
        assert src.shape == (3 * H, 3 * W) and src.transform.c == 600000 + 10 * 904 and src.transform.f == 5100000 - 10 * 1936
    assert (ss.read_layer(s.id, "context_truecolor") == context_image(s.context, s.window)).all()
    assert ss.georef(s.id)[1].c == 600000 + 10 * 1000  # the sample's own grid, not the context's
    bad = Sample(id="x__r00000_c00000", product_id="x", window=(0, 0, W, H), context=(10, 0, W, H))
    with pytest.raises(LabelError, match="does not hold"):
        ss.add(bad, {}, CRS, rasterio.transform.from_origin(0, 0, 10, 10))
    with pytest.raises(LabelError, match="malformed"):
        Sample.from_dict({**s.to_dict(), "context": [0, 0, 5, 5]})
