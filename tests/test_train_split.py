"""Train/val/test split by product date."""

from __future__ import annotations

import pytest
from train_fixtures import make_arrays

from nimbus.errors import TrainingError
from nimbus.train.split import list_products, load_split, save_split, split_products


def _dates(n: int, per_date: int = 1) -> dict[str, str]:
    return {f"p{i:02d}": f"2024-01-{i // per_date + 1:02d}" for i in range(n)}


def test_products_of_one_date_stay_together() -> None:
    dates = _dates(30, per_date=3)
    split = split_products(dates, seed=4)
    where = {p: s for s, ps in split.items() for p in ps}
    assert sorted(where) == sorted(dates)
    for d in set(dates.values()):
        assert len({where[p] for p, pd in dates.items() if pd == d}) == 1
    assert len(split["train"]) == 21 and len(split["val"]) in (3, 6) and len(split["test"]) in (3, 6)


def test_seeded_and_reproducible() -> None:
    dates = _dates(20)
    assert split_products(dates, seed=1) == split_products(dict(reversed(dates.items())), seed=1)
    assert split_products(dates, seed=1) != split_products(dates, seed=2)


def test_few_dates() -> None:
    assert split_products({"a": "1"}) == {"train": ["a"], "val": [], "test": []}
    assert sorted(sum(split_products({"a": "1", "b": "2"}).values(), [])) == ["a", "b"]
    s = split_products({"a": "1", "b": "2", "c": "3"})
    assert all(len(v) == 1 for v in s.values())
    assert split_products(_dates(10), fractions=(1, 0, 0))["val"] == []
    with pytest.raises(TrainingError):
        split_products({})
    with pytest.raises(TrainingError):
        split_products(_dates(3), fractions=(0, 1, 1))


def test_roundtrip_and_listing(tmp_path) -> None:
    root = make_arrays(tmp_path / "arrays", n_products=3, size=16)
    dates = list_products(root)
    assert len(dates) == 3 and all(len(d) == 10 for d in dates.values())
    split = split_products(dates, seed=0)
    path = save_split(split, tmp_path / "out" / "split.json", seed=0)
    assert load_split(path) == split
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(TrainingError, match="bad.json"):
        load_split(tmp_path / "bad.json")
    with pytest.raises(TrainingError, match="no <product_id>/meta.json"):
        list_products(tmp_path / "out")
