"""Map quality on the real scenes of ``../shared/realdata``: every model side by side, in one run.

For each real scene (:mod:`nimbus.realscenes`) every model is run on the scene's bands at 20 m
(ONNX models through :class:`nimbus.segmenter.Segmenter`, harmonised DN in; s2cloudless on L1C
scenes, where its ten bands exist). Reported:

* coarse scenes (29RKH decimated to 200 m, 19UDP at 900 m) are run by the ONNX models on a grid
  upsampled (bilinear) to about 20 m, where clouds and fields have the size the models were made
  for, and the majority class of each block is taken back (``--no-scale-match`` to skip); the
  per-pixel rules give nearly the same map either way, s2cloudless runs on the scene's own grid;
* the labelled scene (29RKH, L2A, Sen2Cor SCL): ``nimbus evaluate`` of each map against the SCL,
  with thin cirrus counted as cloud and with thin cirrus left out: overall accuracy, Cohen's κ and
  the cloud-vs-rest κ;
* every scene: the predicted class fractions, the plausibility expectations the data README states
  (open sea is water, the cloud deck is cloud, no snow in summer lowlands ...), and the predicted
  cloud fraction against the metadata's cloud cover where the scene is a whole tile (19UDP, 29RKH;
  the other scenes are crops of tiles whose metadata cloud cover is tile-wide, so it is shown, not
  scored).

Usage::

    python benchmarks/bench_realdata.py [--model NAME=PATH ...] [--json OUT.json] [--markdown OUT.md]

Models by default: ``rules`` (export/nimbus-rules.onnx), ``default`` (export/nimbus-default.onnx)
and s2cloudless (cloud only). A model that cannot run on a scene (missing bands or auxiliary
layers) is marked ``n/a`` with the reason.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nimbus.bands import BANDS  # noqa: E402
from nimbus.models import resolve_model  # noqa: E402

CLASSES = ("cloud", "ground", "snow", "water")
S2CLOUDLESS_BANDS = ("B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12")
#: Whole-tile scenes whose metadata cloud cover describes exactly the pixels scored.
WHOLE_TILE = ("pds-19UDP-20170729", "pds-29RKH-20200219")


def _binary_kappa(cm: np.ndarray, k: int = 0) -> float:
    """Cohen's κ of class ``k`` against the rest, from a confusion matrix (rows reference)."""
    a = cm[k, k]
    b = cm[k].sum() - a
    c = cm[:, k].sum() - a
    d = cm.sum() - a - b - c
    n = a + b + c + d
    if n == 0:
        return float("nan")
    po = (a + d) / n
    pe = ((a + b) * (a + c) + (c + d) * (b + d)) / n**2
    return float((po - pe) / (1 - pe)) if pe < 1 else float("nan")


class OnnxRunner:
    """A Nimbus ONNX model on reflectance dicts."""

    def __init__(self, name: str, path: Path) -> None:
        from nimbus.inputs import is_band
        from nimbus.segmenter import Segmenter

        self.name = name
        self.seg = Segmenter(path, progress=False, threads=0)
        self.channels = list(self.seg.spec.channels)
        self.aux = [c for c in self.channels if not is_band(c)]

    def run(self, bands: dict[str, np.ndarray], valid: np.ndarray, factor: int = 1) -> tuple[np.ndarray | None, str]:
        """Classes on the scene's grid; ``factor`` > 1 runs the model on a grid ``factor`` times finer
        (bilinear), where objects have the size they have at 20 m, and takes the majority back."""
        if self.aux:
            return None, f"needs auxiliary layers {', '.join(self.aux)}"
        missing = [c for c in self.channels if c not in bands]
        if missing:
            return None, f"scene lacks {', '.join(missing)}"
        x = np.stack([bands[c] * 10000.0 for c in self.channels]).astype(np.float32)
        if factor <= 1:
            return self.seg.predict(x, valid=valid), ""
        import cv2

        h, w = valid.shape
        big = np.stack([cv2.resize(b, (w * factor, h * factor), interpolation=cv2.INTER_LINEAR) for b in x])
        ok = np.kron(valid, np.ones((factor, factor), bool))
        fine = self.seg.predict(big, valid=ok)
        return majority(fine, factor), ""


