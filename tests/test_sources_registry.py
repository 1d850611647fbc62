"""The source registry behind open_product, the band-source protocol and product discovery."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nimbus.errors import NotAProductError
from nimbus.product import open_product
from nimbus.sources import BandSource, SourceType, find_products, register_source, registered_sources, source_for

RKH = "rio-tiler-pds_S2_L2A_COG_29RKH_20200219"
ITEM = "S2A_29RKH_20200219_0_L2A.json"


def test_built_in_sources_and_dispatch(realdata: Path, synthetic_l1c, synthetic_l2a_zip, tmp_path: Path) -> None:
    assert [s.name for s in registered_sources()][:4] == ["stac", "zip", "safe", "cog"]
    assert source_for(synthetic_l1c.path).name == "safe"
    assert source_for(synthetic_l1c.path / "MTD_MSIL1C.xml").name == "safe"
    assert source_for(synthetic_l2a_zip.path).name == "zip"
    assert source_for(realdata / RKH).name == "cog"
    assert source_for(realdata / RKH / ITEM).name == "stac"
    assert source_for("https://example.invalid/item.json").name == "stac"
    assert source_for({"type": "Feature", "properties": {}, "assets": {}}).name == "stac"
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    assert source_for(notes) is None and source_for(tmp_path) is None
    meta = tmp_path / "meta.json"  # JSON that is not a STAC item
    meta.write_text(json.dumps({"product_id": "x"}))
    with pytest.raises(NotAProductError, match="meta.json"):
        open_product(meta)


def test_a_new_source_is_one_registration(synthetic_l1c) -> None:
    before = registered_sources()
    try:
        register_source(SourceType("mem", lambda ref: isinstance(ref, str) and ref.startswith("mem://"),
                                   lambda ref, tile: open_product(synthetic_l1c.path)), first=True)  # fmt: skip
        assert open_product("mem://anything").product_id == synthetic_l1c.product_id
    finally:
        import nimbus.sources.registry as reg

        reg._SOURCES[:] = list(before)
    assert source_for("mem://anything") is None


def test_every_source_satisfies_the_protocol(realdata: Path, synthetic_l1c, synthetic_l2a_zip) -> None:
    for ref in (synthetic_l1c.path, synthetic_l2a_zip.path, realdata / RKH):
        p = open_product(ref)
        assert isinstance(p, BandSource), ref
        assert p.harmonization


def test_discovery_finds_every_kind(realdata: Path, synthetic_l1c, synthetic_l2a_zip, tmp_path: Path) -> None:
    root = tmp_path / "store"
    shutil.copytree(synthetic_l1c.path, root / "32TMS" / synthetic_l1c.path.name)
    (root / "32TMS" / "notes").mkdir()
    (root / "32TMS" / "notes" / "readme.txt").write_text("not a product")
    shutil.copy(synthetic_l2a_zip.path, root / synthetic_l2a_zip.path.name)
    shutil.copytree(realdata / RKH, root / "cog" / "29RKH")
    item = json.loads((realdata / RKH / ITEM).read_text())
    (root / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    (root / "truth.tif").write_bytes(b"II*\x00")
    found = find_products(str(root))
    assert found == sorted(found, key=found.index)  # deterministic
    assert str(root / "32TMS" / synthetic_l1c.path.name) in found
    assert str(root / synthetic_l2a_zip.path.name) in found
    assert str(root / "cog" / "29RKH") in found, "COG folders are products too (nimbus arrays used to miss them)"
    assert f"{root / 'items.json'}#{item['id']}" in found
    assert len(found) == 4
    # explicit references are kept as given; a folder without products is kept so the batch names it
    empty = tmp_path / "empty"
    empty.mkdir()
    assert find_products(f"{synthetic_l1c.path},https://example.invalid/x.json,{empty}") == [
        str(synthetic_l1c.path), "https://example.invalid/x.json", str(empty)]  # fmt: skip


def test_cli_products_uses_discovery(realdata: Path, tmp_path: Path) -> None:
    from nimbus.cli import _products

    shutil.copytree(realdata / RKH, tmp_path / "29RKH")
    assert _products(str(tmp_path)) == [str(tmp_path / "29RKH")]
