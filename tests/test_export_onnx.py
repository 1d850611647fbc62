"""Export of checkpoints to ONNX: parity for every architecture, metadata, variants, and deployment.

Small models (resnet18 encoders, 64 px windows) keep this quick; the exporter is torch.export-based.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import rasterio
import torch

import nimbus.train  # noqa: F401  (torchvision shim before smp)
from nimbus.errors import ModelError, TrainingError
from nimbus.export.command import run_export, variant_path
from nimbus.export.onnx_export import IR_VERSION, OPSET, DeployableModel, export_onnx
from nimbus.export.parity import check_parity, onnx_runner
from nimbus.modelspec import ModelSpec
from nimbus.train.checkpoint import load_checkpoint, save_checkpoint
from nimbus.train.models import create_model

CHANNELS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12", "altitude", "treecover")
MEAN = [1500.0] * 13 + [1200.0, 30.0]
STD = [900.0] * 13 + [600.0, 35.0]
ARCHS = ("segnet", "unet", "deeplabv3", "fpn", "psp")


def _checkpoint(folder: Path, arch: str, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = create_model(arch, in_channels=len(CHANNELS), encoder="resnet18")
    with torch.no_grad():  # non-trivial batch-norm statistics, so normalisation errors would show
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return Path(
        save_checkpoint(
            folder / f"{arch}.pt", model, arch=arch, channels=CHANNELS, mean=MEAN, std=STD, encoder="resnet18",
            resolution=20.0, window=64, epoch=3, metrics={"miou": 0.5},
        )
    )


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ckpt")


@pytest.fixture(scope="module")
def segnet_onnx(ckpt_dir) -> tuple[Path, Path]:
    ckpt = _checkpoint(ckpt_dir, "segnet")
    out = ckpt_dir / "segnet.onnx"
    export_onnx(ckpt, out, name="test-segnet", version="7")
    return ckpt, out


@pytest.mark.parametrize("arch", ARCHS)
def test_export_parity_every_architecture(ckpt_dir, arch) -> None:
    """Each of the five exports, passes the checker and matches PyTorch on random and real-shaped inputs."""
    ckpt = _checkpoint(ckpt_dir, arch, seed=1)
    out = ckpt_dir / f"{arch}-parity.onnx"
    result = export_onnx(ckpt, out)
    assert result.parity is not None and result.parity.passed
    assert result.parity.max_abs_diff < 1e-4
    assert result.parity.argmax_agreement >= 0.999
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.ir_version <= IR_VERSION
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == OPSET
    spec = ModelSpec.from_onnx(out)
    assert spec.channels == CHANNELS and spec.resolution == 20.0 and spec.window == 64
    assert spec.normalization_in_graph and spec.softmax_in_graph
    assert spec.mean == pytest.approx(MEAN) and spec.std == pytest.approx(STD)
    run = onnx_runner(out)
    if arch == "psp":  # adaptive pooling bins only export for one size
        assert not spec.dynamic_hw
        x = np.full((3, len(CHANNELS), 64, 64), 1500.0, np.float32)
        assert run(x).shape == (3, 4, 64, 64)  # the batch stays dynamic
    else:
        assert spec.dynamic_hw
        x = np.random.default_rng(0).uniform(0, 4000, (1, len(CHANNELS), 96, 160)).astype(np.float32)
        assert run(x).shape == (1, 4, 96, 160)


def test_normalisation_and_softmax_are_in_the_graph(segnet_onnx) -> None:
    """Raw DN in, probabilities out: the graph equals softmax(model((x - mean) / std))."""
    ckpt, out = segnet_onnx
    model, meta = load_checkpoint(ckpt)
    x = np.random.default_rng(3).uniform(0, 6000, (2, len(CHANNELS), 64, 64)).astype(np.float32)
    with torch.no_grad():
        norm = (torch.from_numpy(x) - torch.tensor(MEAN).view(1, -1, 1, 1)) / torch.tensor(STD).view(1, -1, 1, 1)
        ref = torch.softmax(model(norm), dim=1).numpy()
    got = onnx_runner(out)(x)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["model_type"] == '"Segmentor"' and "tiles_size" in props and "standardization_std" in props
    spec = ModelSpec.from_onnx(out)
    assert (spec.name, spec.version) == ("test-segnet", "7")


def test_parity_check_fails_on_a_different_model(segnet_onnx) -> None:
    """The parity check really compares: another model's weights must make it raise."""
    ckpt, out = segnet_onnx
    model, _ = load_checkpoint(ckpt)
    with torch.no_grad():
        model.classifier.bias.add_(torch.tensor([3.0, 0.0, 0.0, 0.0]))
    spec = ModelSpec.from_onnx(out)
    with pytest.raises(ModelError, match="disagrees"):
        check_parity(DeployableModel(model, MEAN, STD).eval(), out, spec)


