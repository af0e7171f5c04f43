"""The comparison as a page to browse in any browser, from the file system, with no server and no network.

One table row per image: image | ground truth | each method. A method's panel is a stack of layers (its mask, the
ground truth's boundary band, its errors) that check boxes switch on and off; the zoomed inset is the same stack,
enlarged, so it follows the switches. Rows sort by any per-panel score or by how much the methods disagree, worst
first or best first. Everything the page needs is in ``index.html`` and the PNG/JPEG files under ``img/``.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from segkit.conventions import lower_is_better
from segkit.data.io import write_bytes, write_image
from segkit.errors import SegkitError
from segkit.tasks import get_task
from segkit.viz.compare import Comparison, Row
from segkit.viz.panels import (
    BAND_SHADE,
    CLASS_PALE,
    FN_COLOUR,
    FP_COLOUR,
    INSET_COLOUR,
    gt_band,
    legend_entries,
    mask_rgb,
)

PANEL_PX = 240  # panel width on the page (CSS pixels)
ZOOM_FRACTION = 0.42  # the zoom box's side as a fraction of the panel's width
IMAGE_DIR = "img"


@dataclass(frozen=True)
class SortKey:
    value: str  # "order", "dis" or "<method index>:<score>"
    label: str
    lower_better: bool  # for "worst first": True sorts descending


def sort_keys(comp: Comparison) -> list[SortKey]:
    """What the page's sort control offers: file order, disagreement, and every method's every score."""
    dis_label = "disagreement between methods" if len(comp.methods) > 1 else "boundary errors"
    keys = [SortKey("order", "file order", False), SortKey("dis", dis_label, False)]
    if comp.order and comp.order != "disagreement":
        keys.insert(0, SortKey("given", f"as rendered: {comp.order}", False))
    scores = _score_names(comp)
    for j, method in enumerate(comp.methods):
        keys += [SortKey(f"{j}:{s}", f"{method}: {s}", lower_is_better(s)) for s in scores]
    return keys


def _score_names(comp: Comparison) -> list[str]:
    names: list[str] = []
    for row in comp.rows:
        for result in row.methods.values():
            names += [k for k in result.scores if k not in names]
    return names


def render_html(comp: Comparison, folder: Path | str) -> Path:
    """Write ``folder/index.html`` and its images for every row of ``comp``; returns the page's path."""
    if not comp.rows:
        raise SegkitError("no image could be shown: every row lacks a method's mask (see the skipped list)")
    folder = Path(folder)
    _make_folder(folder / IMAGE_DIR)
    body = [_controls(comp), _legend(comp), _notes(comp), "<table id='comparison'>", _header(comp), "<tbody id='rows'>"]
    file_rank = {name: k for k, name in enumerate(sorted(r.name for r in comp.rows))}  # list_images' order
    body += [_row_html(i, row, comp, folder, file_rank) for i, row in enumerate(comp.rows)]
    body += ["</tbody></table>", f"<script>{_SCRIPT}</script>"]
    page = folder / "index.html"
    head = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>segkit comparison ({len(comp.rows)} images)</title><style>{_style()}</style></head>"
    )
    kind = "labels" if get_task(comp.task).labels else "maps"  # class ids are paled under the error overlay
    body_html = f"<body class='errors band zoom {kind}'>" + "\n".join(body) + "</body></html>"
    write_bytes(page, (head + body_html).encode("utf-8"))
    return page


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SegkitError(f"cannot create '{folder}' for the page: {err.strerror or err}") from None


def _write_image(path: Path, rgb_or_rgba: np.ndarray) -> str:
    """Write one layer (atomically; a failed write names the file); returns its address relative to the page."""
    array = rgb_or_rgba[..., [2, 1, 0, 3]] if rgb_or_rgba.shape[-1] == 4 else rgb_or_rgba[..., ::-1]
    params = (cv2.IMWRITE_JPEG_QUALITY, 92) if path.suffix == ".jpg" else ()
    write_image(path, np.ascontiguousarray(array), params)
    return f"{IMAGE_DIR}/{path.name}"


def _band_layer(gt: np.ndarray, task: str) -> np.ndarray:
    """White at ``BAND_SHADE`` opacity over the band: composited, it lightens exactly as the figure does."""
    band = gt_band(gt, task)
    layer = np.zeros((*gt.shape, 4), np.uint8)
    layer[band] = (255, 255, 255, int(round(255 * BAND_SHADE)))
    return layer


def _error_layer(pred: np.ndarray, gt: np.ndarray, task: str) -> np.ndarray:
    fp, fn = get_task(task).error_maps(pred, gt)
    layer = np.zeros((*gt.shape, 4), np.uint8)
    layer[fp] = (*FP_COLOUR, 255)
    layer[fn] = (*FN_COLOUR, 255)
    return layer


