"""Segmentation and saliency metrics as accumulators (``update``, ``compute``, ``reset``,
``reduce_from_all_processes``) over pure per-image formulas."""

from segkit.metrics.boundary import boundary_iou, mask_boundary
from segkit.metrics.saliency import SaliencyMetrics
from segkit.metrics.segmentation import SegmentationMetrics, confusion_matrix, scores_from_confusion

__all__ = [
    "SaliencyMetrics",
    "SegmentationMetrics",
    "boundary_iou",
    "confusion_matrix",
    "mask_boundary",
    "scores_from_confusion",
]
