"""Fuzzing (hypothesis) of the code that reads untrusted input: metadata XML, product zips, model metadata, label PUTs.

Every property is "a result, or a named :class:`nimbus.errors.NimbusError` whose message names the
file (or sample), never another exception". The strategies and the ``check_*`` functions are also
what ``tools/fuzz.py`` runs for minutes (:data:`PROPERTIES`); here each runs a bounded number of
derandomized examples so the whole file takes a few seconds.

Corpora are built once per process (``functools.cache``): the real metadata XML of
``../shared/realdata`` (angle grids pruned, to keep examples fast) plus the metadata of a tiny
synthetic product, and that product zipped (60 x 60 px, ~80 kB), with and without its top
``.SAFE`` folder.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import os
import struct
import tempfile
import urllib.parse
import warnings
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nimbus.errors import LabelError, ModelError, NimbusError
from nimbus.extract import extract_product, inspect_archive
from nimbus.metadata import TileMetadata, parse_metadata, parse_product_metadata, parse_tile_metadata
from nimbus.modelspec import FORMAT_VERSION, ClassInfo, ModelSpec
from nimbus.samples import validate_label

__all__ = [
    "PROPERTIES",
    "check_extract",
    "check_files_route",
    "check_inspect",
    "check_label_array",
    "check_label_put",
    "check_metadata",
    "check_modelspec",
    "check_modelspec_roundtrip",
    "corrupted_zips",
    "file_paths",
    "label_arrays",
    "label_puts",
    "metadata_corpus",
    "metadata_documents",
    "model_metadata",
    "product_zip",
    "random_zips",
    "valid_specs",
    "zip_archives",
]

# the same folder as the ``realdata`` fixture (tests/conftest.py), needed at collection time
REALDATA = Path(os.environ.get("NIMBUS_REALDATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata")).resolve()

#: hypothesis settings of the suite: few, reproducible examples, no example database in the tree.
SUITE = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# ---------------------------------------------------------------------------------------- corpora


@functools.cache
def product_zip() -> tuple[bytes, bytes]:
    """A tiny synthetic L1C product zipped as ``<id>.SAFE/...`` and the same entries without the top folder.

    Returns:
        ``(zip with the .SAFE folder, flat zip)`` as bytes.
    """
    from nimbus.synthetic import make_product

    with tempfile.TemporaryDirectory(prefix="nimbus-fuzz-") as tmp:
        product = make_product(tmp, size=60, level="L1C", baseline="05.10", zipped=True, seed=0)
        data = Path(product.path).read_bytes()
    flat = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(flat, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            name = info.filename.split("/", 1)[1] if "/" in info.filename else info.filename
            if name:
                dst.writestr(name, src.read(info))
    return data, flat.getvalue()


_PRUNE = {"Sun_Angles_Grid", "Viewing_Incidence_Angles_Grids", "Quality_Indicators_Info", "Auxiliary_Data_Info"}


def _pruned(data: bytes) -> bytes:
    """The document without its bulky sections the parser never reads (angle grids, QI lists)."""
    root = ET.fromstring(data)
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag.rsplit("}", 1)[-1] in _PRUNE:
                parent.remove(child)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


@functools.cache
def metadata_corpus() -> tuple[tuple[str, bytes], ...]:
    """Real metadata XML (product and tile level, every baseline in ``realdata``) plus the synthetic product's.

    Returns:
        ``(name, pruned document)`` pairs, distinct documents only.
    """
    docs: dict[str, tuple[str, bytes]] = {}
    files = sorted(p for p in REALDATA.rglob("*.xml") if "QI_DATA" not in p.parts) if REALDATA.is_dir() else []
    with zipfile.ZipFile(io.BytesIO(product_zip()[0])) as zf:
        synthetic = [(n, zf.read(n)) for n in zf.namelist() if n.endswith(("MTD_MSIL1C.xml", "MTD_TL.xml"))]
    for name, data in [(str(p), p.read_bytes()) for p in files] + synthetic:
        try:
            root = ET.fromstring(data).tag
        except ET.ParseError:
            continue
        if not root.endswith(("User_Product", "Tile_ID")):
            continue
        pruned = _pruned(data)
        docs.setdefault(hashlib.sha1(pruned).hexdigest(), (Path(name).name, pruned))
    return tuple(docs[k] for k in sorted(docs))


# ---------------------------------------------------------------------------------------- metadata

#: elements and attributes the metadata parser reads (mutations aim at them most of the time)
_TARGET_ELEMENTS = (
    "PROCESSING_BASELINE", "PRODUCT_URI", "QUANTIFICATION_VALUE", "BOA_QUANTIFICATION_VALUE",
    "L2A_BOA_QUANTIFICATION_VALUE", "BOA_ADD_OFFSET", "RADIO_ADD_OFFSET", "Special_Values",
    "SPECIAL_VALUE_TEXT", "SPECIAL_VALUE_INDEX", "Spectral_Information", "RESOLUTION", "IMAGE_FILE",
    "IMAGE_ID", "PRODUCT_START_TIME", "DATATAKE_SENSING_START", "Cloud_Coverage_Assessment",
    "SPACECRAFT_NAME", "PRODUCT_FORMAT", "TILE_ID", "HORIZONTAL_CS_CODE", "HORIZONTAL_CS_NAME", "Size",
    "NROWS", "NCOLS", "Geoposition", "ULX", "ULY", "XDIM", "YDIM", "Mean_Sun_Angle", "ZENITH_ANGLE",
    "AZIMUTH_ANGLE", "Mean_Viewing_Incidence_Angle", "SENSING_TIME", "CLOUDY_PIXEL_PERCENTAGE",
)
_TARGET_ATTRS = ("band_id", "bandId", "physicalBand", "resolution")

_xml_chars = st.characters(blacklist_categories=("Cs", "Cc"))
xml_texts = st.one_of(
    st.just(""),
    st.text(_xml_chars, max_size=20),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats().map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "NaN", "Infinity", "0x10", "1_000", " 12 ", "٣", "²", "1" * 5000,
                     "NODATA", "SATURATED", "B8A", "b13", "12", "13", "-1", "EPSG:32632", "EPSG:" + "9" * 5000,
                     "2018-01-01T10:54:41.026Z", "2018-13-45T99:99:99Z", "2018-01-01T10:54:41.Z", "T", "Z",
                     "2018-01-01", "S2A_MSIL1C_20180101T105441_N0206_R051_T31TDH_20180101T124911.SAFE"]),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
)

_mutation = st.tuples(
    st.sampled_from(["text", "text", "delete", "attr", "dup", "empty"]),
    st.one_of(st.sampled_from(_TARGET_ELEMENTS), st.integers(min_value=0, max_value=10**6)),
    st.integers(min_value=0, max_value=50),
    st.sampled_from(_TARGET_ATTRS),
    xml_texts,
)


def _mutate(data: bytes, mutations: list[tuple[str, Any, int, str, str]]) -> bytes:
    """Apply ``(op, element name or index, occurrence, attribute, text)`` edits to a document."""
    root = ET.fromstring(data)
    for op, which, nth, attr, text in mutations:
        parents = {c: p for p in root.iter() for c in p}
        elements = list(root.iter())
        if isinstance(which, str):
            named = [e for e in elements if e.tag.rsplit("}", 1)[-1] == which]
            if not named:
                continue
            el = named[nth % len(named)]
        else:
            el = elements[which % len(elements)]
        if op == "text":
            el.text = text
        elif op == "empty":
            el.text = None
            for child in list(el):
                el.remove(child)
        elif op == "attr":
            el.set(attr, text)
        elif op == "delete" and el in parents:
            parents[el].remove(el)
        elif op == "dup" and el in parents:
            parents[el].append(el)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


@st.composite
def metadata_documents(draw: st.DrawFn) -> tuple[str, bytes]:
    """A metadata document to parse: random bytes, a truncated real document, or a mutated one.

    Returns:
        ``(name, bytes)``; the name is what the parser must quote in its errors.
    """
    corpus = metadata_corpus()
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "truncated", "bytes", "prolog"]))
    name, data = corpus[draw(st.integers(min_value=0, max_value=len(corpus) - 1))]
    if kind == "bytes":
        return "fuzz/random.xml", draw(st.binary(max_size=300))
    if kind == "prolog":  # odd declarations and roots
        enc = draw(st.sampled_from(["utf-8", "UTF-16", "latin-1", "euc-jp", "shift_jis", "foo", "ascii", "cp1252"]))
        root = draw(st.sampled_from(["Level-1C_User_Product", "Level-2A_Tile_ID", "Level-3_User_Product", "x"]))
        body = draw(st.text(_xml_chars, max_size=30))
        doc = f'<?xml version="1.0" encoding="{enc}"?><{root}>{body}</{root}>'
        return "fuzz/prolog.xml", doc.encode("utf-8", "surrogatepass")
    if kind == "mutated":
        data = _mutate(data, draw(st.lists(_mutation, min_size=1, max_size=6)))
    if kind == "truncated" or draw(st.booleans()):
        data = data[: draw(st.integers(min_value=0, max_value=len(data)))]
    return f"fuzz/{name}", data


def check_metadata(doc: tuple[str, bytes]) -> None:
    """Every XML parser: a result, or a ``NimbusError`` naming the file; tile grids transform or refuse."""
    name, data = doc
    for parse in (parse_metadata, parse_product_metadata, parse_tile_metadata):
        try:
            result = parse(data, name=name)
        except NimbusError as exc:
            assert name in str(exc), f"{parse.__name__}: message does not name {name!r}: {exc}"
            continue
        if isinstance(result, TileMetadata):
            for res in (10, 20, 60):
                try:
                    result.transform(res)
                except NimbusError as exc:
                    assert name in str(exc)


@settings(SUITE, max_examples=40)
@given(metadata_documents())
@example(("fuzz/enc.xml", b'<?xml version="1.0" encoding="foo"?><a/>'))  # LookupError
@example(("fuzz/enc.xml", b'<?xml version="1.0" encoding="euc-jp"?><a/>'))  # ValueError: multi-byte
@example(("fuzz/t.xml", b"<Level-1C_User_Product><PROCESSING_BASELINE>02.06</PROCESSING_BASELINE>"
          b"<PRODUCT_START_TIME>garbage</PRODUCT_START_TIME></Level-1C_User_Product>"))  # fromisoformat
@example(("fuzz/t.xml", b"<Level-1C_User_Product><PROCESSING_BASELINE>05.10</PROCESSING_BASELINE>"
          b'<RADIO_ADD_OFFSET band_id="13">-1000</RADIO_ADD_OFFSET></Level-1C_User_Product>'))  # IndexError
@example(("fuzz/t.xml", b"<Level-1C_User_Product><PROCESSING_BASELINE>05.10</PROCESSING_BASELINE>"
          b'<RADIO_ADD_OFFSET band_id="x">-1000</RADIO_ADD_OFFSET></Level-1C_User_Product>'))  # ValueError
@example(("fuzz/t.xml", b"<Level-1C_User_Product><PROCESSING_BASELINE>05.10</PROCESSING_BASELINE>"
          b'<RADIO_ADD_OFFSET band_id="1">a</RADIO_ADD_OFFSET></Level-1C_User_Product>'))  # float()
@example(("fuzz/t.xml", b"<Level-1C_User_Product><PROCESSING_BASELINE>05.10</PROCESSING_BASELINE><Special_Values>"
          b"<SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>inf</SPECIAL_VALUE_INDEX>"
          b"</Special_Values></Level-1C_User_Product>"))  # OverflowError
@example(("fuzz/t.xml", b"<Level-1C_User_Product><PROCESSING_BASELINE>05.10</PROCESSING_BASELINE>"
          b'<Spectral_Information physicalBand="B2"><RESOLUTION>inf</RESOLUTION></Spectral_Information>'
          b"</Level-1C_User_Product>"))  # OverflowError
@example(("fuzz/t.xml", b'<Level-1C_Tile_ID><HORIZONTAL_CS_CODE>EPSG:32631</HORIZONTAL_CS_CODE><Size resolution="x">'
          b"<NROWS>1</NROWS><NCOLS>1</NCOLS></Size></Level-1C_Tile_ID>"))  # int(float("x"))
@example(("fuzz/t.xml", b"<Level-1C_Tile_ID><HORIZONTAL_CS_CODE>EPSG:" + b"9" * 5000
          + b"</HORIZONTAL_CS_CODE></Level-1C_Tile_ID>"))  # int() digit limit
@example(("fuzz/t.xml", b'<Level-1C_Tile_ID><HORIZONTAL_CS_CODE>EPSG:32631</HORIZONTAL_CS_CODE><Size resolution="10">'
          b'<NROWS>1</NROWS><NCOLS>1</NCOLS></Size><Geoposition resolution="10"><ULX>0</ULX><ULY>0</ULY><XDIM>10</XDIM>'
          b'<YDIM>-10</YDIM></Geoposition><Mean_Viewing_Incidence_Angle bandId="99"/></Level-1C_Tile_ID>'))  # IndexError
def test_metadata_parsers_fuzz(doc: tuple[str, bytes]) -> None:
    check_metadata(doc)


@settings(SUITE, max_examples=15)
@given(st.binary(max_size=200))
def test_metadata_parsers_from_files(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "MTD_MSIL1C.xml"
        path.write_bytes(data)
        for source in (path, str(path), Path(tmp), Path(tmp) / "missing.xml"):
            try:
                parse_metadata(source)
            except NimbusError as exc:
                assert str(source) in str(exc)


# ---------------------------------------------------------------------------------------- zips

_name_parts = st.one_of(
    st.sampled_from([
        "..", ".", "", "MTD_MSIL1C.xml", "MTD_MSIL2A.xml", "mtd_msil1c.XML", "X.SAFE", "a b.SAFE", "GRANULE",
        "L1C_T31TDH_A013204_20180101T105435", "IMG_DATA", "T32TMS_20230101T102031_B01.jp2", "manifest.safe",
        "C:", "c:..", "~", "a\x00b", "\x00", "S2A_OPER_MTD_SAFL1C_PDMC_20161013T075059_R111.xml",
        "S2A_MSIL1C_20230101T102031_N0510_R001_T32TMS_20230101T112031.SAFE", "é.SAFE", "L" * 300,
    ]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"), max_size=12),
    st.text("ab.\\:", max_size=6),
)


@st.composite
def _entry_names(draw: st.DrawFn) -> str:
    parts = draw(st.lists(_name_parts, min_size=1, max_size=5))
    sep = draw(st.sampled_from(["/", "/", "\\"]))
    lead = draw(st.sampled_from(["", "", "", "/", "C:/", "\\", "./"]))
    return lead + sep.join(parts)


_entries = st.tuples(
    _entry_names(),
    st.binary(max_size=64),
    st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]),
    st.sampled_from(["file", "file", "dir", "symlink", "exec"]),
)


def _build_zip(base: bytes | None, entries: list[tuple[str, bytes, int, str]], comment: bytes) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names
        with zipfile.ZipFile(out, "w") as zf:
            if base is not None:
                with zipfile.ZipFile(io.BytesIO(base)) as src:
                    for info in src.infolist():
                        zf.writestr(info, src.read(info))
            for name, data, method, kind in entries:
                if kind == "dir":
                    name = name.rstrip("/") + "/"
                info = zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0))
                info.compress_type = method
                mode = {"file": 0o100644, "exec": 0o104755, "dir": 0o040755, "symlink": 0o120777}[kind]
                info.external_attr = (mode << 16) | (0x10 if kind == "dir" else 0)
                zf.writestr(info, b"../../outside" if kind == "symlink" else (b"" if kind == "dir" else data))
            zf.comment = comment
    return out.getvalue()


@st.composite
def random_zips(draw: st.DrawFn) -> bytes:
    """A zip built from hypothesis-chosen entries (zip-slip names, links, duplicates, long and unicode names).

    Half of them add the entries to the synthetic product (so inspection gets past the listing).
    """
    base = draw(st.sampled_from([None, 0, 1]))
    entries = draw(st.lists(_entries, max_size=6))
    comment = draw(st.binary(max_size=8))
    return _build_zip(None if base is None else product_zip()[base], entries, comment)


def _patch_headers(data: bytearray, k: int, field: str, value: int) -> None:
    """Edit the flags or method of the ``k``-th local and central header (encryption, patched data, method)."""
    for sig, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        offsets = [i for i in range(len(data) - 4) if data[i : i + 4] == sig]
        if not offsets:
            continue
        at = offsets[k % len(offsets)] + flags_at + (2 if field == "method" else 0)
        if at + 2 > len(data):
            continue
        if field == "method":
            struct.pack_into("<H", data, at, value)
        else:
            struct.pack_into("<H", data, at, struct.unpack_from("<H", data, at)[0] | value)


_corruption = st.one_of(
    st.tuples(st.just("flip"), st.sampled_from(["start", "end", "mid"]), st.integers(0, 2000), st.integers(1, 255)),
    st.tuples(st.just("zero"), st.sampled_from(["start", "end", "mid"]), st.integers(0, 2000), st.integers(1, 64)),
    st.tuples(st.just("truncate"), st.sampled_from(["start", "end", "mid"]), st.integers(0, 2000), st.just(0)),
    st.tuples(st.just("flags"), st.integers(0, 30), st.sampled_from([0x1, 0x20, 0x40, 0x800]), st.just(0)),
    st.tuples(st.just("method"), st.integers(0, 30), st.sampled_from([1, 6, 9, 12, 14, 93, 98, 99, 0xFFFF]), st.just(0)),
)


def _corrupt(data: bytes, ops: list[tuple[Any, ...]]) -> bytes:
    buf = bytearray(data)
    for op, where, n, v in ops:
        if not buf:
            break
        if op in ("flags", "method"):
            _patch_headers(buf, where, op, n)
            continue
        pos = {"start": n, "end": len(buf) - 1 - n, "mid": len(buf) // 2 + n}[where] % len(buf)
        if op == "flip":
            buf[pos] ^= v
        elif op == "zero":
            buf[pos : pos + v] = bytes(len(buf[pos : pos + v]))
        else:
            del buf[pos:]
    return bytes(buf)


@st.composite
def corrupted_zips(draw: st.DrawFn) -> bytes:
    """The synthetic product zip (with or without its ``.SAFE`` folder) with flipped, zeroed, cut or patched bytes."""
    data = product_zip()[draw(st.sampled_from([0, 1]))]
    return _corrupt(data, draw(st.lists(_corruption, min_size=1, max_size=4)))


#: any archive: hypothesis-built, corrupted product, random bytes
zip_archives = st.one_of(random_zips(), corrupted_zips(), st.binary(max_size=100))


def check_inspect(data: bytes) -> None:
    """``inspect_archive``: an ``ArchiveInfo`` with a plain product id and tile, or a ``NimbusError`` naming the zip."""
    with tempfile.TemporaryDirectory(prefix="nimbus-fuzz-") as tmp:
        path = Path(tmp) / "product.zip"
        path.write_bytes(data)
        try:
            info = inspect_archive(path)
        except NimbusError as exc:
            assert str(path) in str(exc), f"message does not name the archive: {exc}"
            return
        assert info.product_id not in (".", "..") and "/" not in info.product_id and len(info.product_id) <= 255
        assert "/" not in info.tile and info.tile not in (".", "..")


def check_extract(data: bytes) -> None:
    """``extract_product``: a product folder or a ``NimbusError``; nothing written outside the store, no links, no temporaries."""
    with tempfile.TemporaryDirectory(prefix="nimbus-fuzz-") as tmp:
        jail = Path(tmp)
        (jail / "in").mkdir()
        archive = jail / "in" / "product.zip"
        archive.write_bytes(data)
        dst = jail / "store" / "deep" / "dst"
        dst.mkdir(parents=True)
        try:
            folder, _ = extract_product(archive, dst)
        except NimbusError as exc:
            assert str(archive) in str(exc), f"message does not name the archive: {exc}"
            folder = None
        assert sorted(os.listdir(jail)) == ["in", "store"] and os.listdir(jail / "in") == ["product.zip"]
        assert os.listdir(jail / "store") == ["deep"] and os.listdir(jail / "store" / "deep") == ["dst"]
        for root, dirs, files in os.walk(dst):
            for name in dirs + files:
                p = Path(root) / name
                assert not p.is_symlink(), f"link written: {p}"
                assert ".tmp-" not in name, f"temporary left behind: {p}"
        if folder is not None:
            assert dst in folder.parents and folder.is_dir()


@settings(SUITE, max_examples=50)
@given(zip_archives)
@example(b"")
@example(b"PK\x05\x06" + bytes(18))  # an empty archive
def test_inspect_archive_fuzz(data: bytes) -> None:
    check_inspect(data)


@settings(SUITE, max_examples=10)
@given(st.one_of(random_zips(), corrupted_zips()))
def test_extract_product_fuzz(data: bytes) -> None:
    check_extract(data)


def test_extract_product_fuzz_regressions() -> None:
    """Examples found by fuzzing (explicit: ``@example`` cannot call the cached corpus at import time)."""
    good, flat = product_zip()
    check_extract(good)
    for ops in ([("method", 10, 99, 0)], [("flags", 10, 0x1, 0)], [("flags", 10, 0x20, 0)]):
        check_extract(_corrupt(good, ops))  # NotImplementedError (method 99, patched data), RuntimeError (encrypted)
        check_inspect(_corrupt(flat, [(op, 17, *rest) for op, _, *rest in ops]))  # the same on MTD_MSIL1C.xml
    local_only = bytearray(good)  # bit 5 in a local header only: seen when extracting, not in the listing
    at = [i for i in range(len(local_only)) if local_only[i : i + 4] == b"PK\x03\x04"][10] + 6
    local_only[at] |= 0x20
    check_extract(bytes(local_only))
    check_inspect(_build_zip(None, [("./MTD_MSIL1C.xml", b"<a/>", 0, "file")], b""))  # product id "."
    check_extract(_build_zip(None, [("L" * 300 + ".SAFE/MTD_MSIL1C.xml", b"<a/>", 0, "file")], b""))  # ENAMETOOLONG
    check_extract(_build_zip(flat, [("\x00", b"x", 0, "file")], b""))  # IndexError: an empty name (cut at NUL)


# ---------------------------------------------------------------------------------------- model metadata

_SPEC_KEYS = tuple(sorted(ModelSpec(channels=("B02",), mean=(0.0,), std=(1.0,)).to_metadata()))

_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.sampled_from(["value", "name", "color", "x"]), children, max_size=4)
    ),
    max_leaves=12,
)
_meta_values = st.one_of(
    _json.map(json.dumps),
    st.text(max_size=10),
    st.sampled_from(["Infinity", "-Infinity", "NaN", "1e400", "1" * 5000, "[" * 100 + "]" * 100, '"B02"', "[]",
                     '[{"value": 1, "name": "a", "color": [1e400]}]', '[{"value": 1e400, "name": "a", "color": []}]',
                     '["B02", "B02"]', '{"a": 1}', "[1e400]", "2", "-1"]),
    _json,  # not JSON text at all: a raw value
)


@st.composite
def valid_specs(draw: st.DrawFn) -> ModelSpec:
    """A ``ModelSpec`` that satisfies every rule (finite numbers, distinct channels and class values)."""
    channels = draw(st.lists(st.one_of(st.sampled_from(["B01", "B02", "B8A", "B12", "altitude", "treecover"]), st.text(max_size=6)),
                             min_size=1, max_size=5, unique=True))
    n = len(channels)
    finite = st.floats(allow_nan=False, allow_infinity=False)
    values = draw(st.lists(st.integers(0, 254), min_size=1, max_size=5, unique=True))
    classes = tuple(
        ClassInfo(v, draw(st.text(max_size=6)), draw(st.tuples(*[st.integers(0, 255)] * 3))) for v in values
    )
    return ModelSpec(
        channels=tuple(channels),
        mean=tuple(draw(st.lists(finite, min_size=n, max_size=n))),
        std=tuple(draw(st.lists(st.floats(min_value=1e-30, max_value=1e30), min_size=n, max_size=n))),
        classes=classes,
        resolution=draw(st.floats(min_value=1e-3, max_value=1e6)),
        window=draw(st.integers(1, 10_000)),
        overlap=draw(st.floats(min_value=0.0, max_value=1.0, exclude_max=True)),
        dynamic_hw=draw(st.booleans()),
        normalization_in_graph=draw(st.booleans()),
        softmax_in_graph=draw(st.booleans()),
        name=draw(st.text(max_size=10)),
        version=draw(st.text(max_size=5)),
        format_version=draw(st.integers(-3, FORMAT_VERSION)),
        input_dtype=draw(st.sampled_from(["float32", "float16"])),
        description=draw(st.text(max_size=20)),
    )


@st.composite
def model_metadata(draw: st.DrawFn) -> dict[str, Any]:
    """ONNX ``metadata_props``: a valid spec's (or nothing) with keys of the real set replaced, added or removed."""
    meta: dict[str, Any] = dict(draw(valid_specs()).to_metadata()) if draw(st.booleans()) else {}
    for key in draw(st.lists(st.sampled_from(_SPEC_KEYS), max_size=6)):
        meta[key] = draw(_meta_values)
    for key in draw(st.lists(st.sampled_from(_SPEC_KEYS), max_size=3)):
        meta.pop(key, None)
    if draw(st.integers(0, 9)):  # mostly keep the key without which nothing else is read
        meta.setdefault("nimbus.channels", draw(_meta_values))
    return meta


