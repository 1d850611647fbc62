"""nimbus.labeler.server through Flask's test client: listing, layers, saving, refusals."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from _samples_data import H, W, make_samples
from PIL import Image

from nimbus.labeler.server import create_app


@pytest.fixture()
def client(tmp_path):
    make_samples(tmp_path / "samples")
    (tmp_path / "secret.txt").write_text("TOPSECRET")
    app = create_app(tmp_path / "samples")
    app.config["TESTING"] = True
    return app.test_client()


def put(client, sid, label, revision, status=None, shape=None):
    h, w = shape or label.shape
    body = {"revision": revision, "width": w, "height": h, "data": base64.b64encode(label.tobytes()).decode()}
    if status:
        body["status"] = status
    return client.put(f"/api/samples/{sid}/label", json=body)


def first_id(client) -> str:
    return client.get("/api/samples").get_json()["samples"][0]["id"]


def test_list_and_layers(client) -> None:
    samples = client.get("/api/samples").get_json()["samples"]
    assert len(samples) == 2 and samples[0]["status"] == "todo" and samples[0]["window"] == [1000, 2000, W, H]
    sid = samples[0]["id"]
    meta = client.get(f"/api/samples/{sid}").get_json()
    assert set(meta["layers"]) == {"truecolor", "falsecolor", "auto_label", "prediction", "uncertainty"}
    for layer in meta["layers"]:
        resp = client.get(f"/api/samples/{sid}/layers/{layer}.png")
        assert resp.status_code == 200 and resp.mimetype == "image/png"
        img = Image.open(io.BytesIO(resp.data))
        assert img.size == (W, H)
    rgb = np.asarray(Image.open(io.BytesIO(client.get(f"/api/samples/{sid}/layers/truecolor.png").data)))
    assert rgb[20, 60, 0] == round(6000 / 10000 * 255) and rgb[0, 0, 0] == round(800 / 10000 * 255)
    auto = np.asarray(Image.open(io.BytesIO(client.get(f"/api/samples/{sid}/layers/auto_label.png").data)))
    assert auto[0, 0, 3] == 0 and auto[10, 10, 3] == 255  # no data transparent
    assert client.get("/").status_code == 200 and b"app.js" in client.get("/").data
    assert client.get("/static/app.js").status_code == 200


def test_label_get_put_and_conflict(client) -> None:
    sid = first_id(client)
    got = client.get(f"/api/samples/{sid}/label").get_json()
    assert got["revision"] == 0 and got["source"] == "auto" and (got["width"], got["height"]) == (W, H)
    label = np.frombuffer(base64.b64decode(got["data"]), np.uint8).reshape(H, W).copy()
    label[5, 5:20] = 0
    resp = put(client, sid, label, 0, status="done")
    assert resp.status_code == 200 and resp.get_json()["sample"]["revision"] == 1
    assert resp.get_json()["sample"]["status"] == "done"
    # a second tab that loaded revision 0 is refused, with a message, and nothing changes on disk
    stale = np.full((H, W), 3, np.uint8)
    resp = put(client, sid, stale, 0)
    assert resp.status_code == 409 and "revision 1" in resp.get_json()["error"]
    got = client.get(f"/api/samples/{sid}/label").get_json()
    assert got["revision"] == 1 and got["source"] == "hand"
    assert (np.frombuffer(base64.b64decode(got["data"]), np.uint8).reshape(H, W) == label).all()
    # the later save wins when it saw the earlier one
    assert put(client, sid, stale, 1).status_code == 200


def test_malformed_labels_refused(client) -> None:
    sid = first_id(client)
    bad_values = np.full((H, W), 7, np.uint8)
    resp = put(client, sid, bad_values, 0)
    assert resp.status_code == 400 and "unknown class values [7]" in resp.get_json()["error"]
    resp = put(client, sid, np.zeros((H, W - 1), np.uint8), 0)
    assert resp.status_code == 400 and "shape" in resp.get_json()["error"]
    resp = put(client, sid, np.zeros((H, W - 1), np.uint8), 0, shape=(H, W))
    assert resp.status_code == 400 and "bytes" in resp.get_json()["error"]
    resp = client.put(f"/api/samples/{sid}/label", json={"revision": 0, "width": W, "height": H, "data": "@@notb64"})
    assert resp.status_code == 400
    resp = client.put(f"/api/samples/{sid}/label", data="not json", content_type="text/plain")
    assert resp.status_code == 400
    assert client.get(f"/api/samples/{sid}/label").get_json()["revision"] == 0


@pytest.mark.parametrize(
    "url",
    [
        "/files/../secret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/..%2Fsecret.txt",
        "/files//etc/passwd",
        "/files/.manifest.lock",
        "/api/samples/..%2F..%2Fsecret/label",
        "/api/samples/../layers/truecolor.png",
        "/api/samples/nonexistent/layers/truecolor.png",
        "/static/../server.py",
        "/static/%2e%2e/server.py",
    ],
)
def test_path_traversal_refused(client, url) -> None:
    resp = client.get(url, follow_redirects=True)  # werkzeug redirects '//' to '/', then refuses
    assert resp.status_code in (403, 404), (url, resp.status_code)
    assert b"TOPSECRET" not in resp.data and b"create_app" not in resp.data


def test_files_serves_only_the_folder(client) -> None:
    sid = first_id(client)
    resp = client.get(f"/files/{sid}/truecolor.tif")
    assert resp.status_code == 200 and resp.data[:2] in (b"II", b"MM")
    assert client.get("/files/manifest.json").get_json()["format"] == "nimbus-samples"


def test_cli_label_binds_localhost_and_prints_its_url(tmp_path) -> None:
    import json
    import subprocess
    import sys
    import urllib.request

    make_samples(tmp_path / "samples")
    proc = subprocess.Popen([sys.executable, "-m", "nimbus", "label", str(tmp_path / "samples"), "--port", "0", "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for _ in range(5):
            line = proc.stdout.readline()
            if "http://" in line:
                url = line.split("open ", 1)[1].split()[0]
                break
        assert url and url.startswith("http://127.0.0.1:"), url
        with urllib.request.urlopen(url + "api/samples", timeout=10) as resp:
            assert len(json.load(resp)["samples"]) == 2
    finally:
        proc.terminate()
        proc.wait(10)


def test_foreign_host_names_refused_on_loopback(tmp_path) -> None:
    make_samples(tmp_path / "samples")
    app = create_app(tmp_path / "samples")
    app.config["ALLOWED_HOSTS"] = {"127.0.0.1", "localhost", "::1"}  # as `nimbus label` sets it on 127.0.0.1
    client = app.test_client()
    assert client.get("/api/samples", headers={"Host": "127.0.0.1:8765"}).status_code == 200
    resp = client.get("/api/samples", headers={"Host": "evil.example:8765"})
    assert resp.status_code == 403 and "refused" in resp.get_json()["error"]


def test_info_sends_the_legend_and_context_layers_render(tmp_path) -> None:
    from nimbus.legend import DEFAULT_LEGEND

    ss = make_samples(tmp_path / "ctx", n=1, context=True, methods=["entropy"])
    client = create_app(ss.root).test_client()
    classes = client.get("/api/info").get_json()["classes"]
    assert [c["value"] for c in classes] == [*DEFAULT_LEGEND.values, 255]
    for c in classes[:-1]:
        assert c["name"] == DEFAULT_LEGEND.name(c["value"]) and tuple(c["color"]) == DEFAULT_LEGEND.color(c["value"])
    assert classes[-1]["name"] == "nodata"
    sid = ss.samples()[0].id
    meta = client.get(f"/api/samples/{sid}").get_json()
    assert {"context_truecolor", "context_falsecolor"} <= set(meta["layers"])
    assert meta["sample"]["context"] == [904, 1936, 3 * W, 3 * H] and meta["sample"]["extra"]["method"] == "entropy"
    img = Image.open(io.BytesIO(client.get(f"/api/samples/{sid}/layers/context_truecolor.png").data))
    assert img.size == (3 * W, 3 * H)
    auto = np.asarray(Image.open(io.BytesIO(client.get(f"/api/samples/{sid}/layers/auto_label.png").data)))
    assert tuple(auto[10, 10, :3]) == DEFAULT_LEGEND.color(1)  # overlays in the legend's colours
    js = (Path(__file__).resolve().parents[1] / "nimbus" / "labeler" / "static" / "app.js").read_text()
    for value in DEFAULT_LEGEND.values:  # no class colour hard-coded in the page
        r, g, b = DEFAULT_LEGEND.color(value)
        assert f"{r}, {g}, {b}" not in js and f"{r},{g},{b}" not in js


def test_colorblind_palette(tmp_path) -> None:
    from nimbus.errors import LabelError
    from nimbus.legend import Legend

    make_samples(tmp_path / "s", n=1)
    client = create_app(tmp_path / "s", palette="colorblind").test_client()
    info = client.get("/api/info").get_json()
    cb = Legend.scheme("colorblind")
    assert info["palette"] == "colorblind"
    assert [tuple(c["color"]) for c in info["classes"][:-1]] == [cb.color(v) for v in cb.values]
    sid = first_id(client)
    auto = np.asarray(Image.open(io.BytesIO(client.get(f"/api/samples/{sid}/layers/auto_label.png").data)))
    assert tuple(auto[10, 10, :3]) == cb.color(1)
    with pytest.raises(LabelError, match="palette"):
        create_app(tmp_path / "s", palette="sepia")
