"""Boundary quality: Boundary IoU (Cheng et al., "Boundary IoU: Improving Object-Centric Image Segmentation
Evaluation", CVPR 2021) and the trimap band around ground-truth boundaries."""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

DILATION_RATIO = 0.02  # boundary width as a fraction of the image diagonal


def boundary_width_px(height: int, width: int, ratio: float = DILATION_RATIO) -> int:
    """d = max(1, round(ratio x image diagonal))."""
    return max(1, int(round(ratio * float(np.hypot(height, width)))))


@cache
def _square(size: int) -> np.ndarray:
    """The (size x size) rectangle structuring element, made once per size (making it took 65 us, as long as the
    erosion of a 400x300 mask, measured); callers never write to it."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
    kernel.flags.writeable = False
    return kernel


def mask_boundary(mask: np.ndarray, d: int) -> np.ndarray:
    """The mask's inner boundary of width ``d``: the mask minus its erosion by a 3x3 kernel applied ``d`` times,
    the mask being zero-padded by 1 px first (so pixels within ``d`` of the image edge count as boundary).

    A 3x3 square eroded ``d`` times equals one erosion by a (2d+1) square, which OpenCV runs separably; a zero
    border in place of the padding gives the same erosion (a pixel's window leaves the image exactly when it
    reaches the padding) without copying the mask into a larger one.
    """
    m = np.ascontiguousarray(mask if mask.dtype == np.bool_ else mask != 0).view(np.uint8)  # 0/1, no copy of a bool
    eroded = cv2.erode(m, _square(2 * d + 1), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return cv2.subtract(m, eroded).view(np.bool_)  # the erosion lies inside the mask: 1 exactly where m=1, eroded=0


def boundary_band(mask: np.ndarray, d: int) -> np.ndarray:
    """Pixels within ``d`` of the mask's outline, inside (Boundary IoU's boundary) and outside it. The image's
    own edge is not an outline: the outer part is the dilation minus the mask."""
    m = mask.astype(np.uint8)
    kernel = _square(2 * d + 1)
    outer = (cv2.dilate(m, kernel) > 0) & (m == 0)
    inner = (m > 0) & (cv2.erode(m, kernel, borderType=cv2.BORDER_REPLICATE) == 0)
    return inner | outer


def boundary_iou_counts(
    pred: np.ndarray, gt: np.ndarray | None, d: int | None = None, gt_boundary: np.ndarray | None = None
) -> tuple[int, int]:
    """(intersection, union) of the boundaries of two binary masks of one image; ``gt_boundary``, when given, is
    ``mask_boundary(gt, d)`` already computed (``gt`` is then not read)."""
    if d is None:
        d = boundary_width_px(*pred.shape)
    bp = mask_boundary(pred, d).view(np.uint8)
    bg = np.ascontiguousarray(gt_boundary if gt_boundary is not None else mask_boundary(gt, d)).view(np.uint8)
    inter = cv2.countNonZero(cv2.bitwise_and(bp, bg))  # OpenCV's: a third faster than numpy's bool ops here
    return inter, cv2.countNonZero(bp) + cv2.countNonZero(bg) - inter


def boundary_iou(
    pred: np.ndarray, gt: np.ndarray | None, d: int | None = None, gt_boundary: np.ndarray | None = None
) -> float:
    """Boundary IoU of two binary masks; 1.0 when both have no boundary (both empty)."""
    inter, union = boundary_iou_counts(pred, gt, d, gt_boundary)
    return inter / union if union else 1.0


def label_boundaries(labels: np.ndarray) -> np.ndarray:
    """Pixels of a label map with a 4-neighbour of another label."""
    edges = np.zeros(labels.shape, dtype=bool)
    vertical = labels[1:, :] != labels[:-1, :]
    horizontal = labels[:, 1:] != labels[:, :-1]
    edges[1:, :] |= vertical
    edges[:-1, :] |= vertical
    edges[:, 1:] |= horizontal
    edges[:, :-1] |= horizontal
    return edges


def trimap_band(labels: np.ndarray, width_px: int) -> np.ndarray:
    """Pixels within ``width_px`` (Euclidean) of a ground-truth label boundary (Kohli et al. 2009 trimap)."""
    edges = label_boundaries(labels)
    if not edges.any():
        return np.zeros(labels.shape, dtype=bool)
    dist = cv2.distanceTransform((~edges).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return dist <= width_px