def check_modelspec(meta: dict[str, Any]) -> None:
    """``ModelSpec.from_metadata``: a spec (that writes and describes itself) or a ``ModelError`` naming the file."""
    try:
        spec = ModelSpec.from_metadata(meta, source="fuzz/model.onnx")
    except ModelError as exc:
        assert "fuzz/model.onnx" in str(exc), f"message does not name the model: {exc}"
        return
    spec.to_metadata()
    spec.describe()
    assert spec.channels and len(spec.mean) == len(spec.std) == len(spec.channels)


def check_modelspec_roundtrip(spec: ModelSpec) -> None:
    """A valid spec survives ``to_metadata`` -> ``from_metadata`` unchanged."""
    meta = spec.to_metadata()
    assert all(isinstance(v, str) for v in meta.values())
    assert ModelSpec.from_metadata(meta, source="fuzz/model.onnx") == spec


@settings(SUITE, max_examples=80)
@given(model_metadata())
@example({"nimbus.channels": '["B02"]', "nimbus.window": "Infinity"})  # OverflowError
@example({"nimbus.channels": '["B02"]', "nimbus.format_version": "Infinity"})  # OverflowError
@example({"nimbus.channels": "1" * 5000})  # ValueError: integer digit limit, outside the JSON error
@example({"nimbus.channels": '["B02"]', "nimbus.classes": '[{"value": 1, "name": "a", "color": [1e400]}]'})
@example({"nimbus.channels": "[" * 5000 + "]" * 5000})  # RecursionError
def test_modelspec_from_metadata_fuzz(meta: dict[str, Any]) -> None:
    check_modelspec(meta)


