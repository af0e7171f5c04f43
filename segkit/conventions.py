"""Conventions every part of segkit shares, defined once.

- ``IGNORE_INDEX``: the label of pixels that no loss or metric counts (VOC's "void" border, padding).
- ``probs_to_uint8``: a probability map in [0, 1] as the 8-bit grey map a saved PNG holds (rounded, clipped).
- ``resize_mask``: a mask brought to another size: bilinear for grey levels, nearest for class ids.
- ``size_mismatch``: the one wording of "this mask does not fit its image".
"""

from __future__ import annotations

import cv2
import numpy as np

IGNORE_INDEX = 255


def probs_to_uint8(probs: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] -> uint8 0..255, rounded to nearest and clipped (values outside [0, 1] saturate)."""
    return np.clip(np.round(probs * 255), 0, 255).astype(np.uint8)


def resize_mask(mask: np.ndarray, shape: tuple[int, int], labels: bool) -> np.ndarray:
    """``mask`` resized to ``shape`` (H, W): nearest neighbour for class ids (``labels``), bilinear for grey maps."""
    interpolation = cv2.INTER_NEAREST if labels else cv2.INTER_LINEAR
    return cv2.resize(mask, (shape[1], shape[0]), interpolation=interpolation)


def size_mismatch(mask_shape: tuple[int, ...], image_shape: tuple[int, ...], image_name: str) -> str | None:
    """None when a mask of ``mask_shape`` fits an image of ``image_shape`` (H, W[, C]); otherwise the problem."""
    if tuple(mask_shape[:2]) == tuple(image_shape[:2]):
        return None
    return f"mask is {mask_shape[1]}x{mask_shape[0]} but its image {image_name} is {image_shape[1]}x{image_shape[0]}"


def label_range_problem(labels: np.ndarray, num_classes: int) -> str | None:
    """None when every label is a class id (0..num_classes-1) or ``IGNORE_INDEX``; otherwise the problem."""
    bad = np.unique(labels[(labels >= num_classes) & (labels != IGNORE_INDEX)])
    if not bad.size:
        return None
    return f"class values {bad.tolist()[:10]} outside 0..{num_classes - 1} (and not {IGNORE_INDEX}, ignore)"


# Scores where a smaller value is better (the error measures); every other score segkit reports is higher-better.
LOWER_IS_BETTER = frozenset({"mae", "MAE"})


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` (a segkit score key such as ``mae`` or a caption label such as ``MAE``)
    is better; tables mark the best cell and pages sort "worst first" by it."""
    return metric in LOWER_IS_BETTER
