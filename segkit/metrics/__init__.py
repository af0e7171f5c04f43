"""Segmentation and saliency metrics as accumulators (``update``, ``compute``, ``reset``,
``reduce_from_all_processes``) over pure per-image formulas; ``compute()`` returns a typed result."""

from segkit.metrics.boundary import boundary_iou, mask_boundary
from segkit.metrics.saliency import SaliencyCurves, SaliencyMetrics, SaliencyScores
from segkit.metrics.segmentation import (
    SegmentationMetrics,
    SegmentationScores,
    confusion_matrix,
    scores_from_confusion,
)

__all__ = [
    "SaliencyCurves",
    "SaliencyMetrics",
    "SaliencyScores",
    "SegmentationMetrics",
    "SegmentationScores",
    "boundary_iou",
    "confusion_matrix",
    "mask_boundary",
    "scores_from_confusion",
]
