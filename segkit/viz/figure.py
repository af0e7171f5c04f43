"""Drawing a comparison with matplotlib: one figure (PNG, PDF or SVG) for a paper or a slide."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segkit.errors import SegkitError
from segkit.viz.compare import Comparison, Row
from segkit.viz.panels import INSET_COLOUR, INSET_EDGE, error_panel, legend_entries, mask_rgb

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
    import matplotlib.patheffects as pe

    y0, x0, y1, x1 = inset
    edge = [pe.Stroke(linewidth=2.6, foreground=_rgb01(INSET_EDGE)), pe.Normal()]  # shows on white and on black
    frame = dict(fill=False, edgecolor=_rgb01(INSET_COLOUR), linewidth=1.2, path_effects=edge)
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, **frame))
    zoom = ax.inset_axes([0.6, 0.0, 0.4, 0.4])  # bottom-right corner, 40% of the panel
    zoom.imshow(panel.rgb[y0:y1, x0:x1], interpolation="nearest")
    zoom.set_xticks([])
    zoom.set_yticks([])
    for spine in zoom.spines.values():
        spine.set_edgecolor(_rgb01(INSET_COLOUR))
        spine.set_linewidth(1.5)
        spine.set_path_effects([pe.Stroke(linewidth=3, foreground=_rgb01(INSET_EDGE)), pe.Normal()])


LEGEND_ROW_IN = 0.2  # height of one legend row


def _legend_columns(comp: Comparison, n_cols: int) -> int:
    """Legend entries per row: as many as fit the figure's width (long labels take about two panels each)."""
    entries = legend_entries(comp)
    longest = max(len(e.label) for e in entries)
    per_row = max(1, int(n_cols * PANEL_IN // (0.055 * longest + 0.4)))  # ~0.055 in per character at 7 pt
    return min(len(entries), per_row)


def _legend(fig, comp: Comparison, ncol: int) -> None:
    from matplotlib.patches import Patch

    handles = []
    for e in legend_entries(comp):
        face = _rgb01(e.face) if e.face else "none"
        edge = _rgb01(e.edge) if e.edge else ("none" if e.face is None else face)
        handles.append(Patch(facecolor=face, edgecolor=edge, linewidth=1.5 if e.edge else 0.5, label=e.label))
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=7, frameon=False)


def render_figure(comp: Comparison, output: Path | str, max_rows: int = 0) -> Path:
    """Write the comparison as one figure; the format follows the suffix (.png, .pdf, .svg). ``max_rows`` > 0
    keeps the figure to its first rows (the page shows them all)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output = Path(output)
    if output.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise SegkitError(f"--output must end in .png, .pdf or .svg, got '{output.name}'")
    if not comp.rows:
        raise SegkitError("no image could be shown: every row lacks a method's mask (see the skipped list)")
    titles = column_titles(comp)
    rows = comp.rows[:max_rows] if max_rows > 0 else comp.rows
    n_rows, n_cols = len(rows), len(titles)
    ncol = _legend_columns(comp, n_cols)
    legend_in = 0.15 + LEGEND_ROW_IN * -(-len(legend_entries(comp)) // ncol)
    height = PANEL_IN * n_rows + 0.4 + legend_in
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(PANEL_IN * n_cols, height), squeeze=False)
    for r, row in enumerate(rows):
        panels = row_panels(row, comp)
        for c, panel in enumerate(panels):
            _draw_panel(axes[r][c], panel, row.inset if c > 0 or row.inset else None)
        for c in range(len(panels), n_cols):
            axes[r][c].axis("off")
    for c, title in enumerate(titles):
        axes[0][c].set_title(title, fontsize=9)
    _legend(fig, comp, ncol)
    fig.tight_layout(rect=(0, legend_in / height, 1, 1))
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=150)
    plt.close(fig)
    return output