def majority(classes: np.ndarray, f: int) -> np.ndarray:
    """The most frequent class of each ``f x f`` block (255 when the block has no class)."""
    h, w = classes.shape[0] // f, classes.shape[1] // f
    blocks = classes[: h * f, : w * f].reshape(h, f, w, f)
    counts = np.stack([(blocks == k).sum(axis=(1, 3)) for k in range(len(CLASSES))])
    out = counts.argmax(axis=0).astype(np.uint8)
    out[counts.sum(axis=0) == 0] = 255
    return out


class S2CloudlessRunner:
    """s2cloudless (LightGBM on ten L1C bands): cloud (0) or not (1), at 20 m."""

    name = "s2cloudless"

    def __init__(self) -> None:
        from s2cloudless import S2PixelCloudDetector

        # the defaults are for 10 m (average over 4 px, dilate 2); the same footprint at 20 m
        self.det = S2PixelCloudDetector(threshold=0.4, average_over=2, dilation_size=1, all_bands=False)

    def run(self, bands: dict[str, np.ndarray], valid: np.ndarray, level: str) -> tuple[np.ndarray | None, str]:
        if level != "L1C":
            return None, "L1C only"
        missing = [b for b in S2CLOUDLESS_BANDS if b not in bands]
        if missing:
            return None, f"scene lacks {', '.join(missing)}"
        x = np.stack([bands[b] for b in S2CLOUDLESS_BANDS], axis=-1)[None].astype(np.float32)
        mask = self.det.get_cloud_masks(x)[0]
        out = np.where(mask > 0, 0, 1).astype(np.uint8)
        out[~valid] = 255
        return out, ""


def fractions(classes: np.ndarray) -> dict[str, float]:
    ok = classes != 255
    n = max(int(ok.sum()), 1)
    return {name: float((classes[ok] == i).sum()) / n for i, name in enumerate(CLASSES)}


def check_expect(frac: dict[str, float], expect: dict[str, float], cloud_only: bool) -> dict[str, bool]:
    out = {}
    for key, bound in expect.items():
        cls, side = key.rsplit("_", 1)
        if cloud_only and cls != "cloud":
            continue
        v = frac[cls]
        out[key] = v >= bound if side == "min" else v <= bound
    return out


def score_reference(scene: Any, classes: np.ndarray) -> dict[str, dict[str, float]]:
    """``nimbus evaluate`` of a map on the scene's grid against its SCL, cirrus as cloud / left out."""
    import rasterio

    from nimbus.evaluate import evaluate

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        pred = Path(tmp) / "pred.tif"
        with rasterio.open(pred, "w", driver="GTiff", height=classes.shape[0], width=classes.shape[1], count=1, dtype="uint8",
                           crs=scene.crs, transform=scene.transform, nodata=255) as ds:  # fmt: skip
            ds.write(classes, 1)
        for label, cirrus in (("cirrus=cloud", "cloud"), ("cirrus left out", "ignore")):
            ev = evaluate(pred, scene.reference_file, ref_kind="scl", cirrus=cirrus)
            cm = np.asarray(ev.confusion, dtype=np.float64)
            out[label] = {"accuracy": float(ev.accuracy), "kappa": float(ev.kappa), "cloud_kappa": _binary_kappa(cm, 0),
                          "compared": int(ev.compared)}  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], help="NAME=PATH of an extra ONNX model (repeatable)")
    ap.add_argument("--no-defaults", action="store_true", help="only the --model models and s2cloudless")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "realdata.json")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the tables as Markdown")
    ap.add_argument("--scenes", default=None, help="comma-separated scene ids (default: every scene)")
    ap.add_argument("--no-scale-match", dest="scale_match", action="store_false",
                    help="run the ONNX models on coarse scenes (29RKH 200 m, 19UDP 900 m) at their own pixel size "
                         "instead of on a bilinear grid of about 20 m")  # fmt: skip
    args = ap.parse_args()

    from nimbus.realscenes import list_scenes

    runners: list[Any] = []
    named = [] if args.no_defaults else [("rules", resolve_model("rules")), ("default-v1", resolve_model("default"))]
    named += [tuple(m.split("=", 1)) for m in args.model]
    for name, path in named:
        runners.append(OnnxRunner(name, Path(path)))
    s2c = S2CloudlessRunner()
    results: dict[str, Any] = {"scenes": {}, "models": [r.name for r in runners] + [s2c.name]}
    t0 = time.perf_counter()
    wanted = set(args.scenes.split(",")) if args.scenes else None
    for scene in list_scenes():
        if wanted is not None and scene.id not in wanted:
            continue
        bands, valid = scene.read(20)
        rec: dict[str, Any] = {"level": scene.level, "description": scene.description, "pixels": int(valid.sum()),
                               "pixel_size": scene.pixel_size, "metadata_cloud_cover": scene.metadata_cloud_cover,
                               "expect": scene.expect, "models": {}}  # fmt: skip
        factor = int(round(scene.pixel_size / 20.0)) if args.scale_match and scene.pixel_size and scene.pixel_size > 30 else 1
        rec["model_grid_factor"] = factor
        for r in [*runners, s2c]:
            classes, why = r.run(bands, valid, scene.level) if r is s2c else r.run(bands, valid, factor)
            if classes is None:
                rec["models"][r.name] = {"n/a": why}
                continue
            frac = fractions(classes)
            m: dict[str, Any] = {"fractions": frac, "checks": check_expect(frac, scene.expect, cloud_only=r is s2c)}
            if scene.metadata_cloud_cover is not None:
                m["cloud_minus_metadata"] = 100 * frac["cloud"] - scene.metadata_cloud_cover
            if scene.has_reference and r is not s2c:
                m["reference"] = score_reference(scene, classes)
            rec["models"][r.name] = m
        results["scenes"][scene.id] = rec
        print(f"{scene.id}: done", file=sys.stderr, flush=True)
    results["seconds"] = time.perf_counter() - t0
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    text = report(results)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


