"""The labelling tool's server: a small Flask app over one samples folder.

Routes (all JSON unless noted)::

    GET  /                                  the page (static/index.html)
    GET  /static/<file>                     the page's script and style
    GET  /api/info                          the samples folder, the legend's class values, names and
                                            colours (the page hard-codes none), the selection record
    GET  /api/samples                       the manifest entries (id, product, date, window, context,
                                            score, extra.method, status, revision...)
    GET  /api/samples/<id>                  one entry plus which layers exist (context_* when stored)
    GET  /api/samples/<id>/layers/<layer>.png   a layer rendered for display (PNG)
    GET  /api/samples/<id>/label            {"revision", "source", "width", "height", "data": base64 uint8}
    PUT  /api/samples/<id>/label            body {"revision", "data", "width", "height", "status"?}
                                            -> 200 entry | 400 malformed | 409 someone saved first
    GET  /files/<path>                      a file of the samples folder (nothing outside it)

Sample ids are looked up in the manifest before they touch the file system; ``/files`` resolves the
path and refuses anything outside the folder, so path traversal gets 404/403.
"""

from __future__ import annotations

import base64
import io
import os
import sys
import threading
import webbrowser
from pathlib import Path
from typing import Any

import numpy as np

from nimbus.errors import LabelError
from nimbus.legend import DEFAULT_LEGEND, Legend
from nimbus.samples import (
    COLOR_LAYERS,
    LABEL_LAYER,
    LAYERS,
    NODATA,
    RevisionConflictError,
    SampleSet,
)

__all__ = ["classes_info", "create_app", "palette_legend", "render_layer", "serve"]

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 64 * 1024 * 1024


def classes_info(legend: Legend = DEFAULT_LEGEND) -> list[dict[str, Any]]:
    """The class table the page draws with: ``[{value, name, color}]``, the legend's classes then no data.

    The page takes every class colour from here (it hard-codes none), so the labeller shows the
    palette of the maps and quicklooks (:mod:`nimbus.legend`).
    """
    rows = [{"value": int(v), "name": legend.name(v), "color": list(legend.color(v))} for v in legend.values]
    return [*rows, {"value": NODATA, "name": "nodata", "color": None}]


def render_layer(samples: SampleSet, sid: str, layer: str, legend: Legend = DEFAULT_LEGEND) -> bytes:
    """Render a sample layer as a PNG for display.

    Colour layers (the sample's and its context's): reflectance (harmonised DN / 10000) 0..1 mapped
    linearly to 0..255, RGB (the page applies brightness and gamma). Class layers: RGBA in the
    legend's colours, no data transparent. Uncertainty: RGBA heat ramp scaled by the sample's
    maximum, alpha rising with the value.

    Args:
        samples: the samples folder.
        sid: the sample id.
        layer: one of :data:`nimbus.samples.LAYERS` or ``"label"``.
        legend: the class colours.

    Returns:
        PNG bytes.
    """
    from PIL import Image

    data = samples.read_layer(sid, layer)
    if layer in COLOR_LAYERS:
        rgb = np.clip(data.astype(np.float32) / 10000.0 * 255.0 + 0.5, 0, 255).astype(np.uint8)
        img = Image.fromarray(np.moveaxis(rgb, 0, -1), "RGB")
    elif layer == "uncertainty":
        u = np.nan_to_num(data.astype(np.float32), nan=0.0)
        top = float(u.max()) if u.size and u.max() > 0 else 1.0
        v = np.clip(u / top, 0, 1)
        rgba = np.stack([255 * np.sqrt(v), 255 * v**2, 40 * (1 - v), 60 + 195 * v], axis=-1)
        rgba[~np.isfinite(data)] = 0
        img = Image.fromarray(rgba.astype(np.uint8), "RGBA")
    else:
        lut = np.zeros((256, 4), np.uint8)
        for value, color in legend.color_map().items():
            lut[value] = (*color, 255)
        img = Image.fromarray(lut[data.astype(np.uint8)], "RGBA")
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def palette_legend(palette: str = "default") -> Legend:
    """The Nimbus legend in colour scheme ``palette`` (see :data:`nimbus.legend.SCHEMES`).

    Raises:
        LabelError: an unknown scheme (the message lists the known ones).
    """
    if palette == "default":
        return DEFAULT_LEGEND
    try:
        return Legend.scheme(palette)
    except (ValueError, KeyError) as exc:
        raise LabelError(f"--palette {palette!r}: {exc}") from exc


