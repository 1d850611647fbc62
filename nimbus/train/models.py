"""The model registry: one ``create_model(name, ...)`` for every architecture ``nimbus train`` knows.

=============  ==============================================  =================================
name           architecture                                    dropout MC dropout can switch on
=============  ==============================================  =================================
segnet         our light SegNet (:mod:`nimbus.train.segnet`)   Dropout2d in deep stages + head
deeplabv3      smp DeepLabV3+                                  ASPP dropout + Dropout2d before head
unet           smp Unet                                        Dropout2d before head
unetplusplus   smp Unet++                                      Dropout2d before head
fpn            smp FPN                                         decoder Dropout2d + before head
psp            smp PSPNet (fixed window when exported)         PSP dropout + Dropout2d before head
=============  ==============================================  =================================

Every model maps *normalised* inputs (N, in_channels, H, W) to logits (N, classes, H, W). smp
encoders are built with ``encoder_weights=None`` (no downloads). smp models need H and W divisible
by 32 (DeepLabV3+ / PSPNet: by their output stride; 32 is always safe).

MC dropout: every dropout layer is a ``torch.nn.modules.dropout._DropoutNd`` (``nn.Dropout`` or
``nn.Dropout2d``); :func:`dropout_layers` lists them, so an uncertainty pass can put just those in
training mode while batch norm stays in evaluation mode.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

import nimbus.train  # noqa: F401  (torchvision shim before smp)
from nimbus.errors import TrainingError
from nimbus.train.segnet import SegNet

__all__ = ["ARCHITECTURES", "ENCODER_FREE", "create_model", "dropout_layers", "set_mc_dropout"]


def _smp():
    import segmentation_models_pytorch as smp

    return smp


def _with_head_dropout(model: nn.Module, dropout: float) -> nn.Module:
    """Put a ``Dropout2d(dropout)`` in front of an smp model's segmentation head."""
    model.segmentation_head = nn.Sequential(nn.Dropout2d(dropout), model.segmentation_head)
    return model


def _deeplabv3(in_channels: int, classes: int, encoder: str, dropout: float) -> nn.Module:
    m = _smp().DeepLabV3Plus(encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=classes, decoder_aspp_dropout=dropout)
    return _with_head_dropout(m, dropout)


def _unet(in_channels: int, classes: int, encoder: str, dropout: float) -> nn.Module:
    m = _smp().Unet(encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=classes)
    return _with_head_dropout(m, dropout)


def _unetplusplus(in_channels: int, classes: int, encoder: str, dropout: float) -> nn.Module:
    m = _smp().UnetPlusPlus(encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=classes)
    return _with_head_dropout(m, dropout)


def _fpn(in_channels: int, classes: int, encoder: str, dropout: float) -> nn.Module:
    m = _smp().FPN(encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=classes, decoder_dropout=dropout)
    return _with_head_dropout(m, dropout)


def _prune_unused_encoder_stages(model: nn.Module, in_channels: int) -> nn.Module:
    """Replace encoder children a forward pass never calls (stages beyond a shallow encoder depth).

    PSPNet uses only the first 3 encoder stages but smp keeps the deeper ones: their parameters
    would get no gradient (DDP would need ``find_unused_parameters``) and bloat checkpoints.
    """
    called: set[str] = set()
    hooks = [child.register_forward_hook(lambda *_, n=name: called.add(n)) for name, child in model.encoder.named_children()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, 64, 64))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    for name, child in list(model.encoder.named_children()):
        if name not in called and any(True for _ in child.parameters()):
            setattr(model.encoder, name, nn.Identity())
    return model


def _psp(in_channels: int, classes: int, encoder: str, dropout: float) -> nn.Module:
    m = _smp().PSPNet(encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=classes, psp_dropout=dropout)
    return _prune_unused_encoder_stages(_with_head_dropout(m, dropout), in_channels)


def _segnet(in_channels: int, classes: int, encoder: str, dropout: float) -> nn.Module:
    return SegNet(in_channels=in_channels, classes=classes, dropout=dropout)


#: Architecture name -> builder(in_channels, classes, encoder, dropout).
ARCHITECTURES: dict[str, Callable[[int, int, str, float], nn.Module]] = {
    "deeplabv3": _deeplabv3,
    "fpn": _fpn,
    "psp": _psp,
    "segnet": _segnet,
    "unet": _unet,
    "unetplusplus": _unetplusplus,
}

#: Architectures that ignore ``encoder``.
ENCODER_FREE: frozenset[str] = frozenset({"segnet"})

_ALIASES = {"deeplabv3plus": "deeplabv3", "deeplab": "deeplabv3", "unet++": "unetplusplus", "pspnet": "psp"}


def create_model(name: str, in_channels: int = 15, classes: int = 4, encoder: str = "resnet18", dropout: float = 0.2) -> nn.Module:
    """Build an untrained segmentation model.

    Args:
        name: segnet, deeplabv3, unet, unetplusplus, fpn or psp (case-insensitive).
        in_channels: number of input channels (15 = 13 bands + altitude + tree cover).
        classes: number of classes (4: cloud, ground, snow, water).
        encoder: smp encoder name (resnet18, resnet34, mobilenet_v2, efficientnet-b0, ...);
            ignored by segnet.
        dropout: dropout probability in [0, 1) of the layers MC dropout switches on.

    Returns:
        The model (in training mode) mapping normalised (N, in_channels, H, W) to logits
        (N, classes, H, W).

    Raises:
        TrainingError: for an unknown architecture or encoder, or an invalid size or dropout.
    """
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in ARCHITECTURES:
        raise TrainingError(f"unknown model {name!r}; choose one of {', '.join(sorted(ARCHITECTURES))}")
    if int(in_channels) < 1 or int(classes) < 1:
        raise TrainingError(f"model {name!r}: in_channels and classes must be >= 1, got {in_channels}, {classes}")
    if not 0.0 <= float(dropout) < 1.0:
        raise TrainingError(f"model {name!r}: dropout must be in [0, 1), got {dropout}")
    try:
        return ARCHITECTURES[key](int(in_channels), int(classes), str(encoder), float(dropout))
    except (KeyError, ValueError) as exc:
        raise TrainingError(f"model {name!r} with encoder {encoder!r}: {exc}") from exc


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    """Every dropout layer of ``model`` (the ones MC dropout switches on)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


def set_mc_dropout(model: nn.Module, enabled: bool = True) -> int:
    """Put ``model`` in evaluation mode with only its dropout layers in training mode (or back).

    Args:
        model: a model from :func:`create_model`.
        enabled: True for MC dropout (dropout active, batch norm frozen); False for plain eval.

    Returns:
        The number of dropout layers switched (0 means the model cannot give MC uncertainty).
    """
    model.eval()
    layers = dropout_layers(model)
    for m in layers:
        m.train(enabled)
    return len(layers)
