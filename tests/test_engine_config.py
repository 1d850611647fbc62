"""SegmentConfig: checked when made, frozen, picklable, apart from the model's description."""

from __future__ import annotations

import pickle

import pytest

from nimbus.engine.config import SegmentConfig
from nimbus.errors import UsageError


def test_defaults_and_normalisation() -> None:
    cfg = SegmentConfig(tta=True, probabilities=True)
    assert cfg.tta == 8 and cfg.probabilities == "uint8"
    assert SegmentConfig(tta=0).tta == 1  # off
    assert SegmentConfig().outputs == ("classes",)
    assert SegmentConfig(probabilities="float16", uncertainty=True, quicklook=True, stac_item=True).outputs == (
        "classes", "probabilities", "uncertainty", "quicklook", "item")  # fmt: skip


@pytest.mark.parametrize(
    ("options", "word"),
    [({"window": 7}, "--window"), ({"overlap": 1.0}, "--overlap"), ({"weights": "box"}, "--weights"), ({"tta": 9}, "--tta"),
     ({"batch": 0}, "--batch"), ({"threads": -1}, "--threads"), ({"probabilities": "int8"}, "--probabilities"),
     ({"provider": "tpu"}, "--provider"), ({"window": "big"}, "--window")],
)  # fmt: skip
def test_bad_options_name_the_option(options: dict, word: str) -> None:
    with pytest.raises(UsageError, match=word):
        SegmentConfig(**options)


def test_frozen_picklable_hashable_and_replace_checks_again() -> None:
    cfg = SegmentConfig(window=512, overlap=0.25, aux="auto")
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert hash(cfg) == hash(SegmentConfig(window=512, overlap=0.25, aux="auto"))
    with pytest.raises(AttributeError):
        cfg.window = 256  # type: ignore[misc]
    assert cfg.replace(threads=2).threads == 2 and cfg.threads == 0
    with pytest.raises(UsageError):
        cfg.replace(batch=0)


def test_the_run_window_does_not_change_the_model_spec(tmp_path) -> None:
    from nimbus.segmenter import Segmenter

    from nimbus.models import resolve_model

    plain = Segmenter(resolve_model("rules"))
    seg = Segmenter(resolve_model("rules"), window=plain.spec.window // 2, overlap=0.5)
    assert (seg.window, seg.overlap) == (plain.spec.window // 2, 0.5)
    assert seg.spec == plain.spec  # the model's own description is untouched by the run's options
    assert plain.window == plain.spec.window and plain.overlap == plain.spec.overlap