def create_app(samples_dir: str | os.PathLike[str], palette: str = "default") -> Any:
    """Build the Flask app serving ``samples_dir`` (and nothing else).

    Args:
        samples_dir: a folder written by ``nimbus uncertain`` (it must hold ``manifest.json``).
        palette: the legend's colour scheme for classes (``default`` or ``colorblind``).

    Returns:
        The Flask application.
    """
    from flask import Flask, abort, jsonify, request, send_file, send_from_directory
    from werkzeug.exceptions import HTTPException
    from werkzeug.security import safe_join

    samples = SampleSet(samples_dir)
    legend = palette_legend(palette)
    app = Flask("nimbus.labeler", static_folder=str(STATIC), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["SAMPLES"] = samples

    def known(sid: str) -> Any:
        try:
            return samples.get(sid)
        except LabelError:
            abort(404, description=f"no sample named {sid!r} in {samples.root}")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        resp = jsonify(error=exc.description or exc.name, status=exc.code)
        resp.status_code = exc.code or 500
        return resp

    @app.before_request
    def check_host() -> Any:
        # Bound to the loopback interface, only loopback host names are answered: a web page that
        # rebinds its own DNS name to 127.0.0.1 cannot read or write the labels.
        allowed = app.config.get("ALLOWED_HOSTS")
        if allowed and (request.host.rsplit(":", 1)[0].strip("[]").lower() not in allowed):
            abort(403, description=f"host {request.host!r} refused; open the URL nimbus label printed")
        return None

    @app.after_request
    def no_cache(resp: Any) -> Any:
        if request.path.startswith("/api/"):
            resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.get("/")
    def index() -> Any:
        return send_from_directory(STATIC, "index.html")

    @app.get("/api/info")
    def info() -> Any:
        return jsonify(
            root=str(samples.root),
            classes=classes_info(legend),
            palette=palette,
            nodata=NODATA,
            layers=list(LAYERS),
            selection=samples.selection,
        )

    @app.get("/api/samples")
    def list_samples() -> Any:
        return jsonify(samples=[s.to_dict() for s in samples.samples()])

    @app.get("/api/samples/<sid>")
    def sample(sid: str) -> Any:
        s = known(sid)
        layers = [name for name in (*LAYERS, LABEL_LAYER) if samples.layer_path(sid, name).is_file()]
        return jsonify(sample=s.to_dict(), layers=layers)

    @app.get("/api/samples/<sid>/layers/<layer>.png")
    def layer_png(sid: str, layer: str) -> Any:
        known(sid)
        if layer not in LAYERS and layer != LABEL_LAYER:
            abort(404, description=f"unknown layer {layer!r}")
        if not samples.layer_path(sid, layer).is_file():
            abort(404, description=f"sample {sid} has no layer {layer!r}")
        png = render_layer(samples, sid, layer, legend)
        resp = send_file(io.BytesIO(png), mimetype="image/png")
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.get("/api/samples/<sid>/label")
    def get_label(sid: str) -> Any:
        s = known(sid)
        try:
            label, source = samples.read_label(sid)
        except LabelError as exc:
            abort(500, description=str(exc))
        return jsonify(
            revision=s.revision,
            status=s.status,
            source=source,
            width=int(label.shape[1]),
            height=int(label.shape[0]),
            data=base64.b64encode(label.tobytes()).decode("ascii"),
        )

    @app.put("/api/samples/<sid>/label")
    def put_label(sid: str) -> Any:
        s = known(sid)
        try:
            body = request.get_json(silent=True)
        except RecursionError:  # JSON nested too deep: as malformed as any other
            body = None
        if not isinstance(body, dict):
            abort(400, description="the body must be JSON: {revision, width, height, data (base64 uint8)}")
        try:
            revision = int(body["revision"])
            width, height = int(body["width"]), int(body["height"])
            raw = base64.b64decode(str(body["data"]), validate=True)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # OverflowError: int(Infinity)
            abort(400, description=f"malformed label request for sample {sid}: {exc}")
        if (height, width) != s.shape:
            abort(400, description=f"label shape ({height}, {width}) does not match sample {sid}'s {s.shape}")
        if len(raw) != width * height:
            abort(400, description=f"label of sample {sid} has {len(raw)} bytes, expected {width * height}")
        label = np.frombuffer(raw, np.uint8).reshape(height, width)
        status = body.get("status")
        try:
            saved = samples.save_label(sid, label, revision, status=status)
        except RevisionConflictError as exc:
            resp = jsonify(error=str(exc), status=409, revision=samples.get(sid).revision)
            resp.status_code = 409
            return resp
        except LabelError as exc:
            abort(400, description=str(exc))
        return jsonify(sample=saved.to_dict())

    @app.get("/files/<path:subpath>")
    def files(subpath: str) -> Any:
        joined = safe_join(str(samples.root), subpath)
        if joined is None:
            abort(403, description="path outside the samples folder refused")
        try:
            path = Path(joined).resolve()
        except (OSError, ValueError):  # ValueError: a NUL byte in the path
            abort(404, description=f"no file {subpath!r} in the samples folder")
        if samples.root not in path.parents or not path.is_file() or path.name.startswith("."):
            abort(404, description=f"no file {subpath!r} in the samples folder")
        return send_file(path)

    return app


def serve(
    samples_dir: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8765,
    open_browser: bool = True,
    palette: str = "default",
) -> None:
    """Run the labelling tool until Ctrl-C.

    Args:
        samples_dir: the samples folder.
        host: address to bind (127.0.0.1 keeps it local; binding elsewhere exposes the folder).
        port: TCP port (0 picks a free one).
        open_browser: open the page in the default browser.
        palette: the legend's colour scheme for classes (``default`` or ``colorblind``).
    """
    from werkzeug.serving import make_server

    app = create_app(samples_dir, palette=palette)
    if host in ("127.0.0.1", "localhost", "::1"):
        app.config["ALLOWED_HOSTS"] = {"127.0.0.1", "localhost", "::1"}
    server = make_server(host, port, app, threaded=True)
    url = f"http://{host if host not in ('0.0.0.0', '::') else '127.0.0.1'}:{server.port}/"
    n = len(app.config["SAMPLES"])
    print(f"nimbus label: {n} samples in {app.config['SAMPLES'].root}", flush=True)
    print(f"nimbus label: open {url}  (Ctrl-C to stop)", flush=True)
    if open_browser:
        threading.Timer(0.5, lambda: webbrowser.open(url)).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("nimbus label: stopped", file=sys.stderr)
    finally:
        server.server_close()
