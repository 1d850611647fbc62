"""The labelling tool end to end in headless Chromium (Playwright): paint, fill, undo, save, reload;
the dimmed context, the sample list (sorted by score, short names, methods apart), the footer's
revision, the palette and the layout at 1024x700."""

from __future__ import annotations

import io
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from _samples_data import CRS, H, PRODUCT, RECT_A, RECT_B, W, make_samples

from nimbus.legend import DEFAULT_LEGEND

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium not installed (apt-get install chromium; .ci/run installs it)"
)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


@pytest.fixture()
def serve(tmp_path):
    """Start the tool on a samples folder made by ``make_samples(**kwargs)``; returns (url, SampleSet)."""
    from werkzeug.serving import make_server

    from nimbus.labeler.server import create_app

    running = []

    def start(**kwargs):
        ss = make_samples(tmp_path / f"samples{len(running)}", **kwargs)
        srv = make_server("127.0.0.1", 0, create_app(ss.root), threaded=True)
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        running.append((srv, thread))
        return f"http://127.0.0.1:{srv.port}", ss

    yield start
    for srv, thread in running:
        srv.shutdown()
        thread.join(5)


@pytest.fixture()
def server(serve):
    return serve()


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


# ---------------------------------------------------------------------------------------------------
# context, list, footer, palette, layout

OTHER = "S2A_MSIL1C_20230714T102559_N0509_R108_T32TMS_20230714T130000"


def pixel(page, x: float, y: float) -> np.ndarray:
    """The RGB the screen shows at client position (x, y)."""
    from PIL import Image

    shot = Image.open(io.BytesIO(page.screenshot()))
    return np.asarray(shot.convert("RGB"))[int(y), int(x)].astype(int)


def rect(page, selector: str) -> dict:
    return page.evaluate(f"(() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect(); "
                         "return {x: r.x, y: r.y, w: r.width, h: r.height}; })()")


def listed(page) -> list[dict]:
    return page.evaluate("""[...document.querySelectorAll('#samples li.sample')].map((li) => ({
        id: li.dataset.id, method: li.dataset.method, name: li.querySelector('.name').textContent,
        score: li.querySelector('.score').textContent, title: li.title}))""")


def test_context_is_shown_dimmed_around_the_sample(serve, page) -> None:
    url, ss = serve(n=1, context=True)
    page.goto(f"{url}/?autosave=0")
    wait_loaded(page)
    page.uncheck("#show-label")  # compare the images themselves, without the label's tint
    frame, ctx, vp = rect(page, "#frame"), rect(page, "#ctxcanvas"), rect(page, "#viewport")
    # the editable sample is shown large (at least half of the viewport's shorter side) ...
    assert frame["w"] >= 0.5 * min(vp["w"], vp["h"]), (frame, vp)
    # ... inside a context three times its size, which shows around it
    assert ctx["w"] == pytest.approx(3 * (frame["w"] - 2), rel=0.02) and ctx["h"] == pytest.approx(3 * (frame["h"] - 2), rel=0.02)
    assert ctx["x"] < frame["x"] and ctx["y"] < frame["y"]
    assert ctx["x"] + ctx["w"] > frame["x"] + frame["w"] and ctx["y"] + ctx["h"] > frame["y"] + frame["h"]
    # dimmed: the context's marker (DN 9000, left of the sample) shows darker than the sample's
    # rectangle A (DN 6000), yet brighter than the context's background (DN 800): visible, dimmed
    mark = pixel(page, *at(page, -15, 20))
    inside = pixel(page, *at(page, 65, 20))
    background = pixel(page, *at(page, -40, H + 10))
    assert mark.mean() < 0.6 * inside.mean(), (mark, inside)
    assert mark.mean() > background.mean() + 25, (mark, background)
    # the sample's own background is not dimmed: brighter than the same DN in the context
    assert pixel(page, *at(page, 20, 50)).mean() > background.mean() + 15
    page.keyboard.press("c")  # context off
    assert page.evaluate("getComputedStyle(document.querySelector('#ctxcanvas')).display") == "none"


def test_list_sorted_by_score_with_methods_kept_apart(serve, page) -> None:
    # one global sort would interleave the methods: entropy 0.9, std 0.8, entropy 0.5, std 0.2
    url, ss = serve(n=4, scores=[0.8, 0.9, 0.2, 0.5], methods=["std", "entropy", "std", "entropy"])
    page.goto(f"{url}/?autosave=0")
    wait_loaded(page)
    rows = listed(page)
    assert [r["method"] for r in rows] == ["entropy", "entropy", "std", "std"]
    assert [r["score"] for r in rows] == ["entropy 0.900", "entropy 0.500", "std 0.800", "std 0.200"]
    heads = page.evaluate("[...document.querySelectorAll('#samples li.group')].map((li) => li.textContent)")
    assert heads == ["entropy scores", "std scores"]
    assert page.evaluate("window.nimbus.sample.id") == rows[0]["id"]  # the highest score of the first method opens
    page.keyboard.press(".")  # next follows the list as shown
    page.wait_for_function(f"window.nimbus.loaded && window.nimbus.sample.id === {rows[1]['id']!r}", timeout=10000)
    page.select_option("#sort", "score-asc")
    assert [r["score"] for r in listed(page)] == ["entropy 0.500", "entropy 0.900", "std 0.200", "std 0.800"]
    page.select_option("#sort", "manifest")
    assert [r["id"] for r in listed(page)] == [s.id for s in ss.samples()]
    assert [r["score"] for r in listed(page)][:2] == ["std 0.800", "entropy 0.900"]  # each score names its method
    page.reload()  # the order chosen is kept
    wait_loaded(page)
    assert page.input_value("#sort") == "manifest"


