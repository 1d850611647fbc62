"""The labelling tool end to end in headless Chromium (Playwright): paint, fill, undo, save, reload."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from _samples_data import CRS, RECT_A, RECT_B, W, make_samples

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium not installed (apt-get install chromium; .ci/run installs it)"
)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


@pytest.fixture()
def server(tmp_path):
    from werkzeug.serving import make_server

    from nimbus.labeler.server import create_app

    ss = make_samples(tmp_path / "samples")
    srv = make_server("127.0.0.1", 0, create_app(ss.root), threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.port}", ss
    srv.shutdown()
    thread.join(5)


@pytest.fixture()
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        pg = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.errors = errors
        yield pg
        browser.close()
        assert not errors, f"JavaScript errors: {errors}"


def wait_loaded(page) -> None:
    page.wait_for_function("window.nimbus && window.nimbus.loaded === true", timeout=20000)


def at(page, x: int, y: int) -> tuple[float, float]:
    p = page.evaluate(f"window.nimbus.toClient({x}, {y})")
    return p["x"], p["y"]


def label_in_page(page) -> np.ndarray:
    data = page.evaluate("Array.from(window.nimbus.label)")
    h, w = page.evaluate("[window.nimbus.h, window.nimbus.w]")
    return np.array(data, np.uint8).reshape(h, w)


def test_paint_fill_undo_save_reload(server, page) -> None:
    url, ss = server
    sid = ss.samples()[0].id
    page.goto(f"{url}/?autosave=0")
    wait_loaded(page)
    assert page.evaluate("window.nimbus.sample.id") == sid

    # brush stroke of class 0 (cloud), 1 pixel wide, along row 5 from x=5 to x=20
    page.keyboard.press("0")
    page.keyboard.press("b")
    page.fill("#brush-size", "1")
    page.mouse.move(*at(page, 5, 5))
    page.mouse.down()
    page.mouse.move(*at(page, 20, 5), steps=8)
    page.mouse.up()
    # flood fill rectangle A with class 3 (water), rectangle B with class 2 (snow), then undo B
    page.keyboard.press("3")
    page.keyboard.press("f")
    page.mouse.click(*at(page, 60, 20))
    page.keyboard.press("2")
    page.mouse.click(*at(page, 60, 50))
    lab = label_in_page(page)
    assert (lab[RECT_B] == 2).all()
    page.keyboard.press("Control+z")
    lab = label_in_page(page)
    assert (lab[RECT_B] == 1).all() and (lab[RECT_A] == 3).all() and (lab[5, 5:21] == 0).all()

    page.click("#save")
    page.wait_for_function("document.querySelector('#save-state').textContent.startsWith('saved')", timeout=10000)
    page.reload()
    wait_loaded(page)
    assert page.evaluate("window.nimbus.sample.id") == sid  # the reload reopens the same sample
    after = label_in_page(page)
    assert (after == lab).all()

    with rasterio.open(ss.layer_path(sid, "label")) as src:
        disk = src.read(1)
        assert src.crs.to_string() == CRS and src.transform == rasterio.open(ss.layer_path(sid, "truecolor")).transform
    expected = np.ones_like(disk)
    expected[:, :3] = 255  # the automatic label's no data stays
    expected[RECT_A] = 3
    expected[5, 5:21] = 0
    assert (disk == expected).all(), np.argwhere(disk != expected)[:10]
    s = ss.get(sid)
    assert s.status == "done" and s.revision == 1
    assert "1 of 2 done" in page.inner_text("#progress")


def test_unsaved_edits_survive_reload_and_conflicts_are_refused(server, page) -> None:
    url, ss = server
    sid = ss.samples()[1].id
    page.goto(f"{url}/?autosave=0#sample={sid}")
    wait_loaded(page)
    assert page.evaluate("window.nimbus.sample.id") == sid
    page.keyboard.press("3")
    page.fill("#brush-size", "3")
    page.mouse.click(*at(page, 30, 30))
    assert label_in_page(page)[30, 29:32].tolist() == [3, 3, 3]
    page.reload()  # no save: the edit comes back from the browser's backup
    wait_loaded(page)
    assert label_in_page(page)[30, 29:32].tolist() == [3, 3, 3]
    assert "restored unsaved edits" in page.inner_text("#message")

    # another tab saves first; this tab's save is refused with a message and the disk keeps the other save
    other = np.full(ss.get(sid).shape, 2, np.uint8)
    ss.save_label(sid, other, base_revision=0)
    page.click("#save")
    page.wait_for_function("document.querySelector('#message').textContent.includes('revision 1')", timeout=10000)
    assert (ss.hand_label(sid) == 2).all() and ss.get(sid).revision == 1


def test_polygon_relabel_and_autosave(server, page) -> None:
    url, ss = server
    sid = ss.samples()[0].id
    page.goto(f"{url}/?autosave=200")
    wait_loaded(page)
    # polygon around the left part of the sample, then relabel ground (1) -> snow (2) inside it
    page.keyboard.press("p")
    for x, y in [(10, 10), (40, 10), (40, 40)]:
        page.mouse.click(*at(page, x, y))
    page.mouse.click(*at(page, 10, 40))
    page.keyboard.press("Enter")
    page.select_option("#relabel-from", "1")
    page.select_option("#relabel-to", "2")
    page.keyboard.press("r")
    lab = label_in_page(page)
    assert (lab[15:35, 15:35] == 2).all() and (lab[50:, 60:] == 1).all() and lab[5, 5] == 1
    # lasso (a freehand drag) around part of rectangle B, then fill the selection with class 0
    page.keyboard.press("l")
    page.keyboard.press("0")
    page.mouse.move(*at(page, 55, 45))
    page.mouse.down()
    for x, y in [(70, 45), (70, 55), (55, 55), (55, 46)]:
        page.mouse.move(*at(page, x, y), steps=4)
    page.mouse.up()
    page.keyboard.press("g")
    lab = label_in_page(page)
    assert (lab[47:54, 57:69] == 0).all() and lab[44, 60] == 1 and lab[50, 75] == 1
    page.wait_for_function("document.querySelector('#save-state').textContent.startsWith('saved')", timeout=10000)
    assert (ss.hand_label(sid)[15:35, 15:35] == 2).all() and (ss.hand_label(sid)[47:54, 57:69] == 0).all()
    assert ss.get(sid).status == "todo"  # autosave keeps the status; only "save & done" marks it done
    assert lab.shape[1] == W
