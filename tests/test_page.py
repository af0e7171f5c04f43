"""The comparison page: every row on it, nothing fetched from the network, legends readable on white, error
colours apart from class colours, and its behaviour checked in a real headless Chromium."""

import json
import os
import re

import cv2
import numpy as np
import pytest
from browser import Browser, find_browser

from segkit.cli import main
from segkit.data.voc import voc_palette
from segkit.viz import FN_COLOUR, FP_COLOUR, build_comparison, error_panel, render_html
from segkit.viz.panels import legend_entries


def three_images(tmp_path):
    """GT squares; method A exact on image 0 and off on 1 and 2 by growing amounts, B the reverse order."""
    for d in ("img", "gt", "a", "b"):
        (tmp_path / d).mkdir()
    gt = np.zeros((80, 100), np.uint8)
    gt[20:60, 30:70] = 255
    for i in range(3):
        a, b = gt.copy(), gt.copy()
        a[20 : 20 + 6 * i, 30:70] = 0  # A misses 6*i rows: worst on image 2
        b[20 : 20 + 6 * (2 - i), 30:70] = 0  # B misses 6*(2-i) rows: worst on image 0
        b[60:64, 30:70] = 255 * (i == 1)  # and on image 1 adds a strip
        rgb = np.full((80, 100, 3), 60 + 40 * i, np.uint8)
        for d, arr in (("img", rgb), ("gt", gt), ("a", a), ("b", b)):
            cv2.imwrite(str(tmp_path / d / f"im{i}.png"), arr)
    return tmp_path


def render_args(tmp_path, *extra):
    return [
        "render",
        "--task",
        "saliency",
        "--images",
        str(tmp_path / "img"),
        "--gt",
        str(tmp_path / "gt"),
        "--pred",
        f"A={tmp_path / 'a'}",
        "--pred",
        f"B={tmp_path / 'b'}",
        "--output",
        str(tmp_path / "fig.png"),
        "--html",
        str(tmp_path / "page"),
        *extra,
    ]


def test_max_rows_cuts_the_figure_not_the_page(tmp_path, capsys):
    three_images(tmp_path)
    assert main(render_args(tmp_path, "--max-rows", "1")) == 0
    out = capsys.readouterr().out
    assert "(1 of 3 rows)" in out and "(all 3 rows)" in out
    page = (tmp_path / "page" / "index.html").read_text()
    assert page.count("<tr class='row'") == 3
    fig = cv2.imread(str(tmp_path / "fig.png"))
    assert fig.shape[0] < fig.shape[1]  # one row of four panels: wider than tall
    assert main(render_args(tmp_path, "--max-rows", "-1")) == 2
    assert "--max-rows" in capsys.readouterr().err


def test_page_needs_no_network_and_every_image_exists(tmp_path):
    three_images(tmp_path)
    assert main(render_args(tmp_path)) == 0
    page = (tmp_path / "page" / "index.html").read_text()
    assert not re.search(r"(https?:)?//[a-z]", page, re.I)  # no CDN script, font or image
    sources = re.findall(r"src='([^']+)'", page)
    assert sources and all((tmp_path / "page" / s).is_file() for s in sources)
    assert "<script src" not in page and "<link" not in page


def test_every_legend_swatch_shows_on_white():
    """WCAG contrast of each swatch's fill or edge against the white page: at least 1.5 (the yellow frame alone is
    1.2, which is why it has a dark edge)."""

    def luminance(rgb):
        c = [v / 255 for v in rgb]
        c = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    def contrast(rgb):
        return 1.05 / (luminance(rgb) + 0.05)

    from segkit.viz.compare import Comparison, MethodResult, Row

    gt = np.zeros((20, 20), np.uint8)
    gt[5:15, 5:15] = 255
    row = Row("x", np.zeros((20, 20, 3), np.uint8), gt, {"A": MethodResult(gt)})
    entries = legend_entries(Comparison("saliency", ["A"], [row]))
    labels = [e.label for e in entries]
    assert any("boundary band" in label for label in labels) and any("zoomed" in label for label in labels)
    for e in entries:
        best = max(contrast(c) for c in (e.face, e.edge) if c is not None)
        assert best >= 1.5, (e.label, best)


def test_segmentation_errors_stand_apart_from_every_class_colour():
    """Each of the 21 classes predicted over part of its region: in the panel, the false-negative blue and the
    false-positive vermillion are at least 100 (RGB distance) from every other colour shown."""
    gt = np.zeros((42, 84), np.uint8)
    pred = np.zeros_like(gt)
    for c in range(21):
        gt[:, 4 * c : 4 * c + 4] = c
        pred[:, 4 * c : 4 * c + 4] = c
    pred[:20] = np.roll(pred[:20], 2, axis=1)  # shifted: both kinds of error next to every class
    panel = error_panel(pred, gt, "segmentation").reshape(-1, 3).astype(int)
    colours = {tuple(c) for c in panel}
    assert FN_COLOUR in colours and FP_COLOUR in colours
    others = np.array([c for c in colours if c not in (FN_COLOUR, FP_COLOUR)])
    for err in (FN_COLOUR, FP_COLOUR):
        assert np.sqrt(((others - np.array(err)) ** 2).sum(1)).min() >= 100
    # what the panels would show unpaled: VOC's bus is within 55 of the blue, so this test has teeth
    palette = voc_palette()[:21].astype(int)
    assert np.sqrt(((palette - np.array(FN_COLOUR)) ** 2).sum(1)).min() < 60


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    executable = find_browser()
    if executable is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the browser test: install Debian's chromium (.ci/run does it with apt-get)")
        pytest.skip("no Chromium on this machine (apt-get install chromium); CI installs it and runs this test")
    with Browser(executable, tmp_path_factory.mktemp("profile"), width=1400, height=1400) as b:
        yield b


