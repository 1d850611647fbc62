"""The ``nimbus`` command line (python-fire): one class, one method per command.

Heavy imports live inside the methods so ``nimbus --help`` is instant and the deployment commands
never import torch. Errors derived from :class:`nimbus.errors.NimbusError` are printed as one line
and give a non-zero exit; pass ``--debug`` to see the traceback.
"""

import sys
from typing import Any

__all__ = ["NimbusCLI", "main"]


class NimbusCLI:
    """Nimbus: segment Sentinel-2 products into cloud, ground, snow and water.

    Commands run in the order of a model's life: extract, auxiliary, arrays, labels, train,
    export, segment, uncertain, label. `nimbus demo` shows the whole deployment path on a
    synthetic product with the built-in default model.
    """

    def __init__(self, debug: bool = False) -> None:
        self._debug = debug

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

    def search(
        self,
        bbox: Any = None,
        datetime: str | None = None,
        tile: str | None = None,
        cloud_cover: float | None = None,
        collection: str | None = None,
        catalog: str = "earth-search",
        out: str | None = None,
        limit: int = 100,
    ) -> str:
        """List Sentinel-2 items of a STAC API or a static catalogue (catalog.json on disk or over HTTP).

        Args:
            bbox: W,S,E,N in degrees.
            datetime: an ISO date or interval, e.g. 2024-06-01/2024-06-30 (".." for an open end).
            tile: an MGRS tile, e.g. 32TMS.
            cloud_cover: maximum cloud cover in percent.
            collection: collection id(s), comma-separated (default: the catalogue's Sentinel-2 L2A).
            catalog: earth-search, planetary-computer, cdse, or the URL/path of a STAC API or catalog.json.
            out: also write the items as an ItemCollection JSON (every command takes it; FILE#ID for one item).
            limit: the most items listed.

        Returns:
            One line per item: id, date, tile, cloud cover, level.
        """
        from nimbus.search import format_table, search_items, write_items

        items = search_items(bbox=bbox, datetime=datetime, tile=tile, cloud_cover=cloud_cover, collections=collection,
                             catalog=catalog, limit=limit)  # fmt: skip
        table = format_table(items)
        if out:
            table += f"\nwritten: {write_items(items, out)}"
        return table

    def catalog(self, maps_dir: str, out: str | None = None) -> str:
        """Collect the STAC items of class maps (<stem>_item.json beside each map) into a static catalogue.

        Args:
            maps_dir: the folder of class maps (searched two levels deep for *_item.json).
            out: the catalogue folder (default: MAPS_DIR); catalog.json and one folder per item.

        Returns:
            The catalog.json written and the number of items.
        """
        from pathlib import Path

        from nimbus.errors import UsageError
        from nimbus.stacitem import collect_catalog

        root = Path(maps_dir)
        if not root.is_dir():
            raise UsageError(f"{maps_dir}: not a folder of class maps")
        found = sorted(p for pattern in ("*_item.json", "*/*_item.json") for p in root.glob(pattern))
        path = collect_catalog(found, Path(out) if out else root)
        return f"{path}: {len(found)} item(s)"

    def synthetic(
        self,
        out: str,
        size: int = 1098,
        level: str = "L1C",
        baseline: str = "05.10",
        zipped: bool = False,
        seed: int = 0,
        tile: str = "32TMS",
        date: str | None = None,
        nodata_swath: bool = False,
        cloud_fraction: float = 0.3,
    ) -> str:
        """Write a synthetic Sentinel-2 product in the real SAFE format, with its true class map.

        Beside the product it writes ``<product_id>_truth.tif`` (0 cloud, 1 ground, 2 snow, 3 water,
        255 nodata) and ``<product_id>_aux/`` (the scene's altitude and tree cover at 10/20/60 m).

        Args:
            out: folder in which the product (and its ``*_truth.tif``) is written.
            size: width and height in 10 m pixels, a multiple of 6 (20/60 m bands get size/2 and size/6).
            level: "L1C" or "L2A".
            baseline: processing baseline such as "02.06" or "05.10" (04.00 and later carry offsets).
            zipped: write a zipped SAFE instead of a folder.
            seed: random seed; the same seed gives the same product.
            tile: MGRS tile code written into the names and metadata.
            date: sensing date "YYYY-MM-DD" (default: derived from the seed).
            nodata_swath: add a diagonal region without data (0 in all bands, 255 in the truth).
            cloud_fraction: target cloud fraction, 0..1.

        Returns:
            The path of the product written.
        """
        from nimbus.synthetic import make_product

        try:
            product = make_product(
                out, size=size, level=level, zipped=zipped, seed=seed, tile=tile,
                baseline=f"{baseline:05.2f}" if isinstance(baseline, (int, float)) else str(baseline),
                date=date, nodata_swath=nodata_swath, cloud_fraction=cloud_fraction,
            )  # fmt: skip
        except ValueError as exc:
            from nimbus.errors import NimbusError

            raise NimbusError(f"synthetic: {exc}") from exc
        return str(product.path)

    def segment(
        self,
        *products: str,
        model: str | None = None,
        aux: str | None = None,
        out: str = ".",
        overlap: float | None = None,
        window: int | None = None,
        weights: str = "spline",
        tta: int = 0,
        batch: int = 8,
        provider: str = "auto",
        threads: int = 0,
        probabilities: str | bool | None = None,
        uncertainty: bool = False,
        quicklook: bool = False,
        stac_item: bool = True,
        overwrite: bool = False,
        scheduler: str | None = None,
        workers: int | None = None,
        retries: int = 2,
        report: str | None = None,
        bbox: Any = None,
        datetime: str | None = None,
        tile: str | None = None,
        cloud_cover: float | None = None,
        collection: str | None = None,
        catalog: str = "earth-search",
    ) -> str:
        """Segment Sentinel-2 products into class maps (COG: 0 cloud, 1 ground, 2 snow, 3 water, 255 no data).

        Args:
            products: products (.SAFE folders, zipped SAFEs, COG folders, STAC item files or URLs,
                ItemCollection files from `nimbus search --out`) or folders holding products.
            model: a Nimbus ONNX model file, or a shipped model by name: rules (the spectral rule
                classifier for L1C and L2A, no auxiliary layers; used when no model is given, as
                the best-measured map on real scenes so far) or default (nimbus-default.onnx, the
                SegNet trained on synthetic products, L1C with altitude and tree cover from --aux).
            aux: folder of auxiliary layers (`nimbus auxiliary`) for models that take them, or
                the word auto to fetch the layers the model needs from public sources (cached).
            out: output folder; names carry the product id and the model name and version.
            overlap: window overlap fraction, 0 <= overlap < 1 (default: the model's).
            window: window size in pixels (default: the model's).
            weights: blending weights: spline, gaussian or tukey.
            tta: D4 test-time augmentation: number of flips/rotations averaged (0 = off, up to 8).
            batch: windows per inference call.
            provider: auto (CUDA if usable, else CPU), cpu, cuda or tensorrt.
            threads: CPU threads (0 = all cores; on Dask: the host's cores shared by its workers).
            probabilities: also write per-class probabilities: uint8 (flag alone) or float16.
            uncertainty: also write the per-pixel uncertainty (normalised entropy).
            quicklook: also write a PNG quicklook (true colour beside the classes, with a legend).
            stac_item: write a STAC Item beside each class map (--nostac_item: don't; needs pystac).
            overwrite: redo products whose outputs exist (default: skip them).
            scheduler: run on a Dask cluster, given the scheduler address (tcp://host:port) or the
                path of its scheduler file; $DASK_SCHEDULER_ADDRESS is used when set. Workers must
                see the products, the model and OUT at the same paths.
            workers: run on a local Dask cluster of this many worker processes (127.0.0.1).
            retries: on Dask, retries of a product whose failure looks transient (network, I/O).
            report: the run report, JSON Lines, one record per product as it completes
                (default OUT/nimbus-segment-report.jsonl).
            bbox: search option: W,S,E,N in degrees; with --datetime/--tile, segment what a STAC
                search finds (see nimbus search) besides PRODUCTS.
            datetime: search option: an ISO date or interval.
            tile: search option: an MGRS tile, e.g. 32TMS.
            cloud_cover: search option: maximum cloud cover in percent.
            collection: search option: collection id(s).
            catalog: search option: earth-search, planetary-computer, cdse, or a STAC API / catalog.json.

        Returns:
            One line per product: the class map written (or skipped). Exits non-zero when any
            product failed; the others are still processed.
        """
        from pathlib import Path

        from nimbus.batch import collect_records
        from nimbus.engine import SegmentConfig, segment_many
        from nimbus.engine.distributed import connect
        from nimbus.errors import UsageError

        refs = list(products)
        if bbox is not None or datetime is not None or tile is not None:
            from nimbus.search import search_items, write_items

            items = search_items(bbox=bbox, datetime=datetime, tile=tile, cloud_cover=cloud_cover, collections=collection,
                                 catalog=catalog, limit=10000)  # fmt: skip
            if not items:
                raise UsageError(f"the search found no item (catalog {catalog}, bbox {bbox}, datetime {datetime}, tile {tile})")
            refs.append(str(write_items(items, Path(out) / "nimbus-search-items.json")))
        if not refs:
            raise UsageError("no product given: nimbus segment PRODUCT... [--model MODEL.onnx] (or search options --bbox/--datetime/--tile)")
        refs = _products(refs)  # folders of products and ItemCollections expand here
        # the config checks every run option (naming the option) before any model is loaded
        config = SegmentConfig(
            window=window, overlap=overlap, weights=weights, tta=tta, batch=batch, provider=provider, threads=threads,
            aux=aux, probabilities="uint8" if probabilities is True else (probabilities or None), uncertainty=uncertainty,
            quicklook=quicklook, stac_item=bool(stac_item) and _has_pystac(), overwrite=overwrite,
        )  # fmt: skip
        # without --model: the rules model, the best-measured map on real scenes today (README, BENCHMARKS.md)
        model_ref = "rules" if model is None else model

        def waiting(product: str, owner: dict) -> None:
            print(f"nimbus: waiting: pid {owner.get('pid', '?')} on {owner.get('host', '?')} is writing the outputs of {product}",
                  file=sys.stderr, flush=True)  # fmt: skip

        with connect(scheduler, workers) as client:
            records = segment_many(refs, model_ref, config, out, client=client, retries=retries,
                                   report=report or Path(out) / "nimbus-segment-report.jsonl", on_wait=waiting)  # fmt: skip
            return collect_records(records, len(refs), debug=self._debug).result()

    def uncertain(
        self,
        checkpoint: str,
        arrays: str,
        out: str,
        k: int = 50,
        passes: int = 16,
        method: str = "std",
        window: int | None = None,
        spacing: float = 2.0,
        split: str | None = None,
        labelled: str | None = None,
        min_valid: float = 0.2,
        batch: int = 8,
        device: str | None = None,
        seed: int = 0,
        context: float = 3.0,
    ) -> dict:
        """Select the patches the model is least sure of (MC dropout) and write them as samples to label.

        The pool is every patch of the products in neither the training nor the test split, minus
        patches that already are samples (in OUT or in --labelled folders). Writes OUT/manifest.json,
        one folder per sample (truecolor, falsecolor, auto_label, prediction, uncertainty GeoTIFFs, and
        context_truecolor / context_falsecolor: the area around the sample that `nimbus label` shows dimmed),
        OUT/scores.csv and plots (uncertainty by month x day, map over the tile). Label them with
        `nimbus label OUT`, then train with `nimbus train --al-labels OUT`.

        Args:
            checkpoint: a checkpoint written by `nimbus train` (best.pt).
            arrays: the arrays folder (`nimbus arrays`).
            out: the samples folder (created, or extended when it exists).
            k: number of samples to select.
            passes: MC-dropout passes per patch.
            method: std (as the original: std of the softmax over passes, mean over classes),
                entropy (predictive entropy) or mutual_information.
            window: sample size in pixels (default: the checkpoint's training window).
            spacing: minimum distance, in windows, between two selected patches of one product.
            split: split JSON (default: the checkpoint's split, or split.json beside it).
            labelled: comma-separated samples folders whose samples must not be selected again.
            min_valid: skip patches with a smaller fraction of valid pixels.
            batch: passes per forward call.
            device: cpu, cuda, cuda:1 ... (default: CUDA when available).
            seed: seed of the dropout masks.
            context: side of the surrounding area stored with each sample, in sample sides (1: none).

        Returns:
            A summary: pool, number of patches scored, sample ids selected, scores and plot paths.
        """
        from nimbus.train.uncertainty import select_samples

        dirs = [d for d in str(labelled).split(",") if d.strip()] if labelled else []
        res = select_samples(
            arrays, out, checkpoint=checkpoint, split=split, k=int(k), passes=int(passes), method=method,
            window=window, spacing=float(spacing), labelled=dirs, min_valid=float(min_valid), batch=int(batch),
            device=device, seed=int(seed), context=float(context),
        )
        return {**res, "selected": len(res["selected"])}

    def label(
        self, samples_dir: str, host: str = "127.0.0.1", port: int = 8765, no_browser: bool = False, palette: str = "default"
    ) -> None:
        """Open the labelling web tool on a samples folder written by `nimbus uncertain`.

        Serves only that folder, on 127.0.0.1 by default, prints its URL and opens the browser.
        Labels are saved as georeferenced uint8 GeoTIFFs (label.tif) beside each sample.

        Args:
            samples_dir: the samples folder (holds manifest.json).
            host: address to bind; keep 127.0.0.1 unless others must reach it.
            port: TCP port (0 picks a free one).
            no_browser: do not open a browser window.
            palette: class colours: default (those of the maps and quicklooks) or colorblind.
        """
        from nimbus.extras import require

        require("label", "flask")  # the labelling tool's web server: the [label] extra
        from nimbus.labeler.server import serve

        serve(samples_dir, host=host, port=port, open_browser=not no_browser, palette=palette)


    def train(
        self,
        arrays: str | None = None,
        out: str | None = None,
        model: str = "segnet",
        encoder: str = "resnet18",
        epochs: int | None = None,
        lr: float = 1e-3,
        batch: int = 8,
        patch: int = 512,
        dropout: float = 0.2,
        channels: Any = None,
        resolution: float | None = None,
        seed: int = 0,
        resume: str | None = None,
        al_labels: str | None = None,
        al_weight: float = 1.0,
        al_fraction: float = 0.0,
        workers: int = 0,
        patches_per_epoch: int | None = None,
        weight_decay: float = 1e-4,
        dice: float = 0.0,
        lovasz: float = 0.0,
        split: str | None = None,
        device: str | None = None,
        amp: bool = True,
    ) -> str:
        """Train a segmentation model on training arrays (patches sampled from memory maps).

        Splits the products by date (OUT/split.json), normalises with statistics of the training
        products (OUT/stats.json), trains with AdamW and a warm-up + cosine schedule, validates
        every epoch (OUT/metrics.csv, OUT/curves.png: per-class IoU, mIoU, accuracy, confusion
        matrix), keeps OUT/best.pt and OUT/last.pt and evaluates best.pt on the test products
        (OUT/test_metrics.json). Run under `torchrun --nproc-per-node N -m nimbus train ...` for
        data-parallel training (NCCL on GPUs, gloo on CPUs).

        Args:
            arrays: the arrays folder written by `nimbus arrays` (ARRAYS_DIR/<product_id>/...).
            out: output folder for checkpoints, metrics and plots.
            model: segnet, deeplabv3, unet, unetplusplus, fpn or psp.
            encoder: smp encoder: resnet18, resnet34, mobilenet_v2, efficientnet-b0, ... (not segnet).
            epochs: total epochs (default 10; with --resume the new total, default: the checkpoint's).
            lr: peak AdamW learning rate.
            batch: patches per step (per process under torchrun).
            patch: patch size in pixels (divisible by 32 for the smp models).
            dropout: dropout probability (also the MC-dropout rate of `nimbus uncertain`).
            channels: input channels, comma-separated (default: B01..B12 with B8A, altitude, treecover).
            resolution: pixel size in metres the arrays must have (default: the arrays').
            seed: random seed of the split, statistics, weights and patches.
            resume: a last.pt to continue from (its options are kept; --epochs sets the new total).
            al_labels: samples folder with hand labels from `nimbus label` (active learning). Their
                products train; validation keeps products without hand labels (moving whole dates
                of training products there when none is left) and the run prints what it did.
            al_weight: loss weight of hand-labelled pixels.
            al_fraction: share of random training patches drawn around hand-labelled samples.
            workers: data-loading worker processes.
            patches_per_epoch: random patches per epoch (default: enough to cover the area once).
            weight_decay: AdamW weight decay.
            dice: weight of an added Dice loss (0: none).
            lovasz: weight of an added Lovasz-softmax loss (0: none).
            split: a split.json to reuse instead of splitting afresh.
            device: cpu, cuda, cuda:1 ... (default: the GPU when there is one).
            amp: mixed precision on GPU.

        Returns:
            Where the best checkpoint is, its epoch and validation mIoU, and the test metrics.
        """
        from nimbus.train.loop import train

        if resume:
            options: dict[str, Any] = {"resume": str(resume), "workers": workers, "device": device}
            if epochs is not None:
                options["epochs"] = epochs
        else:
            if isinstance(channels, str):
                channels = [c.strip() for c in channels.split(",") if c.strip()]
            options = dict(
                model=model, encoder=encoder, epochs=10 if epochs is None else epochs, lr=lr, batch=batch, patch=patch,
                dropout=dropout, channels=list(channels) if channels else None, resolution=resolution, seed=seed,
                al_labels=al_labels, al_weight=al_weight, al_fraction=al_fraction, workers=workers, patches_per_epoch=patches_per_epoch,
                weight_decay=weight_decay, dice=dice, lovasz=lovasz, split=split, device=device, amp=amp,
            )
        summary = train(arrays, out, **options)
        if summary["rank"] != 0:
            return ""
        lines = [f"best: {summary['best']} (epoch {summary['best_epoch']}, validation mIoU {summary['best_miou']:.4f})", f"last: {summary['last']}"]
        if summary["test"]:
            t = summary["test"]
            lines.append(f"test: mIoU {t['miou']:.4f}, accuracy {t['accuracy']:.4f} ({summary['out']}/test_metrics.json)")
        return "\n".join(lines)

    def export(
        self,
        checkpoint: str,
        out: str,
        name: str | None = None,
        version: str = "1",
        window: int | None = None,
        overlap: float = 0.5,
        dynamic: bool | None = None,
        fp16: bool = False,
        int8: bool = False,
        calibration: str | None = None,
        heldout: str | None = None,
        patches: int = 32,
        tolerance: float = 1e-4,
        card: bool = True,
        threads: int = 0,
    ) -> str:
        """Export a checkpoint to a self-describing ONNX model (normalisation and softmax inside).

        Writes OUT (fp32; parity with PyTorch checked on random and real-shaped inputs, fails above
        tolerance), OUT-fp16.onnx with --fp16 (float16 compute, float32 input/output, for GPUs),
        OUT-int8.onnx with --int8 --calibration ARRAYS (static QDQ int8, for CPUs) and the model
        card OUT.md (with the variants' mIoU change against fp32 on held-out patches and speed-up).

        Args:
            checkpoint: best.pt / last.pt written by `nimbus train`.
            out: the .onnx file to write.
            name: model name in the metadata and output file names (default nimbus-<arch>-<encoder>).
            version: model version in the metadata and output file names.
            window: window size in px (default: the training patch; PSPNet's fixed input size).
            overlap: default window overlap fraction used by `nimbus segment`.
            dynamic: dynamic height/width (default: yes, except PSPNet which needs a fixed window).
            fp16: also write the float16 variant.
            int8: also write the int8 variant (needs --calibration).
            calibration: `nimbus arrays` folder (with labels) whose patches calibrate int8; its
                latest products are held out for the scores unless --heldout is given.
            heldout: `nimbus arrays` folder with labels for the held-out scores.
            patches: number of calibration (and of held-out) patches.
            tolerance: largest allowed max |probability difference| between ONNX and PyTorch.
            card: write the model card OUT.md.
            threads: onnxruntime threads for the timings (0 = default).

        Returns:
            The files written, the parity figures and the held-out scores.
        """
        from nimbus.export.command import run_export

        outputs = run_export(
            checkpoint, out, name=name, version=str(version), window=window, overlap=overlap, dynamic=dynamic,
            fp16=fp16, int8=int8, calibration=calibration, heldout=heldout, patches=patches, tolerance=tolerance,
            card=card, threads=threads,
        )
        return "\n".join(outputs.lines())

    def evaluate(
        self,
        pred: str,
        ref: str,
        ref_kind: str = "nimbus",
        ignore: Any = None,
        cirrus: str = "cloud",
        out: str | None = None,
        name: str | None = None,
        json: bool = False,
    ) -> str:
        """Compare a class map with a reference: accuracy, Cohen's kappa, per-class IoU/F1/precision/recall.

        The reference is reprojected onto the class map's grid (nearest neighbour, any CRS, pixel
        size or extent), strip by strip; pixels it does not cover, no-data pixels and --ignore
        values are counted but not compared. The confusion matrix has the reference in rows and the
        prediction in columns.

        Args:
            pred: the class map (COG of `nimbus segment`: 0 cloud, 1 ground, 2 snow, 3 water, 255 no data).
            ref: the reference raster (band 1).
            ref_kind: nimbus (same class codes), scl (Sen2Cor scene classification: 2-5 ground,
                6 water, 8-9 cloud, 10 see --cirrus, 11 snow; 0, 1, 7 not compared), or
                cloud-binary, snow-binary, water-binary (a mask: 0 not the class, 1 or 255 the
                class; the class map is binarised to that class vs the rest).
            ignore: raw reference values to leave out, e.g. --ignore 3 or --ignore 2,3 (SCL shadows).
            cirrus: scl: thin cirrus (SCL 10) counts as cloud, ground, or ignore.
            out: folder for <name>_evaluation.json, <name>_difference.tif (COG: reference*10 +
                prediction, 255 not compared) and <name>_evaluation.png; none written without it.
            name: prefix of the output files (default: the class map's file name without extension).
            json: print the report as JSON instead of text.

        Returns:
            The report: pixel counts, overall accuracy, kappa, the per-class table and the confusion matrix.
        """
        from nimbus.evaluate import evaluate

        report = evaluate(pred, ref, ref_kind=ref_kind, ignore=ignore, cirrus=cirrus, out=out, name=name)
        return report.to_json() if json else report.to_text()

    def demo(self, out: str = "nimbus-demo", model: str | None = None, size: int = 1098, threads: int = 0) -> str:
        """Segment a synthetic product with the built-in default model and score it against the truth.

        Makes a synthetic Sentinel-2 L1C product (with auxiliary layers and the generator's true
        class map), writes the class map (COG) and a quicklook PNG, and prints where they are and
        how well the map agrees with the truth. No download, no torch.

        Args:
            out: output folder.
            model: another Nimbus ONNX model to use instead of the default.
            size: product side in 10 m pixels (a multiple of 6).
            threads: CPU threads (0 = all cores).

        Returns:
            The paths written and the accuracy against the generator's truth.
        """
        from nimbus.demo import run_demo

        return run_demo(out, model=model, size=size, threads=threads).report()

    def extract(
        self,
        src: str,
        dst: str,
        cog: bool = False,
        max_gb: float = 8.0,
        max_ratio: float = 200.0,
        scheduler: str | None = None,
        workers: int | None = None,
        retries: int = 2,
    ) -> str:
        """Unpack every zipped product in SRC into DST/<tile>/<product id>/ (safe, atomic, idempotent).

        Archives with absolute or `..` entry paths (zip-slip) or that would expand beyond the limits
        (zip bombs) are refused; corrupt archives are reported and skipped while the others go on.
        A re-run skips finished products; an interrupted run leaves no half-extracted product.

        Args:
            src: a folder of zipped products (or one .zip).
            dst: the store's root folder.
            cog: transcode the JPEG2000 bands to Cloud-Optimized GeoTIFF (ZSTD + predictor).
            max_gb: refuse an archive expanding to more than this many GB.
            max_ratio: refuse an entry (>1 MB) compressed more than this ratio.
            scheduler: run one task per archive on a Dask cluster (address or scheduler file;
                default $DASK_SCHEDULER_ADDRESS when set).
            workers: run on a local Dask cluster of this many worker processes.
            retries: on Dask, retries of an archive whose failure looks transient (I/O).

        Returns:
            The summary: extracted / skipped / failed (the exit status is 1 when any failed).
        """
        from nimbus.errors import ExtractError
        from nimbus.extract import ExtractLimits, extract_all, find_archives

        limits = ExtractLimits(max_total_bytes=int(max_gb * 1024**3), max_ratio=float(max_ratio))
        if scheduler or workers or _dask_env():
            from functools import partial
            from pathlib import Path

            from nimbus.engine.tasks import extract_task

            archives = [str(p.absolute()) for p in find_archives(Path(src))]
            work = partial(extract_task, dst=str(Path(dst).absolute()), cog=cog, limits=limits)
            return _run_items(archives, work, scheduler, workers, retries, "archive", self._debug)
        summary = extract_all(src, dst, cog=cog, limits=limits)
        if summary.failed:
            raise ExtractError(str(summary))
        return str(summary)

    def auxiliary(
        self,
        out: str,
        tile: str | None = None,
        product: str | None = None,
        res: int = 10,
        dem: Any = None,
        treecover: Any = None,
        water: Any = None,
        fill: bool = False,
        overwrite: bool = False,
        fetch: bool = False,
        layers: Any = None,
        mirror: Any = None,
        cache: str | None = None,
    ) -> str:
        """Warp auxiliary rasters (any CRS, one or several each) onto a Sentinel-2 tile grid, or fetch them.

        Writes OUT/<TILE>_<layer>_<res>m.tif (COG) for each layer, on the grid of --product or of
        --tile (computed from the MGRS code). DEM and tree cover are interpolated bilinearly, water by
        nearest neighbour. A layer that does not cover the grid fully is an error saying how much is
        missing, unless --fill. With --fetch the layers come from public login-free sources, reading
        only the windows that cover the tile: altitude from the Copernicus DEM GLO-30 (a missing tile is
        sea, 0 m), treecover from Hansen GFC treecover2000, water from JRC Global Surface Water
        occurrence, landcover from ESA WorldCover; they are cached ($NIMBUS_CACHE or ~/.cache/nimbus)
        so another product of the same tile reads nothing, and tagged with source, version and licence.

        Args:
            out: the auxiliary folder (give it to `nimbus segment --aux` and `nimbus arrays --aux`).
            tile: the tile code, e.g. 32TMS (when no product is given).
            product: a product whose exact grid is used (a path, or a STAC item file or URL).
            res: pixel size in metres: 10, 20 or 60.
            dem: DEM raster(s) (AW3D30, Copernicus DEM...): files, comma-separated, or a folder of .tif.
            treecover: tree canopy cover raster(s) (GFCC, percent).
            water: JRC global surface water raster(s) (occurrence or extent).
            fill: write nodata where the rasters do not cover the grid instead of failing.
            overwrite: rebuild layers whose file already exists (with --fetch: fetch again).
            fetch: fetch the layers from the public sources instead of warping given rasters.
            layers: with --fetch: layers, comma-separated (default altitude,treecover,water; also landcover).
            mirror: with --fetch: LAYER=URL pairs, comma-separated, replacing the public buckets (an
                http(s) URL or a folder laid out like the bucket; default NIMBUS_COPDEM_URL,
                NIMBUS_HANSEN_URL, NIMBUS_JRC_GSW_URL, NIMBUS_WORLDCOVER_URL, else the public buckets).
            cache: with --fetch: the cache folder (default $NIMBUS_CACHE or ~/.cache/nimbus).

        Returns:
            One line per layer: file and coverage (with --fetch: source, and whether it came from the cache).
        """
        from nimbus.errors import AuxiliaryDataError, UsageError

        if fetch:
            if dem or treecover or water:
                raise UsageError("--fetch builds the layers from public sources: leave out --dem/--treecover/--water")
            from nimbus.fetch import fetch_auxiliary, parse_mirrors

            if product is not None:
                target: Any = product
            elif tile is not None:
                from nimbus.grid import tile_grid

                target = tile_grid(tile, int(res))
            else:
                raise UsageError("--fetch needs a grid: give --product PATH or --tile 32TMS")
            done = fetch_auxiliary(out, target, layers=layers, res=int(res), cache=cache, mirrors=parse_mirrors(mirror),
                                   allow_fill=fill, overwrite=overwrite)  # fmt: skip
            return "\n".join(f"{d.path}: {d.layer} from {d.source} ({'cache' if d.cached else 'fetched from ' + d.base})" for d in done)
        if layers is not None or mirror is not None or cache is not None:
            raise UsageError("--layers, --mirror and --cache go with --fetch")
        from nimbus.auxiliary import build_auxiliary

        layers_in = {name: _paths(v) for name, v in (("altitude", dem), ("treecover", treecover), ("water", water)) if v}
        if not layers_in:
            raise AuxiliaryDataError("give at least one of --dem, --treecover, --water (or --fetch to fetch them)")
        reports = build_auxiliary(out, layers_in, tile=tile, product=product, res=res, allow_fill=fill, overwrite=overwrite)
        return "\n".join(f"{r.path}: {r.layer}, {100 * (1 - r.missing_fraction):.2f}% covered" for r in reports)

    def arrays(
        self,
        products: Any,
        out: str,
        res: int = 10,
        aux: str | None = None,
        layers: Any = None,
        strip_rows: int = 512,
        overwrite: bool = False,
        scheduler: str | None = None,
        workers: int | None = None,
        retries: int = 2,
    ) -> str:
        """Write model-ready training arrays per product: OUT/<product id>/bands.npy, aux.npy, meta.json.

        The 13 bands (those the product has) as harmonised DN (uint16, every baseline on one
        scale) plus the auxiliary layers (float32), on the product's grid at RES, written strip by
        strip through memory maps (memory bounded by STRIP_ROWS rows, not by the product).

        Args:
            products: product path(s): a product, comma-separated products, or a folder holding
                products (e.g. the store of `nimbus extract`, searched two levels deep).
            out: the arrays folder.
            res: pixel size in metres: 10, 20 or 60.
            aux: the folder of `nimbus auxiliary` files.
            layers: auxiliary layers to stack (comma-separated); default every layer AUX holds for the tile.
            strip_rows: rows assembled at a time.
            overwrite: rebuild arrays that already exist (otherwise skipped).
            scheduler: run one task per product on a Dask cluster (address or scheduler file;
                default $DASK_SCHEDULER_ADDRESS when set).
            workers: run on a local Dask cluster of this many worker processes.
            retries: on Dask, retries of a product whose failure looks transient (network, I/O).

        Returns:
            One line per product: its arrays folder, written or skipped.
        """
        from functools import partial

        from nimbus.engine.worker import absolute_ref
        from nimbus.engine.tasks import arrays_task

        paths = [absolute_ref(p) for p in _products(products)]
        names = None if layers is None else [x for x in (_paths(layers) if not isinstance(layers, str) else layers.split(",")) if x]
        work = partial(arrays_task, out=absolute_ref(out), res=res, aux_dir=absolute_ref(aux) if aux else None, layers=names,
                       strip_rows=strip_rows, overwrite=overwrite)  # fmt: skip
        return _run_items(paths, work, scheduler, workers, retries, "product", self._debug)

    def labels(
        self,
        target: str,
        exolabs: str | None = None,
        cloudprob: str | None = None,
        water: str | None = None,
        scl: Any = False,
        s2cloudless: bool = False,
        threshold: float = 0.5,
        masked: bool = False,
        out: str | None = None,
        res: int | None = None,
        water_threshold: float | None = None,
        rules: bool = False,
        truth: Any = False,
        scheduler: str | None = None,
        workers: int | None = None,
        retries: int = 2,
    ) -> str:
        """Build the uint8 class map (0 cloud, 1 ground, 2 snow, 3 water, 255 nodata) of one product,
        or of every arrays folder under an arrays root.

        With S2cloudless (--cloudprob rasters 0-100, or --s2cloudless computed from the L1C product):
        start from cloud; ExoLabs no snow or dark region -> ground; water -> water; ExoLabs snow ->
        snow; probability > THRESHOLD -> cloud. Without: start from ground; water; ExoLabs snow;
        ExoLabs cloud -> cloud. --scl maps the L2A scene classification instead; --truth takes a
        truth map in these codes (a synthetic product's). Inputs on another grid are reprojected
        (nearest); inputs that do not overlap are refused.

        Args:
            target: an arrays folder (OUT/<product id> of `nimbus arrays`; labels.tif is written
                inside, aligned with the arrays), an arrays root OUT (every folder in it, one task
                each; with --rules, --scl, --s2cloudless, --truth or a --water mosaic, not with
                per-product rasters) or a product (then give --out and --res).
            exolabs: the ExoLabs classification raster (first band 0 nodata, 2 dark, 3 cloud,
                4 snow; second band 1 no snow, 2 snow).
            cloudprob: an S2cloudless probability raster (0-100).
            water: the JRC water raster (1 = water).
            scl: use the scene classification: the flag alone for the product's own SCL, or an SCL raster path.
            s2cloudless: compute the cloud probability locally from the product (L1C, reflectance).
            threshold: cloud probability (0..1) above which a pixel is cloud.
            masked: ExoLabs nodata and label-input nodata become 255 (ignored in training); without
                it their number is written in the output's metadata (uncovered_pixels).
            out: the output COG (default TARGET/labels.tif for an arrays folder).
            res: grid pixel size for a product target (10, 20 or 60).
            water_threshold: read the water raster as occurrence (%) and call water where >= this.
            rules: label from the bands alone with the spectral rule classifier (Fmask 4.0,
                Sen2Cor, Let-It-Snow, MNDWI; see export/nimbus-rules.md): weak labels for real
                products that have no ExoLabs / S2cloudless / JRC layers.
            truth: labels from a truth map in Nimbus codes: the flag alone for the
                <product id>_truth.tif that `nimbus synthetic` wrote beside the product, or a path.
            scheduler: for an arrays root: one task per folder on a Dask cluster (address or
                scheduler file; default $DASK_SCHEDULER_ADDRESS when set).
            workers: for an arrays root: a local Dask cluster of this many worker processes.
            retries: on Dask, retries of a folder whose failure looks transient (I/O).

        Returns:
            The file written and its class counts.
        """
        from functools import partial
        from pathlib import Path

        from nimbus.engine.tasks import labels_task
        from nimbus.errors import UsageError

        root = Path(target)
        folders = sorted(p for p in root.iterdir() if (p / "meta.json").is_file()) if root.is_dir() and not (root / "meta.json").exists() else []
        if folders and not (root / "manifest.safe").exists() and not root.suffix.upper() == ".SAFE":
            if exolabs or cloudprob or out or (scl and scl is not True) or (truth and truth is not True):
                raise UsageError(f"{target} is an arrays root of {len(folders)} folders: per-product rasters "
                                 "(--exolabs, --cloudprob, an --scl or --truth path, --out) need one arrays folder as TARGET")  # fmt: skip
            work = partial(labels_task, water=str(Path(water).absolute()) if water else None, scl=scl, s2cloudless=s2cloudless,
                           threshold=threshold, masked=masked, water_threshold=water_threshold, rules=rules, truth=truth)  # fmt: skip
            return _run_items([str(p.absolute()) for p in folders], work, scheduler, workers, retries, "arrays folder", self._debug)
        _, line = labels_task(target, out=out, exolabs=exolabs, cloudprob=cloudprob, water=water, scl=scl,
                              s2cloudless=s2cloudless, threshold=threshold, masked=masked, res=res,
                              water_threshold=water_threshold, rules=rules, truth=truth)  # fmt: skip
        return line


