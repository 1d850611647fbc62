"""Export of trained PyTorch checkpoints to ONNX, and the default model files that ship.

Installed as ``nimbus.export`` (see ``setup.py``); needs the ``[train]`` extra.
"""

__all__: list[str] = []
