"""Panel images (RGB uint8 arrays) of a comparison: masks in colour, errors overlaid, the boundary band shaded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from segkit.conventions import IGNORE_INDEX
from segkit.metrics.boundary import boundary_band, boundary_width_px
from segkit.tasks import Task, get_task

if TYPE_CHECKING:
    from segkit.viz.compare import Comparison

# Okabe & Ito's colour-blind-safe palette
FP_COLOUR = (213, 94, 0)  # vermillion: predicted but not in the ground truth
FN_COLOUR = (0, 114, 178)  # blue: in the ground truth but missed
INSET_COLOUR = (240, 228, 66)  # yellow: the inset's frame, in the full view and around the inset
INSET_EDGE = (0, 0, 0)  # the thin dark line around the yellow frame, so that it shows on white too
BAND_SHADE = 0.35  # how much the ground-truth boundary band is lightened
# Class colours under an error overlay are paled this much toward white: VOC's palette holds blues and oranges
# near the error colours (boat, bus, dining table); paled, every class colour has a channel >= 128 where the
# error colours have 0, so an error pixel is never mistaken for a class.
CLASS_PALE = 0.5


def mask_rgb(mask: np.ndarray, task: str | Task) -> np.ndarray:
    """A mask as an RGB image: grey levels (saliency) or VOC colours (segmentation)."""
    return get_task(task).mask_rgb(mask)


def gt_band(gt: np.ndarray, task: str | Task) -> np.ndarray:
    """The ground-truth boundary band (inner and outer, Boundary IoU's width) that error panels shade."""
    return boundary_band(get_task(task).foreground(gt), boundary_width_px(*gt.shape))


def error_panel(pred: np.ndarray, gt: np.ndarray | None, task: str | Task) -> np.ndarray:
    """The method's mask with false positives and false negatives painted in their colours, and the
    ground-truth boundary band lightened; without ground truth, the plain mask."""
    panel = mask_rgb(pred, task).astype(np.float32)
    if gt is None:
        return panel.astype(np.uint8)
    if get_task(task).labels:
        panel = panel * (1 - CLASS_PALE) + 255 * CLASS_PALE
    band = gt_band(gt, task)
    panel[band] = panel[band] * (1 - BAND_SHADE) + 255 * BAND_SHADE
    fp, fn = get_task(task).error_maps(pred, gt)
    panel[fp] = FP_COLOUR
    panel[fn] = FN_COLOUR
    return panel.astype(np.uint8)


def band_swatch() -> tuple[int, int, int]:
    """The colour background takes inside the lightened boundary band (black lightened by ``BAND_SHADE``)."""
    grey = int(round(255 * BAND_SHADE))
    return (grey, grey, grey)


def classes_present(row_masks: list[np.ndarray]) -> list[int]:
    present: set[int] = set()
    for m in row_masks:
        present |= set(np.unique(m).tolist())
    return sorted(c for c in present if c != IGNORE_INDEX)


@dataclass(frozen=True)
class LegendEntry:
    label: str
    face: tuple[int, int, int] | None  # fill colour; None: an outline only
    edge: tuple[int, int, int] | None = None


def legend_entries(comp: Comparison) -> list[LegendEntry]:
    """What the figure's and the page's legends show: the error colours, the band, the inset's frame, and the
    class colours a segmentation comparison uses."""
    entries = []
    has_gt = any(r.gt is not None for r in comp.rows)
    if has_gt:
        entries += [
            LegendEntry("false positive", FP_COLOUR),
            LegendEntry("false negative", FN_COLOUR),
            LegendEntry(
                f"ground-truth boundary band (lightened {BAND_SHADE:.0%}; grey over background)", band_swatch()
            ),
        ]
    entries.append(LegendEntry("zoomed region (most disagreement along the boundary)", INSET_COLOUR, INSET_EDGE))
    if get_task(comp.task).labels:
        from segkit.data.voc import voc_palette

        palette = voc_palette()
        masks = [m.mask for r in comp.rows for m in r.methods.values()] + [r.gt for r in comp.rows if r.gt is not None]
        for c in classes_present(masks):
            name = comp.class_names[c] if c < len(comp.class_names) else f"class {c}"
            entries.append(LegendEntry(name, tuple(int(v) for v in palette[c])))
        if has_gt:
            entries.append(LegendEntry(f"(class colours paled {CLASS_PALE:.0%} under the error overlay)", None))
    return entries