def _dask_env() -> bool:
    """Whether $DASK_SCHEDULER_ADDRESS names a cluster for batch commands."""
    import os

    from nimbus.engine.distributed import SCHEDULER_ENV

    return bool(os.environ.get(SCHEDULER_ENV))


def _run_items(items: list[str], work: Any, scheduler: str | None, workers: int | None, retries: int, what: str, debug: bool) -> str:
    """A batch command's items on this process (:func:`nimbus.batch.run_batch`) or on Dask
    (``--scheduler`` / ``--workers`` / ``$DASK_SCHEDULER_ADDRESS``): the same lines and exit status."""
    from nimbus.batch import collect_records, run_batch
    from nimbus.engine.distributed import connect, map_items

    with connect(scheduler, workers) as client:
        if client is None:
            return run_batch(items, work, what=what, debug=debug).result()
        return collect_records(map_items(items, work, client, retries=retries, what=what), len(items), what, debug).result()


def _has_pystac() -> bool:
    """Whether pystac (the [stac] extra) is installed: STAC Items are written beside class maps only then."""
    import importlib.util

    return importlib.util.find_spec("pystac") is not None


def _products(value: Any) -> list[str]:
    """Product references from a CLI value: products, comma-separated, or folders holding products (2 levels).

    One rule for every command: :func:`nimbus.sources.find_products`.
    """
    from nimbus.sources import find_products

    return find_products(value)


