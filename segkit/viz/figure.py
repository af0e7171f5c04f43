"""Drawing a comparison with matplotlib (PNG, PDF or SVG) and as a browsable HTML page."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segkit.errors import SegkitError
from segkit.tasks import get_task
from segkit.viz.compare import Comparison, Row
from segkit.viz.panels import FN_COLOUR, FP_COLOUR, INSET_COLOUR, classes_present, error_panel, mask_rgb

PANEL_IN = 2.2  # panel side in inches


@dataclass(frozen=True)
class Panel:
    title: str
    rgb: np.ndarray
    caption: str = ""


def row_panels(row: Row, comp: Comparison) -> list[Panel]:
    """The panels of one row, in column order: image | ground truth | each method."""
    panels = [Panel(row.name, row.image)]
    if row.gt is not None:
        panels.append(Panel("ground truth", mask_rgb(row.gt, comp.task)))
    for name in comp.methods:
        result = row.methods[name]
        caption = "  ".join(f"{k} {v:.3f}" for k, v in result.scores.items())
        panels.append(Panel(name, error_panel(result.mask, row.gt, comp.task), caption))
    return panels


def column_titles(comp: Comparison) -> list[str]:
    has_gt = any(r.gt is not None for r in comp.rows)
    return ["image", *(["ground truth"] if has_gt else []), *comp.methods]


def _rgb01(colour: tuple[int, int, int]) -> tuple[float, ...]:
    return tuple(c / 255 for c in colour)


def _draw_panel(ax, panel: Panel, inset: tuple[int, int, int, int] | None) -> None:
    from matplotlib.patches import Rectangle

    ax.imshow(panel.rgb, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if panel.caption:
        ax.set_xlabel(panel.caption, fontsize=7)
    if inset is None:
        return
    y0, x0, y1, x1 = inset
    frame = dict(fill=False, edgecolor=_rgb01(INSET_COLOUR), linewidth=1.2)
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, **frame))
    zoom = ax.inset_axes([0.6, 0.0, 0.4, 0.4])  # bottom-right corner, 40% of the panel
    zoom.imshow(panel.rgb[y0:y1, x0:x1], interpolation="nearest")
    zoom.set_xticks([])
    zoom.set_yticks([])
    for spine in zoom.spines.values():
        spine.set_edgecolor(_rgb01(INSET_COLOUR))
        spine.set_linewidth(1.5)


def _legend(fig, comp: Comparison) -> None:
    from matplotlib.patches import Patch

    from segkit.data.voc import voc_palette

    handles = []
    if any(r.gt is not None for r in comp.rows):
        handles += [
            Patch(color=_rgb01(FP_COLOUR), label="false positive"),
            Patch(color=_rgb01(FN_COLOUR), label="false negative"),
            Patch(facecolor="white", edgecolor="grey", label="ground-truth boundary band (lightened)"),
        ]
    handles.append(Patch(fill=False, edgecolor=_rgb01(INSET_COLOUR), label="zoomed region (most disagreement)"))
    if get_task(comp.task).labels:  # a colour per class: name them
        masks = [m.mask for r in comp.rows for m in r.methods.values()] + [r.gt for r in comp.rows if r.gt is not None]
        palette = voc_palette()
        for c in classes_present(masks):
            name = comp.class_names[c] if c < len(comp.class_names) else f"class {c}"
            handles.append(Patch(color=_rgb01(tuple(palette[c])), label=name))
    fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize=7, frameon=False)


def render_figure(comp: Comparison, output: Path | str) -> Path:
    """Write the comparison as one figure; the format follows the suffix (.png, .pdf, .svg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output = Path(output)
    if output.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise SegkitError(f"--output must end in .png, .pdf or .svg, got '{output.name}'")
    if not comp.rows:
        raise SegkitError("no image could be shown: every row lacks a method's mask (see the skipped list)")
    titles = column_titles(comp)
    n_rows, n_cols = len(comp.rows), len(titles)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(PANEL_IN * n_cols, PANEL_IN * n_rows + 0.6), squeeze=False)
    for r, row in enumerate(comp.rows):
        panels = row_panels(row, comp)
        for c, panel in enumerate(panels):
            _draw_panel(axes[r][c], panel, row.inset if c > 0 or row.inset else None)
        for c in range(len(panels), n_cols):
            axes[r][c].axis("off")
    for c, title in enumerate(titles):
        axes[0][c].set_title(title, fontsize=9)
    _legend(fig, comp)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=150)
    plt.close(fig)
    return output


def render_html(comp: Comparison, folder: Path | str) -> Path:
    """A browsable page of every row with the same panels (PNG files beside index.html)."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    titles = column_titles(comp)
    lines = [
        "<!doctype html><meta charset='utf-8'><title>segkit comparison</title>",
        "<style>body{font-family:sans-serif} td{text-align:center;font-size:12px;vertical-align:top}"
        " img{width:220px;image-rendering:pixelated}</style>",
        f"<p>false positives <b style='color:rgb{FP_COLOUR}'>&#9632;</b>, false negatives "
        f"<b style='color:rgb{FN_COLOUR}'>&#9632;</b>, zoomed region <b style='color:rgb{INSET_COLOUR}'>"
        "&#9633;</b></p><table><tr>" + "".join(f"<th>{html.escape(t)}</th>" for t in titles) + "</tr>",
    ]
    for i, row in enumerate(comp.rows):
        cells = []
        for c, panel in enumerate(row_panels(row, comp)):
            rgb = _framed(panel.rgb, row.inset) if c > 0 or row.inset else panel.rgb
            file = f"row{i:04d}_col{c}.png"
            cv2.imwrite(str(folder / file), rgb[..., ::-1])
            caption = html.escape(panel.caption or panel.title)
            cells.append(f"<td><img src='{file}' alt='{html.escape(panel.title)}'><br>{caption}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</table>")
    page = folder / "index.html"
    page.write_text("\n".join(lines), encoding="utf-8")
    return page


def _framed(rgb: np.ndarray, inset: tuple[int, int, int, int] | None) -> np.ndarray:
    if inset is None:
        return rgb
    import cv2

    out = rgb.copy()
    y0, x0, y1, x1 = inset
    cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), INSET_COLOUR, 1)
    return out