def test_bad_export_options_are_refused(ckpt_dir, segnet_onnx) -> None:
    ckpt, _ = segnet_onnx
    with pytest.raises(TrainingError, match="multiple of 32"):
        export_onnx(ckpt, ckpt_dir / "bad.onnx", window=50)
    psp = _checkpoint(ckpt_dir, "psp")
    with pytest.raises(TrainingError, match="dynamic"):
        export_onnx(psp, ckpt_dir / "bad.onnx", dynamic=True)
    with pytest.raises(TrainingError, match="calibration"):
        run_export(ckpt, ckpt_dir / "bad.onnx", int8=True)
    assert not (ckpt_dir / "bad.onnx").exists()


def _arrays_with_labels(root: Path, seeds: tuple[int, ...]) -> Path:
    """Training arrays at 20 m of small synthetic products, with the truth as labels.tif."""
    from nimbus.arrays import ArrayStack, build_arrays
    from nimbus.synthetic import make_product

    arrays = root / "arrays"
    for seed in seeds:
        p = make_product(root / f"p{seed}", size=192, seed=seed)
        folder, _ = build_arrays(p.path, arrays, res=20, aux_dir=p.aux_dir)
        stack = ArrayStack(folder)
        labels = np.asarray(p.truth)[::2, ::2]
        profile = dict(driver="GTiff", width=labels.shape[1], height=labels.shape[0], count=1, dtype="uint8",
                       crs=stack.crs, transform=stack.transform, nodata=255)
        with rasterio.open(stack.labels_path, "w", **profile) as dst:
            dst.write(labels, 1)
    return arrays


def test_fp16_and_int8_variants_via_cli(tmp_path, segnet_onnx) -> None:
    """`nimbus export --fp16 --int8 --calibration` writes both variants, scores them, and the card."""
    from nimbus.cli import NimbusCLI

    ckpt, _ = segnet_onnx
    arrays = _arrays_with_labels(tmp_path, (11, 12))
    out = tmp_path / "m.onnx"
    report = NimbusCLI().export(str(ckpt), str(out), fp16=True, int8=True, calibration=str(arrays), patches=4, threads=1)
    fp16, int8 = variant_path(out, "fp16"), variant_path(out, "int8")
    assert out.is_file() and fp16.is_file() and int8.is_file()
    assert "held-out int8" in report and "held-out fp16" in report
    s16, s8 = ModelSpec.from_onnx(fp16), ModelSpec.from_onnx(int8)
    assert s16.input_dtype == "float32" and s16.version.endswith("fp16")  # IO kept float32
    assert s8.version.endswith("int8") and s8.channels == CHANNELS
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in onnx.load(str(fp16)).graph.initializer)
    x = np.random.default_rng(5).uniform(500, 5000, (1, len(CHANNELS), 64, 64)).astype(np.float32)
    ref, half, q = onnx_runner(out)(x), onnx_runner(fp16)(x), onnx_runner(int8)(x)
    assert np.abs(ref - half).max() < 5e-2
    assert np.isfinite(q).all() and np.allclose(q.sum(axis=1), 1.0, atol=1e-3)
    card = out.with_suffix(".md").read_text()
    assert "| int8 |" in card and "| fp16 |" in card and "## Limits" in card and "B8A" in card


def test_exported_model_runs_in_nimbus_segment(tmp_path, segnet_onnx, synthetic_l1c) -> None:
    """The exported file runs through the deployment path (`nimbus segment` and Segmenter)."""
    from nimbus.cli import NimbusCLI
    from nimbus.segmenter import Segmenter

    _, out = segnet_onnx
    lines = NimbusCLI().segment(str(synthetic_l1c.path), model=str(out), aux=str(synthetic_l1c.aux_dir), out=str(tmp_path), threads=1)
    classes_path = Path(lines.split()[0])
    assert classes_path.is_file() and "test-segnet-v7" in classes_path.name
    with rasterio.open(classes_path) as src:
        classes = src.read(1)
        assert src.res == (20.0, 20.0)
    assert classes.shape == (120, 120)
    assert set(np.unique(classes)) <= {0, 1, 2, 3, 255}
    seg = Segmenter(out, aux_dir=synthetic_l1c.aux_dir, progress=False, threads=1)
    x = np.random.default_rng(2).uniform(500, 5000, (len(CHANNELS), 40, 72)).astype(np.float32)
    pred = seg.predict(x)
    assert pred.shape == (40, 72) and set(np.unique(pred)) <= {0, 1, 2, 3}