def report(results: dict[str, Any]) -> str:
    models = results["models"]
    lines = ["### Labelled: 29RKH (L2A, 2020-02-19, desert with clouds and cirrus) against its Sen2Cor SCL", "",
             "| model | OA (cirrus=cloud) | κ | cloud κ | OA (cirrus left out) | κ | cloud κ |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for sid, rec in results["scenes"].items():
        for name in models:
            m = rec["models"].get(name, {})
            if "reference" in m:
                a, b = m["reference"]["cirrus=cloud"], m["reference"]["cirrus left out"]
                lines.append(f"| {name} | {a['accuracy']:.4f} | {a['kappa']:.3f} | {a['cloud_kappa']:.3f} | "
                             f"{b['accuracy']:.4f} | {b['kappa']:.3f} | {b['cloud_kappa']:.3f} |")  # fmt: skip
            elif sid == "pds-29RKH-20200219" and name != "s2cloudless":
                lines.append(f"| {name} | n/a ({m.get('n/a', '')}) | | | | | |")
    lines += ["", "### Every scene: predicted cloud / ground / snow / water (% of valid pixels); ✓/✗ = the data README's expectation", "",
              "| scene | level | metadata cloud % | " + " | ".join(models) + " |", "|---|---|---:|" + "---|" * len(models)]  # fmt: skip
    passed = {n: [0, 0] for n in models}
    for sid, rec in results["scenes"].items():
        cells = []
        for name in models:
            m = rec["models"].get(name, {})
            if "fractions" not in m:
                cells.append("n/a")
                continue
            f = m["fractions"]
            text = "/".join(f"{100 * f[c]:.0f}" for c in CLASSES) if name != "s2cloudless" else f"cloud {100 * f['cloud']:.0f}"
            checks = m["checks"]
            if sid in WHOLE_TILE and "cloud_minus_metadata" in m:
                checks = {**checks, "cloud cover ±5": abs(m["cloud_minus_metadata"]) <= 5.0}
            for ok in checks.values():
                passed[name][0] += int(ok)
                passed[name][1] += 1
            marks = " ".join(("✓" if ok else "✗") + k for k, ok in checks.items())
            cells.append(f"{text} {marks}".strip())
        cc = rec["metadata_cloud_cover"]
        lines.append(f"| {sid} | {rec['level']} | {'' if cc is None else f'{cc:.1f}'} | " + " | ".join(cells) + " |")
    lines += ["", "Expectations met: " + ", ".join(f"{n} {p}/{t}" for n, (p, t) in passed.items()),
              f"({results['seconds']:.0f} s for the whole run)"]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
