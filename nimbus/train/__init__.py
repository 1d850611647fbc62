"""The PyTorch side of Nimbus (extra ``[train]``): models, datasets, training loop, MC dropout."""

from nimbus.train.compat import ensure_torchvision

ensure_torchvision()

__all__: list[str] = []
