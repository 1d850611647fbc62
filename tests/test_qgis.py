"""Tests of nimbus.qgis: the .qml style and GDAL's .aux.xml beside class maps, checked in real QGIS.

QGIS runs in the system Python (Debian's ``python3-qgis``, which ``.ci/run`` installs; it is not
pip-installable), so the check is a subprocess of ``/usr/bin/python3`` with ``QT_QPA_PLATFORM=offscreen``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from nimbus.errors import OutputError
from nimbus.legend import DEFAULT_LEGEND, Legend
from nimbus.qgis import pam_path, qml_path, read_pam_legend, read_qml_legend, validate_qml, write_pam, write_qml
from nimbus.writers import write_class_map

CRS = "EPSG:32632"
TRANSFORM = Affine(20, 0, 399960, 0, -20, 5000040)
SYSTEM_PYTHON = "/usr/bin/python3"

_PROBE = r"""
import json, sys
from qgis.core import QgsApplication, QgsRasterLayer
app = QgsApplication([], False)
app.initQgis()
out = {}
for path in sys.argv[1:]:
    layer = QgsRasterLayer(path, "classes", "gdal")
    r = layer.renderer()
    entry = {"valid": layer.isValid(), "renderer": r.type() if r else None, "classes": []}
    if r is not None and r.type() == "paletted":
        entry["classes"] = [[int(c.value), c.label, c.color.name()] for c in r.classes()]
    try:
        from osgeo import gdal
        ds = gdal.Open(path)  # keep the dataset alive while its band is used
        rat = ds.GetRasterBand(1).GetDefaultRAT()
        entry["rat"] = [[rat.GetValueAsInt(i, 0), rat.GetValueAsString(i, 1)] for i in range(rat.GetRowCount())] if rat else None
    except ImportError:
        entry["rat"] = "no osgeo"
    out[path] = entry
print("QGIS-RESULT " + json.dumps(out))
app.exitQgis()
"""


def _qgis_available() -> str | None:
    """Why QGIS cannot be used here, or None."""
    if not Path(SYSTEM_PYTHON).is_file():
        return f"{SYSTEM_PYTHON} not found"
    res = subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True, text=True, timeout=120)
    if res.returncode:
        return f"QGIS python bindings not importable by {SYSTEM_PYTHON} (apt-get install python3-qgis): {res.stderr.strip()[-200:]}"
    return None


def _open_in_qgis(runtime: Path, *paths: Path) -> dict:
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(runtime)}
    for key in list(env):  # the system QGIS must not see our venv's Python or GDAL/PROJ settings
        if key.startswith(("PYTHON", "GDAL_", "PROJ_", "CPL_", "LD_")):
            env.pop(key)
    res = subprocess.run([SYSTEM_PYTHON, "-c", _PROBE, *map(str, paths)], capture_output=True, text=True, timeout=300, env=env)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("QGIS-RESULT ")), None)
    assert line is not None, f"QGIS probe failed ({res.returncode}): {res.stderr[-2000:]}"
    return json.loads(line[len("QGIS-RESULT "):])


def test_sidecars_round_trip_and_are_atomic(tmp_path: Path) -> None:
    cb = Legend.scheme("colorblind")
    tif = tmp_path / "x_classes.tif"
    assert write_qml(tif, cb) == qml_path(tif) == tmp_path / "x_classes.qml"
    assert write_pam(tif, cb) == pam_path(tif) == tmp_path / "x_classes.tif.aux.xml"
    assert read_qml_legend(qml_path(tif)) == Legend.of(cb.classes)
    assert read_pam_legend(pam_path(tif)) == Legend.of(cb.classes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_classes.qml", "x_classes.tif.aux.xml"]  # no temporaries left
    with pytest.raises(OutputError, match="reads back as"):
        validate_qml(qml_path(tif), DEFAULT_LEGEND)
    (tmp_path / "bad.qml").write_text("<qgis><pipe><rasterrenderer type='singlebandgray'/></pipe></qgis>")
    with pytest.raises(OutputError, match="bad.qml: not a QGIS style with a paletted raster renderer"):
        read_qml_legend(tmp_path / "bad.qml")


def test_class_map_writes_consistent_sidecars(tmp_path: Path) -> None:
    import rasterio

    classes = np.tile(np.array([0, 1, 2, 3, 255], np.uint8), (40, 8))
    for lg in (DEFAULT_LEGEND, Legend.scheme("colorblind")):
        path = write_class_map(tmp_path / f"{lg.scheme_name}_classes.tif", classes, CRS, TRANSFORM, lg, model_name="m", model_version="2")
        with rasterio.open(path) as src:
            palette = {v: src.colormap(1)[v][:3] for v in lg.values}
            tags = src.tags()
        assert palette == lg.color_map() and Legend.from_tags(tags) == lg and tags["MODEL_VERSION"] == "2"
        assert read_qml_legend(qml_path(path)) == Legend.of(lg.classes)
        assert read_pam_legend(pam_path(path)) == Legend.of(lg.classes)
    bare = write_class_map(tmp_path / "bare.tif", classes, CRS, TRANSFORM, sidecars=False)
    assert not qml_path(bare).exists() and not pam_path(bare).exists()


def test_qgis_shows_class_names_and_colours(tmp_path: Path) -> None:
    why = _qgis_available()
    if why is not None:
        pytest.skip(f"QGIS cannot be used here: {why}")
    classes = np.tile(np.array([0, 1, 2, 3, 255], np.uint8), (60, 12))
    styled = write_class_map(tmp_path / "styled_classes.tif", classes, CRS, TRANSFORM, DEFAULT_LEGEND)
    cb = write_class_map(tmp_path / "cb_classes.tif", classes, CRS, TRANSFORM, Legend.scheme("colorblind"))
    (tmp_path / "pam").mkdir()  # the GDAL sidecar alone (e.g. the .qml lost in a copy)
    shutil.copy(styled, tmp_path / "pam" / styled.name)
    shutil.copy(pam_path(styled), tmp_path / "pam" / pam_path(styled).name)
    bare = write_class_map(tmp_path / "bare_classes.tif", classes, CRS, TRANSFORM, DEFAULT_LEGEND, sidecars=False)
    res = _open_in_qgis(tmp_path / "xdg", styled, cb, tmp_path / "pam" / styled.name, bare)

    def expected(lg: Legend) -> list[list]:
        return [[v, lg.name(v), lg.hex(v)] for v in lg.values]

    got = res[str(styled)]
    assert got["valid"] and got["renderer"] == "paletted"
    assert got["classes"] == expected(DEFAULT_LEGEND), "the .qml gives exactly the four named classes"
    assert res[str(cb)]["classes"] == expected(Legend.scheme("colorblind"))
    pam_only = res[str(tmp_path / "pam" / styled.name)]
    assert pam_only["renderer"] == "paletted" and pam_only["classes"][:4] == expected(DEFAULT_LEGEND)  # names from the .aux.xml
    if pam_only["rat"] != "no osgeo":
        assert pam_only["rat"] == [[v, DEFAULT_LEGEND.name(v)] for v in DEFAULT_LEGEND.values]
    plain = res[str(bare)]  # what users saw before: a palette of 256 numbers
    assert plain["renderer"] == "paletted" and plain["classes"][0][1] == "0" and len(plain["classes"]) == 256
