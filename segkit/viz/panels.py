"""Panel images (RGB uint8 arrays) of a comparison: masks in colour, errors overlaid, the boundary band shaded."""

from __future__ import annotations

import numpy as np

from segkit.conventions import IGNORE_INDEX
from segkit.metrics.boundary import boundary_band, boundary_width_px
from segkit.tasks import Task, get_task

# Okabe & Ito's colour-blind-safe palette
FP_COLOUR = (213, 94, 0)  # vermillion: predicted but not in the ground truth
FN_COLOUR = (0, 114, 178)  # blue: in the ground truth but missed
INSET_COLOUR = (240, 228, 66)  # yellow: the inset's frame, in the full view and around the inset
BAND_SHADE = 0.35  # how much the ground-truth boundary band is lightened


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
    band = gt_band(gt, task)
    panel[band] = panel[band] * (1 - BAND_SHADE) + 255 * BAND_SHADE
    fp, fn = get_task(task).error_maps(pred, gt)
    panel[fp] = FP_COLOUR
    panel[fn] = FN_COLOUR
    return panel.astype(np.uint8)


def classes_present(row_masks: list[np.ndarray]) -> list[int]:
    present: set[int] = set()
    for m in row_masks:
        present |= set(np.unique(m).tolist())
    return sorted(c for c in present if c != IGNORE_INDEX)