def test_one_method_sorts_by_score_without_groups(serve, page) -> None:
    url, ss = serve(n=3, scores=[0.1, 0.3, 0.2])  # no per-sample method: the selection's (std)
    page.goto(f"{url}/?autosave=0")
    wait_loaded(page)
    assert [r["score"] for r in listed(page)] == ["std 0.300", "std 0.200", "std 0.100"]
    assert page.evaluate("document.querySelectorAll('#samples li.group').length") == 0


def test_names_show_what_distinguishes_them(serve, page) -> None:
    url, ss = serve(n=4, products=[PRODUCT, PRODUCT, OTHER, OTHER])
    page.goto(f"{url}/?autosave=0")
    wait_loaded(page)
    rows = listed(page)
    names = [r["name"] for r in rows]
    assert len(set(names)) == 4 and all(len(n) <= 32 for n in names), names
    for r in rows:
        s = ss.get(r["id"])
        assert f"r{s.window[1]} c{s.window[0]}" in r["name"]  # the window
        assert ("20230704" in r["name"]) == (s.product_id == PRODUCT)  # the product's distinguishing part
        assert "MSIL1C" not in r["name"] and "N0509" not in r["name"] and r["id"] in r["title"]
    assert "MSIL1C" in page.inner_text("#list-prefix")  # what they share is said once
    visible = page.evaluate("(() => { const n = document.querySelector('#samples li.sample .name'); "
                            "return n.scrollWidth <= n.clientWidth; })()")
    assert visible, "the shortened name is still cut in the sidebar"


def test_names_of_one_product_are_their_windows(server, page) -> None:
    url, ss = server
    page.goto(f"{url}/?autosave=0")
    wait_loaded(page)
    assert sorted(r["name"] for r in listed(page)) == ["r2000 c1000", "r2000 c1192"]


def test_footer_shows_the_revision_after_each_save(server, page) -> None:
    url, ss = server
    page.goto(f"{url}/?autosave=0")
    wait_loaded(page)
    assert page.inner_text("#revision") == "revision 0"
    for rev in (1, 2):
        page.keyboard.press(str(rev))
        page.mouse.click(*at(page, 10 + 10 * rev, 10))
        page.click("#save")
        page.wait_for_function(f"document.querySelector('#save-state').textContent === 'saved (revision {rev})'", timeout=10000)
        assert page.inner_text("#revision") == f"revision {rev}"
        assert "label from hand" in page.inner_text("#sample-info")
        assert ss.get(ss.samples()[0].id).revision == rev


def test_class_colours_are_the_legend(server, page) -> None:
    url, ss = server
    page.goto(f"{url}/?autosave=0")
    wait_loaded(page)
    swatches = page.evaluate("""[...document.querySelectorAll('.classbtn')].map((b) => [Number(b.dataset.value),
        getComputedStyle(b.querySelector('.swatch')).backgroundColor])""")
    for value, css in swatches:
        if value in DEFAULT_LEGEND.values:
            assert css == "rgb({}, {}, {})".format(*DEFAULT_LEGEND.color(value))
    assert sorted(v for v, _ in swatches) == [*DEFAULT_LEGEND.values, 255]
    # the label drawn on the page: class 1 (ground) in the legend's colour
    drawn = page.evaluate("Array.from(document.querySelector('#labelcanvas').getContext('2d').getImageData(10, 10, 1, 1).data)")
    assert tuple(drawn[:3]) == DEFAULT_LEGEND.color(1)


def test_layout_at_1024x700(serve, page) -> None:
    url, ss = serve(n=3, context=True, methods=["std", "entropy", "mutual_information"])
    page.set_viewport_size({"width": 1024, "height": 700})
    page.goto(f"{url}/?autosave=0")
    wait_loaded(page)
    toolbar, viewport, footer = rect(page, "#toolbar"), rect(page, "#viewport"), rect(page, "#statusbar")
    assert toolbar["h"] < 0.2 * 700, toolbar
    assert viewport["h"] > 0.6 * 700 and footer["h"] < 40, (viewport, footer)
    assert page.evaluate("document.documentElement.scrollHeight <= window.innerHeight + 1")  # nothing below the fold
    fits = page.evaluate("""[...document.querySelectorAll('#toolbar > .group')].every((g) => {
        const r = g.getBoundingClientRect(); return r.right <= window.innerWidth + 1; })""")
    assert fits, "a toolbar group runs off the right edge"
    assert page.is_visible("#save") and page.is_visible("#revision")
    frame = rect(page, "#frame")
    assert frame["w"] >= 0.5 * min(viewport["w"], viewport["h"])  # the sample at a size one can judge
