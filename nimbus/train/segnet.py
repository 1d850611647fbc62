"""A light SegNet: an encoder-decoder that upsamples with the encoder's max-pooling indices.

After Badrinarayanan et al. (2017), slimmed for 13-15 band Sentinel-2 windows: four stages of
(conv-BN-ReLU) x 2 with widths ``base * (1, 2, 4, 8)``, max pooling that remembers where each
maximum came from, and a mirrored decoder that puts values back there with ``MaxUnpool2d``. As in
Bayesian SegNet, ``Dropout2d`` sits after the two deepest encoder stages, before the two deepest
decoder stages and before the classifier, so MC dropout (dropout left on at inference) gives a
real uncertainty.

Any height and width work (unpooling restores the pre-pooling size), but the exported ONNX graph
is cheapest with sizes divisible by 16.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SegNet"]


def _block(cin: int, cout: int, convs: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class SegNet(nn.Module):
    """SegNet with pooling indices and dropout.

    Args:
        in_channels: number of input channels (15 for the 13 bands plus altitude and tree cover).
        classes: number of output classes (logits per class).
        dropout: probability of the ``Dropout2d`` layers (0 disables them).
        base: width of the first stage; stage ``i`` has ``base * 2**i`` channels.
        depth: number of pooling stages (1-5).

    Shapes:
        input (N, in_channels, H, W) normalised values -> logits (N, classes, H, W).
    """

    def __init__(self, in_channels: int = 15, classes: int = 4, dropout: float = 0.2, base: int = 32, depth: int = 4) -> None:
        super().__init__()
        if not 1 <= depth <= 5:
            raise ValueError(f"SegNet depth must be 1..5, got {depth}")
        widths = [base * 2**i for i in range(depth)]
        self.depth = depth
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.enc_drop = nn.ModuleList()
        self.dec_drop = nn.ModuleList()
        cin = in_channels
        for i, w in enumerate(widths):
            self.encoders.append(_block(cin, w))
            deep = i >= depth - 2
            self.enc_drop.append(nn.Dropout2d(dropout) if deep and dropout > 0 else nn.Identity())
            cin = w
        for i in reversed(range(depth)):
            w = widths[i]
            out = widths[i - 1] if i > 0 else base
            deep = i >= depth - 2
            self.dec_drop.append(nn.Dropout2d(dropout) if deep and dropout > 0 else nn.Identity())
            self.decoders.append(_block(w, out))
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.head_dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(base, classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes, H, W) for normalised inputs (N, in_channels, H, W)."""
        indices: list[torch.Tensor] = []
        sizes: list[torch.Size] = []
        for enc, drop in zip(self.encoders, self.enc_drop):
            x = enc(x)
            sizes.append(x.size())
            x, idx = self.pool(x)
            indices.append(idx)
            x = drop(x)
        for dec, drop, idx, size in zip(self.decoders, self.dec_drop, reversed(indices), reversed(sizes)):
            x = drop(x)
            x = self.unpool(x, idx, output_size=size[-2:])
            x = dec(x)
        return self.classifier(self.head_dropout(x))
