"""Qualitative comparisons that show boundary detail: error overlays, an automatic zoomed inset where the methods
disagree most along the boundary, per-image scores from ``segkit.metrics``; as a figure (``render_figure``) and as
a page to browse every image in a browser (``render_html``)."""

from segkit.viz.compare import (
    Comparison,
    build_comparison,
    choose_inset,
    disagreement_map,
    error_maps,
    select_worst,
)
from segkit.viz.figure import render_figure, row_panels
from segkit.viz.page import render_html
from segkit.viz.panels import FN_COLOUR, FP_COLOUR, INSET_COLOUR, error_panel

__all__ = [
    "FN_COLOUR",
    "FP_COLOUR",
    "INSET_COLOUR",
    "Comparison",
    "build_comparison",
    "choose_inset",
    "disagreement_map",
    "error_maps",
    "error_panel",
    "render_figure",
    "render_html",
    "row_panels",
    "select_worst",
]
