"""The renderer's claims, checked: inset placement, layout, error colours, captions, bad inputs."""

import cv2
import numpy as np

from segkit.cli import main
from segkit.metrics import SaliencyMetrics, SegmentationMetrics
from segkit.viz import (
    FN_COLOUR,
    FP_COLOUR,
    build_comparison,
    choose_inset,
    disagreement_map,
    error_panel,
    render_figure,
    render_html,
    row_panels,
)


def square_case(tmp_path, n=2, size=120):
    """GT: a square. Method A: the square. Method B: the square with a notch cut at its top-right corner."""
    for d in ("img", "gt", "a", "b"):
        (tmp_path / d).mkdir(exist_ok=True)
    gt = np.zeros((size, size), np.uint8)
    gt[30:90, 30:90] = 255
    b = gt.copy()
    b[30:45, 70:90] = 0  # the notch: disagreement at the top-right of the boundary
    for i in range(n):
        cv2.imwrite(str(tmp_path / "img" / f"im {i}.png"), np.full((size, size, 3), 90, np.uint8))
        cv2.imwrite(str(tmp_path / "gt" / f"im {i}.png"), gt)
        cv2.imwrite(str(tmp_path / "a" / f"im {i}.png"), gt)
        cv2.imwrite(str(tmp_path / "b" / f"im {i}.png"), b)
    return gt, b


def test_inset_lies_on_the_largest_disagreement(tmp_path):
    square_case(tmp_path)
    comp = build_comparison("saliency", tmp_path / "img", {"A": tmp_path / "a", "B": tmp_path / "b"}, tmp_path / "gt")
    y0, x0, y1, x1 = comp.rows[0].inset
    assert y0 <= 37 <= y1 and x0 <= 80 <= x1  # the notch's centre is inside the inset
    dis = disagreement_map(comp.rows[0], "saliency")
    side = y1 - y0
    best = max(
        dis[y : y + side, x : x + side].sum() for y in range(0, 120 - side + 1, 3) for x in range(0, 120 - side + 1, 3)
    )
    assert dis[y0:y1, x0:x1].sum() >= best  # no other window holds more disagreement


def test_choose_inset_on_a_single_spot():
    dis = np.zeros((100, 200), np.float32)
    dis[70:74, 150:154] = 1
    (y0, x0, y1, x1), total = choose_inset(dis)
    assert total == 16 and y0 <= 70 and y1 >= 74 and x0 <= 150 and x1 >= 154
    assert choose_inset(np.zeros((10, 10), np.float32)) == (None, 0.0)


def test_layout_follows_inputs_and_captions_equal_metrics(tmp_path):
    gt, b = square_case(tmp_path, n=3)
    comp = build_comparison("saliency", tmp_path / "img", {"B": tmp_path / "b", "A": tmp_path / "a"}, tmp_path / "gt")
    assert comp.methods == ["B", "A"] and [r.name for r in comp.rows] == ["im 0", "im 1", "im 2"]
    panels = row_panels(comp.rows[0], comp)
    assert [p.title for p in panels] == ["im 0", "ground truth", "B", "A"]
    m = SaliencyMetrics()
    m.update(b, gt)
    want = m.compute()
    assert comp.rows[0].methods["B"].scores == {"MAE": want.mae, "maxF": want.max_fm}
    assert f"MAE {want.mae:.3f}" in panels[2].caption


def test_error_colours_are_the_legend_colours():
    gt = np.zeros((50, 50), np.uint8)
    gt[10:40, 10:40] = 255
    pred = np.zeros_like(gt)
    pred[10:40, 20:48] = 255  # misses x 10..19 (FN), adds x 40..47 (FP)
    panel = error_panel(pred, gt, "saliency")
    assert tuple(panel[25, 15]) == FN_COLOUR
    assert tuple(panel[25, 45]) == FP_COLOUR
    assert tuple(panel[25, 30]) not in (FN_COLOUR, FP_COLOUR)
    assert tuple(error_panel(pred, None, "saliency")[25, 15]) == (0, 0, 0)  # no ground truth: no error colours


def test_segmentation_captions_and_palette(tmp_path):
    from PIL import Image

    from segkit.data.voc import voc_palette

    for d in ("img", "gt", "p"):
        (tmp_path / d).mkdir()
    gt = np.zeros((64, 64), np.uint8)
    gt[10:50, 10:50] = 15
    gt[9, 10:50] = 255
    pred = gt.copy()
    pred[pred == 255] = 0
    pred[40:50, 10:50] = 12
    for d, arr in (("gt", gt), ("p", pred)):
        im = Image.fromarray(arr, mode="P")
        im.putpalette(voc_palette().ravel().tolist())
        im.save(tmp_path / d / "x.png")
    cv2.imwrite(str(tmp_path / "img" / "x.jpg"), np.zeros((64, 64, 3), np.uint8))
    comp = build_comparison("segmentation", tmp_path / "img", {"p": tmp_path / "p"}, tmp_path / "gt")
    m = SegmentationMetrics(21, trimap_widths_px=())
    m.update(pred, gt)
    assert comp.rows[0].methods["p"].scores == {"IoU": m.compute().miou, "BIoU": m.compute().boundary_iou}
    out = tmp_path / "fig.pdf"
    assert (
        main(
            [
                "render",
                "--task",
                "segmentation",
                "--images",
                str(tmp_path / "img"),
                "--gt",
                str(tmp_path / "gt"),
                "--pred",
                f"p={tmp_path / 'p'}",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert out.read_bytes()[:4] == b"%PDF"


def test_bad_inputs(tmp_path, capsys):
    square_case(tmp_path, n=3)
    (tmp_path / "b" / "im 1.png").unlink()  # method B lacks one image
    cv2.imwrite(str(tmp_path / "a" / "im 2.png"), np.zeros((60, 60), np.uint8))  # another size
    out = tmp_path / "cmp.png"
    assert (
        main(
            [
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
                str(out),
                "--html",
                str(tmp_path / "page"),
                "--sort",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "B lacks im 1" in err and "resized 1 masks" in err
    assert out.stat().st_size > 5000 and (tmp_path / "page" / "index.html").is_file()
    # one method, no ground truth: works, no error panels
    assert (
        main(
            [
                "render",
                "--task",
                "saliency",
                "--images",
                str(tmp_path / "img"),
                "--pred",
                f"only one={tmp_path / 'a'}",
                "--output",
                str(tmp_path / "one.svg"),
            ]
        )
        == 0
    )
    assert (tmp_path / "one.svg").read_text().startswith("<?xml")
    assert (
        main(
            [
                "render",
                "--task",
                "saliency",
                "--images",
                str(tmp_path / "img"),
                "--pred",
                "noequals",
                "--output",
                str(out),
            ]
        )
        == 2
    )


def test_sort_puts_the_biggest_difference_first(tmp_path):
    square_case(tmp_path, n=2)
    b = cv2.imread(str(tmp_path / "b" / "im 1.png"), 0)
    b[60:90, 30:60] = 0  # a second, larger disagreement in image 1
    cv2.imwrite(str(tmp_path / "b" / "im 1.png"), b)
    comp = build_comparison(
        "saliency", tmp_path / "img", {"A": tmp_path / "a", "B": tmp_path / "b"}, tmp_path / "gt", sort=True
    )
    assert [r.name for r in comp.rows] == ["im 1", "im 0"]
    page = render_html(comp, tmp_path / "html dir")
    assert "im 1" in page.read_text()
    assert render_figure(comp, tmp_path / "f.png").is_file()
