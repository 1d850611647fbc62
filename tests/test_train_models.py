"""The model registry: one shared test class that every architecture passes.

Forward/backward at several sizes, dropout that MC dropout can switch on, save/load through
checkpoints, and ONNX export parity with onnxruntime (dynamic batch/height/width; PSPNet with a
fixed window). To keep this file fast the registry test uses the TorchScript exporter
(``dynamo=False``, ~1 s) wherever it works and the dynamo exporter (~10 s) for SegNet, whose
``MaxUnpool2d`` the TorchScript exporter cannot trace; ``export/`` (the shipped export path) tests
the dynamo exporter on every architecture.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch

import nimbus.train  # noqa: F401  (torchvision shim before smp)
from nimbus.errors import ModelError, TrainingError
from nimbus.train.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from nimbus.train.models import ARCHITECTURES, create_model, dropout_layers, set_mc_dropout

torch.set_num_threads(2)

IN_CH = 15
CLASSES = 4
#: Architectures whose exported graph has a fixed height/width (adaptive pooling), with that size.
FIXED_WINDOW = {"psp": 48}
#: Architectures the TorchScript exporter cannot export.
DYNAMO_ONLY = {"segnet"}


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def arch(request: pytest.FixtureRequest) -> str:
    return request.param


class TestArchitecture:
    """What every registered architecture must do."""

    # Training needs batches of >= 2: DeepLabV3+'s image-pooling branch batch-normalises 1x1 maps.
    @pytest.mark.parametrize("shape", [(2, 32, 64), (3, 64, 32)])
    def test_forward_backward(self, arch: str, shape: tuple[int, int, int]) -> None:
        torch.manual_seed(0)
        model = create_model(arch, in_channels=IN_CH, classes=CLASSES)
        n, h, w = shape
        x = torch.randn(n, IN_CH, h, w)
        y = model(x)
        assert y.shape == (n, CLASSES, h, w)
        assert torch.isfinite(y).all()
        torch.nn.functional.cross_entropy(y, torch.randint(0, CLASSES, (n, h, w))).backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None for g in grads), "some parameters got no gradient"
        assert sum(float(g.abs().sum()) for g in grads) > 0
        with torch.no_grad():
            assert model.eval()(x[:1]).shape == (1, CLASSES, h, w)  # batch 1 at inference

    def test_channels_last(self, arch: str) -> None:
        model = create_model(arch, in_channels=IN_CH, classes=CLASSES).eval()
        x = torch.randn(1, IN_CH, 32, 32)
        ref = model(x)
        cl = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-4)

    def test_dropout_reaches_layers_and_mc_switches_it(self, arch: str) -> None:
        model = create_model(arch, in_channels=IN_CH, classes=CLASSES, dropout=0.37)
        layers = dropout_layers(model)
        assert layers, f"{arch} has no dropout layer"
        assert all(abs(m.p - 0.37) < 1e-9 for m in layers)
        x = torch.randn(1, IN_CH, 32, 32)
        with torch.no_grad():
            assert set_mc_dropout(model, True) == len(layers)
            assert not any(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
            a, b = model(x), model(x)
            assert not torch.allclose(a, b), "MC dropout passes are identical: dropout is not active"
            set_mc_dropout(model, False)
            torch.testing.assert_close(model(x), model(x))

    def test_save_load(self, arch: str, tmp_path) -> None:
        torch.manual_seed(1)
        model = create_model(arch, in_channels=3, classes=CLASSES, dropout=0.1)
        # Move the batch-norm statistics away from their initial values so they must be saved too.
        model.train()
        with torch.no_grad():
            model(torch.randn(2, 3, 32, 32) * 3 + 1)
        model.eval()
        path = save_checkpoint(
            tmp_path / "m.pt", model, arch=arch, channels=["B02", "B03", "B04"], mean=[1, 2, 3], std=[4, 5, 6],
            dropout=0.1, window=64, resolution=20, epoch=3, metrics={"miou": 0.5},
        )
        loaded, meta = load_checkpoint(path)
        assert not loaded.training
        x = torch.randn(1, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x))
        assert meta["arch"] == arch and meta["in_channels"] == 3 and meta["classes"] == CLASSES
        assert meta["channels"] == ["B02", "B03", "B04"] and meta["window"] == 64 and meta["resolution"] == 20.0
        np.testing.assert_allclose(meta["mean"], [1, 2, 3])
        np.testing.assert_allclose(meta["std"], [4, 5, 6])
        assert meta["epoch"] == 3 and meta["metrics"]["miou"] == 0.5 and meta["dropout"] == 0.1
        assert "state_dict" not in meta

    def test_onnx_parity(self, arch: str, tmp_path) -> None:
        import onnxruntime as ort

        torch.manual_seed(2)
        model = create_model(arch, in_channels=IN_CH, classes=CLASSES).eval()
        size = FIXED_WINDOW.get(arch, 32)
        x = torch.randn(1, IN_CH, size, size)
        dynamic = arch not in FIXED_WINDOW
        dynamo = arch in DYNAMO_ONLY
        kw: dict = {}
        if dynamic and dynamo:
            kw["dynamic_shapes"] = ({0: torch.export.Dim("n"), 2: torch.export.Dim("h"), 3: torch.export.Dim("w")},)
        elif dynamic:
            kw["dynamic_axes"] = {"x": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}}
        path = tmp_path / f"{arch}.onnx"
        logging.disable(logging.WARNING)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (x,), str(path), dynamo=dynamo, input_names=["x"], output_names=["logits"], opset_version=18 if dynamo else 17, **kw)
        finally:
            logging.disable(logging.NOTSET)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inputs = [x] + ([torch.randn(2, IN_CH, 64, 96)] if dynamic else [torch.randn(1, IN_CH, size, size)])
        for xi in inputs:
            (got,) = sess.run(None, {sess.get_inputs()[0].name: xi.numpy()})
            with torch.no_grad():
                ref = model(xi).numpy()
            assert got.shape == ref.shape
            assert np.abs(got - ref).max() < 1e-3
            assert (got.argmax(1) == ref.argmax(1)).mean() > 0.999


def test_unknown_architecture_is_a_clear_error() -> None:
    with pytest.raises(TrainingError, match="unknown model 'vgg'.*segnet"):
        create_model("vgg")


def test_invalid_dropout_is_refused() -> None:
    with pytest.raises(TrainingError, match="dropout"):
        create_model("segnet", dropout=1.0)


def test_encoder_choice_reaches_the_model() -> None:
    small = create_model("unet", in_channels=4, encoder="resnet18")
    big = create_model("unet", in_channels=4, encoder="resnet34")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(big) > count(small) + 5_000_000
    with pytest.raises(TrainingError, match="nosuchnet"):
        create_model("fpn", encoder="nosuchnet")


def test_aliases() -> None:
    assert type(create_model("DeepLabV3Plus", in_channels=4)).__name__ == "DeepLabV3Plus"
    assert type(create_model("unet++", in_channels=4)).__name__ == "UnetPlusPlus"


def test_bad_checkpoint_files(tmp_path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="junk.pt"):
        load_checkpoint(junk)
    partial = tmp_path / "partial.pt"
    torch.save({"arch": "segnet"}, partial)
    with pytest.raises(ModelError, match="missing"):
        read_checkpoint(partial)
