"""The ``nimbus`` command line (python-fire): one class, one method per command.

Heavy imports live inside the methods so ``nimbus --help`` is instant and the deployment commands
never import torch. Errors derived from :class:`nimbus.errors.NimbusError` are printed as one line
and give a non-zero exit; pass ``--debug`` to see the traceback.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["NimbusCLI", "main"]


class NimbusCLI:
    """Nimbus: segment Sentinel-2 products into cloud, ground, snow and water.

    Commands run in the order of a model's life: extract, auxiliary, arrays, labels, train,
    export, segment, uncertain, label. `nimbus demo` shows the whole deployment path on a
    synthetic product with the built-in default model.
    """

    def info(self, path: str) -> str:
        """Describe a Sentinel-2 product or a Nimbus ONNX model.

        Args:
            path: a product (.SAFE folder, zipped SAFE, folder of per-band COGs) or a model (.onnx).

        Returns:
            A human-readable description: for a product its tile, sensing time, spacecraft, level,
            processing baseline, offsets, bands with resolutions and files, CRS and transform per
            resolution, cloud cover and nodata; for a model its channels, classes, normalisation,
            window and resolution.
        """
        if str(path).lower().endswith(".onnx"):
            from nimbus.modelspec import ModelSpec

            return ModelSpec.from_onnx(path).describe()
        from nimbus.product import open_product

        return open_product(path).describe()

    def synthetic(
        self,
        out: str,
        size: int = 1098,
        level: str = "L1C",
        baseline: str = "05.10",
        zipped: bool = False,
        seed: int = 0,
        tile: str = "32TMS",
    ) -> str:
        """Write a synthetic Sentinel-2 product in the real SAFE format, with its true class map.

        Args:
            out: folder in which the product (and its ``*_truth.tif``) is written.
            size: width and height in 10 m pixels (20/60 m bands get size/2 and size/6).
            level: "L1C" or "L2A".
            baseline: processing baseline such as "02.06" or "05.10" (04.00 and later carry offsets).
            zipped: write a zipped SAFE instead of a folder.
            seed: random seed; the same seed gives the same product.
            tile: MGRS tile code written into the names and metadata.

        Returns:
            The path of the product written.
        """
        from nimbus.synthetic import make_product

        product = make_product(out, size=size, level=level, baseline=baseline, zipped=zipped, seed=seed, tile=tile)
        return str(product.path)


def _pop_flag(argv: list[str], flag: str) -> bool:
    if flag in argv:
        argv.remove(flag)
        return True
    return False


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``nimbus`` command."""
    import fire

    from nimbus.errors import NimbusError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = _pop_flag(args, "--debug")
    try:
        fire.Fire(NimbusCLI, command=args, name="nimbus")
    except NimbusError as exc:
        if debug:
            raise
        print(f"nimbus: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("nimbus: interrupted", file=sys.stderr)
        sys.exit(130)
    return None


if __name__ == "__main__":
    main()
