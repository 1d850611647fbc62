"""STAC Items beside class maps and static catalogues of them (pystac, offline)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pystac = pytest.importorskip("pystac")

import nimbus  # noqa: E402
from nimbus.errors import UsageError  # noqa: E402
from nimbus.modelspec import ModelSpec  # noqa: E402
from nimbus.product import open_product  # noqa: E402
from nimbus.stacitem import classmap_item, collect_catalog, item_path, write_classmap_item  # noqa: E402
from nimbus.writers import write_class_map  # noqa: E402

RKH = "rio-tiler-pds_S2_L2A_COG_29RKH_20200219"


@pytest.fixture()
def spec() -> ModelSpec:
    from nimbus.models import resolve_model

    return ModelSpec.from_onnx(resolve_model("default"))


def _map(product, spec: ModelSpec, folder: Path, res: int = 60) -> Path:
    h, w = product.shape(res)
    rng = np.random.default_rng(0)
    classes = rng.integers(0, len(spec.classes), (h, w)).astype(np.uint8)
    classes[:5] = 255
    stem = f"{product.product_id}_{spec.file_tag}"
    return write_class_map(folder / f"{stem}_classes.tif", classes, product.crs, product.transform(res), spec, product.product_id)


def _check_core_schema(data: dict) -> None:
    """The core Item schema (bundled with pystac: no network); extension fields are checked by hand."""
    from pystac.validation import validate_dict

    validate_dict(dict(data, stac_extensions=[]), stac_object_type=pystac.STACObjectType.ITEM)


def test_item_of_a_class_map(synthetic_l1c, spec: ModelSpec, tmp_path: Path) -> None:
    product = open_product(synthetic_l1c.path)
    classes = _map(product, spec, tmp_path)
    quick = tmp_path / "q.png"
    quick.write_bytes(b"\x89PNG fake")
    item = classmap_item(classes, product, spec, {"quicklook": quick, "uncertainty": None})
    assert item.id == classes.name.removesuffix("_classes.tif")
    assert item.datetime == product.sensing_time and item.properties["grid:code"] == "MGRS-32TMS"
    assert item.properties["processing:software"] == {"nimbus": nimbus.__version__}
    assert item.properties["nimbus:model"]["name"] == spec.name
    assert item.properties["proj:code"] == f"EPSG:{product.crs.to_epsg()}" and item.properties["proj:shape"] == list(product.shape(60))
    west, south, east, north = item.bbox
    assert 7 < west < east < 9 and 46 < south < north < 48
    asset = item.assets["classes"]
    band = asset.extra_fields["raster:bands"][0]
    assert band["nodata"] == 255 and band["data_type"] == "uint8" and band["spatial_resolution"] == 60
    got = [(c["value"], c["name"], c.get("color_hint"), c.get("nodata", False)) for c in band["classification:classes"]]
    want = [(c.value, c.name, "".join(f"{v:02X}" for v in c.color), False) for c in spec.classes] + [(255, "nodata", None, True)]
    assert got == want
    digest = hashlib.sha256(classes.read_bytes()).hexdigest()
    assert asset.extra_fields["file:checksum"] == "1220" + digest and asset.extra_fields["file:size"] == classes.stat().st_size
    assert set(item.assets) == {"classes", "quicklook"} and item.assets["quicklook"].roles == ["overview", "visual"]
    exts = " ".join(item.stac_extensions)
    for name in ("classification", "projection", "raster", "file", "processing"):
        assert f"/{name}/" in exts
    assert not item.get_links("derived_from"), "a SAFE product has no source item"
    _check_core_schema(item.to_dict(include_self_link=False))


def test_written_item_beside_the_map_with_a_derived_from_link(realdata: Path, spec: ModelSpec, tmp_path: Path) -> None:
    # the real 29RKH item as a local JSON file whose hrefs point at the real COGs
    item_json = json.loads((realdata / RKH / "S2A_29RKH_20200219_0_L2A.json").read_text())
    for asset in item_json["assets"].values():
        asset["href"] = str(realdata / RKH / Path(asset["href"]).name)
    src = tmp_path / "S2A_29RKH_20200219_0_L2A.json"
    src.write_text(json.dumps(item_json))
    product = open_product(src)
    classes = _map(product, spec, tmp_path)
    out = write_classmap_item({"classes": classes, "probabilities": None}, product, spec)
    assert out == item_path(classes) and out.name.endswith("_item.json") and out.parent == classes.parent
    data = json.loads(out.read_text())
    _check_core_schema(data)
    links = [lk for lk in data["links"] if lk["rel"] == "derived_from"]
    assert [lk["href"] for lk in links] == [src.resolve().as_uri()]
    assert data["assets"]["classes"]["href"] == f"./{classes.name}"
    loaded = pystac.Item.from_file(str(out))
    assert Path(loaded.assets["classes"].get_absolute_href()) == classes.resolve()
    # an explicit source href (e.g. the URL the item was fetched from) wins
    item = classmap_item(classes, product, spec, source_href="https://earth-search.example/items/x")
    assert item.get_single_link("derived_from").href == "https://earth-search.example/items/x"


def test_catalog_of_items_and_the_cli(synthetic_l1c, synthetic_l2a_zip, spec: ModelSpec, tmp_path: Path) -> None:
    from nimbus.cli import NimbusCLI

    maps = tmp_path / "maps"
    for syn in (synthetic_l1c, synthetic_l2a_zip):
        product = open_product(syn.path)
        write_classmap_item({"classes": _map(product, spec, maps)}, product, spec)
    text = NimbusCLI().catalog(str(maps), out=str(tmp_path / "cat"))
    assert text.endswith(": 2 item(s)")
    cat = pystac.Catalog.from_file(str(tmp_path / "cat" / "catalog.json"))
    items = list(cat.get_items(recursive=True))
    assert len(items) == 2
    for item in items:
        href = Path(item.assets["classes"].get_absolute_href())
        assert href.is_file() and href.parent == maps.resolve()
    assert not list((tmp_path / "cat").glob(".nimbus-catalog-*"))  # written beside, moved in, nothing left
    # in place: the catalogue beside the maps
    assert NimbusCLI().catalog(str(maps)).startswith(str(maps / "catalog.json"))
    with pytest.raises(Exception, match="no \\*_item.json"):
        collect_catalog([], tmp_path / "empty")


def test_without_pystac_an_install_hint(monkeypatch: pytest.MonkeyPatch, synthetic_l1c, spec: ModelSpec, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pystac", None)
    with pytest.raises(UsageError, match=r"pip install .*\[stac\]"):
        classmap_item(tmp_path / "x_classes.tif", open_product(synthetic_l1c.path), spec)
