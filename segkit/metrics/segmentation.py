"""Semantic segmentation metrics over a whole dataset (the conventions of mmsegmentation's IoUMetric).

Everything derives from one confusion matrix (rows: ground truth, columns: prediction) that ignores pixels
labelled ``ignore_index``. Classes with an empty union are left out of the means, as mmsegmentation does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from segkit.conventions import IGNORE_INDEX
from segkit.metrics.arrays import as_2d_numpy
from segkit.metrics.boundary import boundary_iou_counts, boundary_width_px, trimap_band


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX):
    """(C, C) int64 counts; ``gt == ignore_index`` pixels are skipped; other labels must be in 0..C-1."""
    valid = gt != ignore_index
    g, p = gt[valid].astype(np.int64), pred[valid].astype(np.int64)
    _check_range(g, num_classes, "ground truth")
    _check_range(p, num_classes, "prediction")
    return np.bincount(g * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _check_range(values: np.ndarray, num_classes: int, what: str) -> None:
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        bad = values[(values < 0) | (values >= num_classes)][0]
        raise ValueError(f"{what} holds class {bad}, outside 0..{num_classes - 1} (and not the ignore index)")


def scores_from_confusion(cm: np.ndarray) -> dict:
    """mIoU, per-class IoU, aAcc, mAcc, FWIoU and mDice (fractions) from a confusion matrix."""
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    gt_count = cm.sum(1)
    pred_count = cm.sum(0)
    union = gt_count + pred_count - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt_count > 0, tp / gt_count, np.nan)
        dice = np.where(union > 0, 2 * tp / (gt_count + pred_count), np.nan)
    total = cm.sum()
    freq = gt_count / total if total else np.zeros_like(gt_count)
    present = ~np.isnan(iou)
    return {
        "miou": _nanmean(iou),
        "per_class_iou": [None if np.isnan(v) else float(v) for v in iou],
        "aacc": float(tp.sum() / total) if total else float("nan"),
        "macc": _nanmean(acc),
        "fwiou": float((freq[present] * iou[present]).sum()) if total else float("nan"),
        "mdice": _nanmean(dice),
    }


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")


@dataclass(frozen=True)
class SegmentationScores:
    """Dataset scores (fractions) and, apart, the per-class and per-band values."""

    miou: float
    aacc: float
    macc: float
    fwiou: float
    mdice: float
    boundary_iou: float
    per_class_iou: list[float | None]  # None: the class is in neither prediction nor ground truth
    per_class_boundary_iou: list[float | None]
    trimap_miou: dict[int, float]  # band width in px -> mIoU inside the band
    count: int  # images scored

    def scalars(self) -> dict[str, float]:
        """Every scalar score by its key (``miou``, ``aacc``, ...), in table order."""
        return {k: getattr(self, k) for k in ("miou", "aacc", "macc", "fwiou", "mdice", "boundary_iou")}

    def to_json(self) -> dict:
        return {
            **self.scalars(),
            "per_class_iou": self.per_class_iou,
            "per_class_boundary_iou": self.per_class_boundary_iou,
            "trimap_miou": self.trimap_miou,
            "count": self.count,
        }


@dataclass
class SegmentationMetrics:
    """Accumulates the confusion matrix, Boundary IoU per class, and trimap confusion matrices.

    ``update(pred, gt)`` takes label maps of one image (numpy or torch, CPU or CUDA); ``compute()`` returns
    ``SegmentationScores``.
    """

    num_classes: int
    ignore_index: int = IGNORE_INDEX
    trimap_widths_px: Sequence[int] = (2, 4, 8, 16)
    cm: np.ndarray = field(init=False)
    boundary: np.ndarray = field(init=False)  # (C, 2): intersection, union
    trimap: np.ndarray = field(init=False)  # (len(widths), C, C)
    count: int = field(init=False)  # images seen

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        c = self.num_classes
        self.cm = np.zeros((c, c), dtype=np.int64)
        self.boundary = np.zeros((c, 2), dtype=np.int64)
        self.trimap = np.zeros((len(self.trimap_widths_px), c, c), dtype=np.int64)
        self.count = 0

    def update(self, pred, gt) -> None:
        p, g = as_2d_numpy(pred), as_2d_numpy(gt)
        if p.shape != g.shape:
            raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in size")
        self.cm += confusion_matrix(p, g, self.num_classes, self.ignore_index)
        self._update_boundary(p, g)
        for i, w in enumerate(self.trimap_widths_px):
            band = trimap_band(g, w)
            self.trimap[i] += confusion_matrix(p[band], g[band], self.num_classes, self.ignore_index)
        self.count += 1

    def _update_boundary(self, p: np.ndarray, g: np.ndarray) -> None:
        d = boundary_width_px(*g.shape)
        valid = g != self.ignore_index
        for c in np.union1d(np.unique(p[valid]), np.unique(g[valid])):
            if c >= self.num_classes:
                continue
            inter, union = boundary_iou_counts((p == c) & valid, g == c, d)
            self.boundary[c] += (inter, union)

    def merge(self, other: SegmentationMetrics) -> None:
        self.cm += other.cm
        self.boundary += other.boundary
        self.trimap += other.trimap
        self.count += other.count

    def reduce_from_all_processes(self) -> None:
        """Sum the counts over torch.distributed processes (no-op when not distributed)."""
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        for name in ("cm", "boundary", "trimap"):
            t = torch.from_numpy(getattr(self, name).copy())
            dist.all_reduce(t)
            setattr(self, name, t.numpy())
        count = torch.tensor([self.count], dtype=torch.int64)
        dist.all_reduce(count)
        self.count = int(count.item())

    def compute(self) -> SegmentationScores:
        out = scores_from_confusion(self.cm)
        inter, union = self.boundary[:, 0].astype(np.float64), self.boundary[:, 1].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            biou = np.where(union > 0, inter / union, np.nan)
        trimap = {int(w): scores_from_confusion(self.trimap[i])["miou"] for i, w in enumerate(self.trimap_widths_px)}
        return SegmentationScores(
            boundary_iou=_nanmean(biou),
            per_class_boundary_iou=[None if np.isnan(v) else float(v) for v in biou],
            trimap_miou=trimap,
            count=self.count,
            **out,
        )