def row_names(browser):
    return browser.evaluate("Array.from(document.querySelectorAll('#rows tr')).map(function(t){return t.dataset.name})")


def test_page_in_chromium(tmp_path, browser):
    three_images(tmp_path)
    assert main(render_args(tmp_path)) == 0
    browser.open((tmp_path / "page" / "index.html").as_uri())
    # rows and cells, images decoded
    assert row_names(browser) == ["im0", "im1", "im2"]
    cells = browser.evaluate(
        "Array.from(document.querySelectorAll('#rows tr')).map(function(t){return t.cells.length})"
    )
    assert cells == [4, 4, 4]  # image | ground truth | A | B
    total = browser.evaluate("document.querySelectorAll('img.layer').length")
    status = "var d=document.getElementById('status').dataset; (+d.loaded + +d.failed == {}) && JSON.stringify(d)"
    assert json.loads(browser.wait_for(status.format(total))) == {"loaded": str(total), "failed": "0"}
    layers = browser.evaluate(
        "Array.from(document.querySelectorAll('img.layer')).map(function(i){return [i.complete, i.naturalWidth]})"
    )
    assert total > 12 and all(done and width == 100 for done, width in layers)
    # sort by B's MAE, worst first: image 0 (B misses 12 rows), then 1 (6 rows + a strip), then 2 (exact)
    comp = build_comparison("saliency", tmp_path / "img", {"A": tmp_path / "a", "B": tmp_path / "b"}, tmp_path / "gt")
    mae_b = {r.name: r.methods["B"].scores["MAE"] for r in comp.rows}
    worst_first = sorted(mae_b, key=lambda n: -mae_b[n])
    browser.evaluate("var s=document.getElementById('sort-key'); s.value='1:MAE'; s.dispatchEvent(new Event('change'))")
    assert row_names(browser) == worst_first
    browser.click("#sort-dir")  # a real mouse click: best first
    assert row_names(browser) == worst_first[::-1]
    # maxF is higher-better: worst first is ascending
    browser.click("#sort-dir")
    browser.evaluate(
        "var s=document.getElementById('sort-key'); s.value='0:maxF'; s.dispatchEvent(new Event('change'))"
    )
    max_f_a = {r.name: r.methods["A"].scores["maxF"] for r in comp.rows}
    assert row_names(browser) == sorted(max_f_a, key=lambda n: (max_f_a[n], n))
    # switches: the error overlay and the zoom boxes disappear and come back
    shown = "getComputedStyle(document.querySelector('{}')).display"
    assert browser.evaluate(shown.format(".layer.err")) != "none"
    browser.click("#show-errors")
    assert browser.evaluate(shown.format(".layer.err")) == "none"
    browser.click("#show-zoom")
    assert browser.evaluate(shown.format(".zoombox")) == "none"
    browser.click("#show-errors")
    browser.click("#show-zoom")
    assert browser.evaluate(shown.format(".layer.err")) != "none"
    # a screenshot: the page as drawn, not blank
    shot = browser.screenshot(tmp_path / "page.png")
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[1] == 1400 and image.std() > 20


def test_segmentation_page_pales_classes_in_chromium(tmp_path, browser):
    from PIL import Image

    for d in ("img", "gt", "p"):
        (tmp_path / d).mkdir()
    gt = np.zeros((40, 40), np.uint8)
    gt[8:32, 8:32] = 6  # bus
    pred = gt.copy()
    pred[8:16] = 0
    for d, arr in (("gt", gt), ("p", pred)):
        im = Image.fromarray(arr, mode="P")
        im.putpalette(voc_palette().ravel().tolist())
        im.save(tmp_path / d / "x.png")
    cv2.imwrite(str(tmp_path / "img" / "x.jpg"), np.zeros((40, 40, 3), np.uint8))
    from segkit.data.voc import VOC_CLASSES

    comp = build_comparison("segmentation", tmp_path / "img", {"p": tmp_path / "p"}, tmp_path / "gt", 21, VOC_CLASSES)
    render_html(comp, tmp_path / "page")
    browser.open((tmp_path / "page" / "index.html").as_uri())
    opacity = "getComputedStyle(document.querySelector('.layer.mask')).opacity"
    assert browser.evaluate(opacity) == "0.5"  # paled under the overlay, as in the figure
    assert browser.evaluate("getComputedStyle(document.querySelector('.layer.truth')).opacity") == "1"
    browser.click("#show-errors")
    assert browser.evaluate(opacity) == "1"
    assert "bus" in browser.evaluate("document.getElementById('legend').textContent")