@settings(SUITE, max_examples=50)
@given(valid_specs())
def test_modelspec_roundtrip_fuzz(spec: ModelSpec) -> None:
    check_modelspec_roundtrip(spec)


# ---------------------------------------------------------------------------------------- labelling tool


@functools.cache
def _labeler() -> tuple[Any, str, tempfile.TemporaryDirectory[str]]:
    """The Flask test client over a samples folder of two samples, the first sample's id, the folder."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _samples_data import make_samples

    from nimbus.labeler.server import create_app

    tmp = tempfile.TemporaryDirectory(prefix="nimbus-fuzz-labeler-")
    root = Path(tmp.name)
    samples = make_samples(root / "samples")
    (root / "secret.txt").write_text("TOPSECRET")
    (root / "samples" / ".hidden").write_text("hidden")
    app = create_app(root / "samples")
    app.config["TESTING"] = True  # exceptions of a view propagate: a crash fails the property
    return app.test_client(), samples.samples()[0].id, tmp


_H, _W = 64, 96  # the shape of the samples of tests/_samples_data.py
_numbers = st.one_of(
    st.integers(-(10**20), 10**20), st.floats(), st.sampled_from([0, 1, _H, _W, -1, True, 10**30]),
    st.text(max_size=5), st.none(), st.lists(st.integers(), max_size=2), st.just("current"),
)


@st.composite
def _label_data(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["pattern", "pattern", "short", "garbage", "value"]))
    if kind == "pattern":  # right length, a fill value and a few pokes (sometimes a valid label)
        arr = np.full(_H * _W, draw(st.sampled_from([0, 1, 2, 3, 255, 4, 254])), np.uint8)
        for pos, val in draw(st.lists(st.tuples(st.integers(0, _H * _W - 1), st.integers(0, 255)), max_size=3)):
            arr[pos] = val
        return base64.b64encode(arr.tobytes()).decode()
    if kind == "short":
        return base64.b64encode(draw(st.binary(max_size=64))).decode()
    if kind == "garbage":
        return draw(st.text(max_size=40))
    return draw(_json)


@st.composite
def label_puts(draw: st.DrawFn) -> tuple[str, bytes, str | None]:
    """A PUT of a label: ``(sample id, body, content type)``; JSON bodies of every shape, or raw bytes."""
    sid = draw(st.one_of(st.just(""), st.just(""), st.text(max_size=20), st.sampled_from(["..", "%2e%2e", "a/b"])))
    kind = draw(st.sampled_from(["body", "body", "body", "json", "raw"]))
    if kind == "raw":
        return sid, draw(st.binary(max_size=100)), draw(st.sampled_from(["application/json", "text/plain", None]))
    if kind == "json":
        return sid, json.dumps(draw(_json)).encode(), "application/json"
    body: dict[str, Any] = {}
    for key, value in (("revision", _numbers), ("width", _numbers), ("height", _numbers), ("data", _label_data())):
        if draw(st.integers(0, 9)):
            body[key] = draw(value)
    if draw(st.booleans()):
        body["status"] = draw(st.one_of(st.sampled_from(["todo", "done", "DONE", ""]), _json))
    if draw(st.booleans()):
        body.update({"width": _W, "height": _H})
    return sid, json.dumps(body).encode(), "application/json"


def check_label_put(put: tuple[str, bytes, str | None]) -> None:
    """``PUT /api/samples/<id>/label``: 200, or a 4xx JSON error; never a 500 or an uncaught exception."""
    client, first, _ = _labeler()
    sid, body, ctype = put
    sid = sid or first
    if b'"current"' in body:  # the revision the server holds now (so some saves go through)
        current = client.get(f"/api/samples/{first}").get_json()["sample"]["revision"]
        body = body.replace(b'"current"', str(current).encode())
    url = f"/api/samples/{urllib.parse.quote(sid, safe='')}/label"
    resp = client.put(url, data=body, content_type=ctype)
    assert resp.status_code in (200, 308, 400, 404, 405, 409, 413, 415), f"{resp.status_code}: {resp.get_data()[:300]!r}"
    if resp.status_code not in (200, 308, 405):  # 308: werkzeug merges the slashes of "0//label"
        assert resp.is_json and resp.get_json().get("error"), resp.get_data()[:300]


_path_parts = st.one_of(
    st.sampled_from(["..", ".", "%2e%2e", "..%2f", "secret.txt", "manifest.json", ".hidden", "", "~", "\\..", "%00"]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
)
file_paths = st.lists(_path_parts, min_size=1, max_size=4).map("/".join)


def check_files_route(subpath: str) -> None:
    """``GET /files/<path>``: a file of the samples folder, or 403/404; never anything outside it."""
    client, _, tmp = _labeler()
    resp = client.get("/files/" + urllib.parse.quote(subpath, safe="/%"))
    assert resp.status_code in (200, 308, 403, 404), f"{resp.status_code}: {resp.get_data()[:300]!r}"
    if resp.status_code == 200:
        assert b"TOPSECRET" not in resp.get_data() and resp.get_data() != b"hidden"


def label_arrays() -> st.SearchStrategy[np.ndarray]:
    """Arrays as a decoded label might be: any dtype the tool or an API caller could hand over, 0-3 dimensions."""
    dtypes = st.sampled_from([np.uint8, np.int8, np.int16, np.int64, np.uint64, np.float32, np.float64, np.bool_,
                              np.complex64, np.dtype("U2")])
    return hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
                      elements=None) | hnp.arrays(
        np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, max_side=4), elements=st.sampled_from([0, 1, 2, 3, 255, 7]))


def check_label_array(arr: np.ndarray) -> None:
    """``validate_label``: a uint8 array of class values of the right shape, or a ``LabelError`` naming the sample."""
    shape = arr.shape[:2] if arr.ndim >= 2 else (1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # huge floats cast to int64
        try:
            out = validate_label(arr, shape, where="sample fuzz-1")
        except LabelError as exc:
            assert "sample fuzz-1" in str(exc)
            return
    assert out.dtype == np.uint8 and out.shape == tuple(shape) and set(np.unique(out)) <= {0, 1, 2, 3, 255}


@settings(SUITE, max_examples=60)
@given(label_puts())
@example(("", b'{"revision": Infinity, "width": 96, "height": 64, "data": ""}', "application/json"))  # OverflowError
@example(("", b'{"revision": 0, "width": -Infinity, "height": 64, "data": ""}', "application/json"))
@example(("", b'{"revision": 0, "width": 96, "height": 64, "data": "\\u00e9"}', "application/json"))
@example(("", b"[" * 5000 + b"]" * 5000, "application/json"))  # RecursionError in the JSON decoder
@example(("0/", b"{}", "application/json"))  # a redirect, not an error
def test_label_put_fuzz(put: tuple[str, bytes, str | None]) -> None:
    check_label_put(put)


@settings(SUITE, max_examples=30)
@given(file_paths)
def test_files_route_fuzz(subpath: str) -> None:
    check_files_route(subpath)


@settings(SUITE, max_examples=50)
@given(label_arrays())
def test_validate_label_fuzz(arr: np.ndarray) -> None:
    check_label_array(arr)


# ---------------------------------------------------------------------------------------- for tools/fuzz.py

#: target -> [(property name, strategy, check)] run for minutes by ``tools/fuzz.py``
PROPERTIES: dict[str, list[tuple[str, st.SearchStrategy[Any], Callable[[Any], None]]]] = {
    "metadata": [("metadata-xml", metadata_documents(), check_metadata)],
    "zip": [
        ("inspect-archive", zip_archives, check_inspect),
        ("extract-product", st.one_of(random_zips(), corrupted_zips()), check_extract),
    ],
    "modelspec": [
        ("modelspec-from-metadata", model_metadata(), check_modelspec),
        ("modelspec-roundtrip", valid_specs(), check_modelspec_roundtrip),
    ],
    "labeler": [
        ("label-put", label_puts(), check_label_put),
        ("files-route", file_paths, check_files_route),
        ("validate-label", label_arrays(), check_label_array),
    ],
}