def _paths(value: Any) -> list[str]:
    """File paths from a CLI value: a path, a comma-separated string, a list, or a folder of rasters."""
    from pathlib import Path

    items = list(value) if isinstance(value, (list, tuple)) else str(value).split(",")
    out: list[str] = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        p = Path(item)
        if p.is_dir():
            out += sorted(str(f) for f in p.iterdir() if f.suffix.lower() in (".tif", ".tiff", ".vrt", ".jp2", ".img"))
        else:
            out.append(item)
    return out


def _pop_flag(argv: list[str], flag: str) -> bool:
    if flag in argv:
        argv.remove(flag)
        return True
    return False


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    from nimbus.errors import NimbusWarning

    text = str(message) if issubclass(category, NimbusWarning) else f"{category.__name__}: {message}"
    print(f"nimbus: warning: {text}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``nimbus`` command."""
    import traceback
    import warnings

    import fire

    from nimbus.batch import BatchFailedError
    from nimbus.cliargs import configure_fire, preflight
    from nimbus.errors import NimbusError, explain

    args = list(sys.argv[1:] if argv is None else argv)
    debug = _pop_flag(args, "--debug")
    warnings.showwarning = _show_warning
    cli = NimbusCLI(debug=debug)
    try:
        configure_fire()
        args = preflight(cli, args)
        fire.Fire(cli, command=args, name="nimbus")
    except BatchFailedError as exc:  # each failure was reported (with --debug: its traceback) where it happened
        print(f"nimbus: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except NimbusError as exc:
        if debug:
            traceback.print_exception(exc)
        print(f"nimbus: error: {explain(exc)}", file=sys.stderr)
        sys.exit(2 if type(exc).__name__ == "UsageError" else 1)
    except KeyboardInterrupt:
        print("nimbus: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # not raised on purpose: still one line; --debug shows where
        if debug:
            traceback.print_exception(exc)
        hint = "" if debug else " (run with --debug for the traceback)"
        print(f"nimbus: error: {explain(exc)}{hint}", file=sys.stderr)
        sys.exit(1)
    return None


if __name__ == "__main__":
    main()