def _row_html(i: int, row: Row, comp: Comparison, folder: Path, file_rank: dict[str, int]) -> str:
    """One ``<tr>``: its cells, and its sort values as JSON in ``data-sort``."""
    out = folder / IMAGE_DIR
    band = _write_image(out / f"r{i}_band.png", _band_layer(row.gt, comp.task)) if row.gt is not None else None
    cells = [_cell(row, [("photo", _write_image(out / f"r{i}_image.jpg", row.image))], row.name, "")]
    if row.gt is not None:
        gt_layers = [("truth", _write_image(out / f"r{i}_gt.png", mask_rgb(row.gt, comp.task))), ("band", band)]
        cells.append(_cell(row, gt_layers, "ground truth", ""))
    elif any(r.gt is not None for r in comp.rows):
        cells.append("<td class='missing'>no ground truth</td>")
    values: dict[str, float | None] = {"given": i, "order": file_rank[row.name], "dis": row.disagreement}
    for j, name in enumerate(comp.methods):
        result = row.methods[name]
        layers = [("mask", _write_image(out / f"r{i}_m{j}.png", mask_rgb(result.mask, comp.task)))]
        if row.gt is not None:
            errors = _write_image(out / f"r{i}_m{j}_err.png", _error_layer(result.mask, row.gt, comp.task))
            layers += [("band", band), ("err", errors)]
        caption = "  ".join(f"{k} {v:.3f}" for k, v in result.scores.items())
        cells.append(_cell(row, layers, name, caption))
        values.update({f"{j}:{k}": (v if math.isfinite(v) else None) for k, v in result.scores.items()})
    attrs = f"data-name='{html.escape(row.name, quote=True)}' data-sort='{html.escape(json.dumps(values), quote=True)}'"
    return f"<tr class='row' {attrs}>" + "".join(cells) + "</tr>"


def _cell(row: Row, layers: list[tuple[str, str]], title: str, caption: str) -> str:
    """A panel (its layers stacked), the inset's frame and zoom box, and the caption."""
    h, w = row.image.shape[:2]
    height = PANEL_PX * h / w
    alt = html.escape(title, quote=True)
    stack = "".join(f"<img class='layer {kind}' src='{src}' alt='{alt} {kind}' loading='lazy'>" for kind, src in layers)
    inner = f"<div class='stack'>{stack}</div>"
    if row.inset is not None:
        y0, x0, y1, x1 = row.inset
        k = PANEL_PX / w  # page pixels per image pixel
        frame = f"left:{x0 * k:.1f}px;top:{y0 * k:.1f}px;width:{(x1 - x0) * k:.1f}px;height:{(y1 - y0) * k:.1f}px"
        zoom_px = PANEL_PX * ZOOM_FRACTION
        z = zoom_px / (x1 - x0)  # zoom box pixels per image pixel
        place = f"width:{w * z:.1f}px;height:{h * z:.1f}px;left:{-x0 * z:.1f}px;top:{-y0 * z:.1f}px"
        inner += (
            f"<div class='frame' style='{frame}'></div>"
            f"<div class='zoombox' style='width:{zoom_px:.1f}px;height:{zoom_px:.1f}px'>"
            f"<div class='stack' style='{place}'>{stack}</div></div>"
        )
    label = html.escape(caption or title)
    return (
        f"<td><div class='panel' style='width:{PANEL_PX}px;height:{height:.1f}px'>{inner}</div>"
        f"<div class='caption'>{label}</div></td>"
    )


def _header(comp: Comparison) -> str:
    titles = ["image"] + (["ground truth"] if any(r.gt is not None for r in comp.rows) else []) + comp.methods
    return "<thead><tr>" + "".join(f"<th>{html.escape(t)}</th>" for t in titles) + "</tr></thead>"


def _controls(comp: Comparison) -> str:
    initial = {"": "order", "disagreement": "dis"}.get(comp.order, "given")
    options = "".join(
        f"<option value='{html.escape(k.value, quote=True)}' data-lower-better='{int(k.lower_better)}'"
        f"{' selected' if k.value == initial else ''}>{html.escape(k.label)}</option>"
        for k in sort_keys(comp)
    )
    has_gt = any(r.gt is not None for r in comp.rows)
    toggles = [("errors", "error overlay"), ("band", "boundary band")] if has_gt else []
    toggles.append(("zoom", "zoomed inset"))
    boxes = "".join(
        f"<label><input type='checkbox' id='show-{k}' data-class='{k}' checked> {text}</label>" for k, text in toggles
    )
    return (
        "<div id='controls'><label>sort by <select id='sort-key'>" + options + "</select></label>"
        "<button id='sort-dir' type='button' data-dir='worst'>worst first</button>"
        f"{boxes}<span id='status'>{len(comp.rows)} images</span></div>"
    )


def _legend(comp: Comparison) -> str:
    items = []
    for e in legend_entries(comp):
        if e.face is None:
            items.append(f"<span class='item note'>{html.escape(e.label)}</span>")
            continue
        edge = f"border:2px solid rgb{e.edge};" if e.edge else ""
        swatch = f"<span class='swatch' style='background:rgb{e.face};{edge}'></span>"
        items.append(f"<span class='item'>{swatch}{html.escape(e.label)}</span>")
    return "<div id='legend'>" + "".join(items) + "</div>"


def _notes(comp: Comparison) -> str:
    lines = [f"{m} lacks {len(v)} images: {', '.join(v[:10])}" for m, v in comp.skipped.items()]
    if comp.resized:
        lines.append(f"{len(comp.resized)} masks were resized to their image's size: {', '.join(comp.resized[:5])}")
    return "".join(f"<p class='notice'>{html.escape(line)}</p>" for line in lines)


def _style() -> str:
    return (
        "body{font-family:sans-serif;margin:12px;background:#fff;color:#222}"
        "#controls{position:sticky;top:0;background:#fff;padding:6px 0;z-index:3;display:flex;gap:14px;"
        "align-items:center;flex-wrap:wrap;border-bottom:1px solid #ccc}"
        "#legend{margin:8px 0;font-size:13px;display:flex;flex-wrap:wrap;gap:4px 16px}"
        ".swatch{display:inline-block;width:14px;height:14px;margin-right:5px;vertical-align:-2px;"
        "border:1px solid #555;box-sizing:border-box}"
        ".note{color:#555;font-style:italic}.notice{color:#8a4b00;font-size:13px;margin:2px 0}"
        "td{text-align:center;font-size:12px;vertical-align:top;padding:3px}th{font-size:13px}"
        ".panel{position:relative;overflow:hidden;background:#fff}"
        ".stack{position:absolute;left:0;top:0;width:100%;height:100%}"
        ".layer{position:absolute;left:0;top:0;width:100%;height:100%;image-rendering:pixelated}"
        f".frame{{position:absolute;box-sizing:border-box;border:2px solid rgb{INSET_COLOUR};"
        "box-shadow:0 0 0 1px #000,inset 0 0 0 1px #000;pointer-events:none}"
        ".zoombox{position:absolute;right:0;bottom:0;overflow:hidden;box-sizing:border-box;"
        f"border:2px solid rgb{INSET_COLOUR};box-shadow:0 0 0 1px #000;background:#fff}}"
        ".caption{margin-top:2px;white-space:pre}.missing{color:#888}"
        "body:not(.errors) .layer.err,body:not(.band) .layer.band{display:none}"
        "body:not(.zoom) .zoombox,body:not(.zoom) .frame{display:none}"
        # paled class colours under the overlay, as in the figure: the mask at this opacity over white
        f"body.errors.labels .layer.mask{{opacity:{1 - CLASS_PALE:g}}}"
    )


# The page's behaviour: switches set body classes; sorting reorders the <tr>s by their data-sort values (rows
# without the value go last); the status line counts images as they load and names any that could not.
_SCRIPT = r"""
(function () {
  var body = document.body, rows = document.getElementById('rows');
  document.querySelectorAll('#controls input[type=checkbox]').forEach(function (box) {
    box.addEventListener('change', function () { body.classList.toggle(box.dataset.class, box.checked); });
  });
  var key = document.getElementById('sort-key'), dir = document.getElementById('sort-dir');
  function sortRows() {
    var opt = key.options[key.selectedIndex], k = opt.value;
    var worst = dir.dataset.dir === 'worst';
    var sign;  // +1: ascending
    if (k === 'order' || k === 'given') { sign = 1; }  // these orders have no worst
    else if (k === 'dis') { sign = worst ? -1 : 1; }
    else { var lower = opt.dataset.lowerBetter === '1'; sign = (worst === lower) ? -1 : 1; }
    var list = Array.prototype.slice.call(rows.children);
    list.sort(function (a, b) {
      var va = JSON.parse(a.dataset.sort)[k], vb = JSON.parse(b.dataset.sort)[k];
      if (va === null || va === undefined) return (vb === null || vb === undefined) ? 0 : 1;
      if (vb === null || vb === undefined) return -1;
      if (va !== vb) return sign * (va - vb);
      return JSON.parse(a.dataset.sort).order - JSON.parse(b.dataset.sort).order;
    });
    list.forEach(function (tr) { rows.appendChild(tr); });
  }
  key.addEventListener('change', sortRows);
  dir.addEventListener('click', function () {
    dir.dataset.dir = dir.dataset.dir === 'worst' ? 'best' : 'worst';
    dir.textContent = dir.dataset.dir + ' first';
    sortRows();
  });
  // images load lazily (a page of thousands of rows stays light): count them as they arrive or fail
  var status = document.getElementById('status'), ok = 0, bad = [];
  function report() {
    status.dataset.loaded = ok; status.dataset.failed = bad.length;
    var missing = bad.length ? '; ' + bad.length + ' files missing, e.g. ' + bad[0] : '';
    status.textContent = rows.children.length + ' images' + missing;
  }
  document.querySelectorAll('img.layer').forEach(function (im) {
    if (im.complete && im.naturalWidth > 0) ok++;
    else if (im.complete) bad.push(im.getAttribute('src'));
    else {
      im.addEventListener('load', function () { ok++; report(); });
      im.addEventListener('error', function () { bad.push(im.getAttribute('src')); report(); });
    }
  });
  report();
})();
"""
