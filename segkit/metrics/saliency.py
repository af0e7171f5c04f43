"""Saliency metrics with the conventions of the MATLAB SOD toolbox (as ported by PySODMetrics 1.6).

Conventions, applied by ``prepare`` to every pair:
- ground truth is binarised at > 128 (of 0..255);
- the prediction is divided by 255, then min-max normalised per image unless its max equals its min;
- threshold curves use the 256 thresholds t/255, t = 0..255, compared with ``>=`` on the prediction quantised to
  uint8 by truncation (``uint8(pred * 255)``);
- F-measure uses beta^2 = 0.3 (``beta_sq``); the weighted F-measure uses beta = 1;
- the adaptive threshold is min(2 x mean(pred), 1);
- scores are averaged over images; curves are averaged over images, then their max and mean are taken.

Per-image formulas are pure functions; ``SaliencyMetrics`` accumulates them over a dataset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.ndimage import distance_transform_edt

from segkit.metrics.boundary import boundary_iou

EPS = np.spacing(1)  # the toolbox's eps (MATLAB's eps = 2.2e-16)
BETA_SQ = 0.3  # F-measure beta^2 (Achanta et al. 2009)
NUM_THRESHOLDS = 256


def prepare(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pred in [0, 1] as float64, gt as bool) from uint8-range arrays of the same shape."""
    gt_bool = gt > 128
    pred = pred.astype(np.float64) / 255.0
    lo, hi = pred.min(), pred.max()
    if hi != lo:
        pred = (pred - lo) / (hi - lo)
    return pred, gt_bool


def mae(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute error between the prepared prediction and the binary ground truth."""
    return float(np.mean(np.abs(pred - gt)))


def adaptive_threshold(pred: np.ndarray) -> float:
    """Twice the mean saliency, capped at 1 (Achanta et al., CVPR 2009)."""
    return min(2.0 * float(pred.mean()), 1.0)


# ---------------------------------------------------------------- threshold curves (histograms + cumulative sums)


@dataclass(frozen=True)
class ThresholdCounts:
    """Per-threshold pixel counts, index k = threshold (255 - k)/255 (descending thresholds)."""

    tp: np.ndarray  # predicted >= t and gt foreground
    fp: np.ndarray  # predicted >= t and gt background
    gt_fg: int
    size: int


def threshold_counts(pred: np.ndarray, gt: np.ndarray) -> ThresholdCounts:
    """Counts for all 256 thresholds at once: one histogram of (uint8-quantised prediction, gt) pairs, cumulated
    from the top threshold down."""
    quantised = (pred * 255).astype(np.uint8)
    codes = quantised.astype(np.uint16) * 2 + gt  # (value, is-object) in one code
    hist = np.bincount(codes.ravel(), minlength=2 * NUM_THRESHOLDS).reshape(NUM_THRESHOLDS, 2)
    tp = np.cumsum(hist[::-1, 1])
    fp = np.cumsum(hist[::-1, 0])
    return ThresholdCounts(tp=tp, fp=fp, gt_fg=int(tp[-1]), size=gt.size)


def precision_recall_f(counts: ThresholdCounts, beta_sq: float = BETA_SQ) -> tuple[np.ndarray, ...]:
    """Precision, recall and F-measure curves (descending thresholds)."""
    predicted = counts.tp + counts.fp
    precision = counts.tp / np.where(predicted == 0, 1, predicted)
    recall = counts.tp / max(counts.gt_fg, 1)
    numerator = (1 + beta_sq) * precision * recall
    denominator = np.where(numerator == 0, 1, beta_sq * precision + recall)
    return precision, recall, numerator / denominator


def adaptive_fmeasure(pred: np.ndarray, gt: np.ndarray, beta_sq: float = BETA_SQ) -> float:
    """F-measure at the adaptive threshold; 0 when nothing predicted overlaps the object."""
    binary = pred >= adaptive_threshold(pred)
    intersection = np.count_nonzero(binary & gt)
    if intersection == 0:
        return 0.0
    precision = intersection / np.count_nonzero(binary)
    recall = intersection / np.count_nonzero(gt)
    return float((1 + beta_sq) * precision * recall / (beta_sq * precision + recall))


def _enhanced_alignment_sum(fg_fg, fg_bg, gt_fg: int, size: int):
    """Sum of the enhanced-alignment matrix of E-measure (Fan et al., IJCAI 2018) from pixel counts.

    ``fg_fg``/``fg_bg``: predicted-foreground pixels on gt foreground / background (scalars or arrays over
    thresholds). A binary prediction and binary gt take only four value pairs, so the sum is a weighted sum.
    """
    predicted_fg = fg_fg + fg_bg
    predicted_bg = size - predicted_fg
    if gt_fg == 0:
        return predicted_bg
    if gt_fg == size:
        return predicted_fg
    bg_fg = gt_fg - fg_fg  # predicted background on gt foreground
    bg_bg = predicted_bg - bg_fg
    mean_pred = predicted_fg / size
    mean_gt = gt_fg / size
    total = 0.0
    for count, p, g in (
        (fg_fg, 1 - mean_pred, 1 - mean_gt),
        (fg_bg, 1 - mean_pred, -mean_gt),
        (bg_fg, -mean_pred, 1 - mean_gt),
        (bg_bg, -mean_pred, -mean_gt),
    ):
        align = 2 * p * g / (p * p + g * g + EPS)
        total = total + count * ((align + 1) ** 2 / 4)
    return total


def emeasure_curve(counts: ThresholdCounts) -> np.ndarray:
    """E-measure for each of the 256 thresholds (descending)."""
    total = _enhanced_alignment_sum(counts.tp, counts.fp, counts.gt_fg, counts.size)
    return np.asarray(total, dtype=np.float64) / (counts.size - 1 + EPS)


def adaptive_emeasure(pred: np.ndarray, gt: np.ndarray) -> float:
    """E-measure of the prediction binarised at the adaptive threshold."""
    binary = pred >= adaptive_threshold(pred)
    fg_fg = np.count_nonzero(binary & gt)
    fg_bg = np.count_nonzero(binary & ~gt)
    gt_fg = np.count_nonzero(gt)
    return float(_enhanced_alignment_sum(fg_fg, fg_bg, gt_fg, gt.size) / (gt.size - 1 + EPS))


# ---------------------------------------------------------------- S-measure (Fan et al., ICCV 2017), alpha = 0.5


def _object_similarity(values: np.ndarray) -> float:
    mean = np.mean(values)
    dev = values - mean
    std = np.sqrt(np.einsum("i,i->", dev, dev) / (values.size - 1 + EPS))  # sample std; 0, not 0/0, for one pixel
    return 2 * mean / (mean * mean + 1 + std + EPS)


def _object_score(pred: np.ndarray, gt: np.ndarray) -> float:
    fg_ratio = np.mean(gt)
    return _object_similarity(pred[gt]) * fg_ratio + _object_similarity((1 - pred)[~gt]) * (1 - fg_ratio)


def _ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    n = pred.size
    x, y = np.mean(pred), np.mean(gt)
    dx, dy = pred - x, gt - y
    # EPS: a one-pixel quadrant has zero variance, not 0/0
    var_x = np.einsum("ij,ij->", dx, dx) / (n - 1 + EPS)
    var_y = np.einsum("ij,ij->", dy, dy) / (n - 1 + EPS)
    cov = np.einsum("ij,ij->", dx, dy) / (n - 1 + EPS)
    alpha = 4 * x * y * cov
    beta = (x * x + y * y) * (var_x + var_y)
    if alpha != 0:
        return alpha / (beta + EPS)
    return 1.0 if beta == 0 else 0.0


def _centroid(gt: np.ndarray) -> tuple[int, int]:
    """1-based (x, y) split point: the rounded centroid of the object (the image centre when empty)."""
    h, w = gt.shape
    rows, cols = np.nonzero(gt)
    if rows.size == 0:
        return int(np.round(w / 2)) + 1, int(np.round(h / 2)) + 1
    return int(np.round(cols.mean())) + 1, int(np.round(rows.mean())) + 1


def _region_score(pred: np.ndarray, gt: np.ndarray) -> float:
    h, w = gt.shape
    x, y = _centroid(gt)
    gt_f = gt.astype(np.float64)
    w_lt = x * y / (h * w)
    w_rt = y * (w - x) / (h * w)
    w_lb = (h - y) * x / (h * w)
    w_rb = 1 - w_lt - w_rt - w_lb
    with np.errstate(invalid="ignore", divide="ignore"):
        return (
            w_lt * _ssim(pred[:y, :x], gt_f[:y, :x])
            + w_rt * _ssim(pred[:y, x:], gt_f[:y, x:])
            + w_lb * _ssim(pred[y:, :x], gt_f[y:, :x])
            + w_rb * _ssim(pred[y:, x:], gt_f[y:, x:])
        )


def smeasure(pred: np.ndarray, gt: np.ndarray, alpha: float = 0.5) -> float:
    """Structure measure: alpha x object-aware + (1 - alpha) x region-aware similarity, clipped at 0."""
    fg_ratio = np.mean(gt)
    if fg_ratio == 0:
        return float(1 - np.mean(pred))
    if fg_ratio == 1:
        return float(np.mean(pred))
    with np.errstate(invalid="ignore", divide="ignore"):
        score = alpha * _object_score(pred, gt) + (1 - alpha) * _region_score(pred, gt)
    # A centroid on the last row or column leaves a quadrant empty and its mean undefined: the score is then NaN,
    # kept as PySODMetrics keeps it (MATLAB's max(0, NaN) would return 0).
    return float(score) if np.isnan(score) else float(max(0.0, score))


# ---------------------------------------------------------------- weighted F-measure (Margolin et al., CVPR 2014)


def _matlab_gaussian(size: int = 7, sigma: float = 5.0) -> np.ndarray:
    """MATLAB's fspecial('gaussian', size, sigma)."""
    r = (size - 1) / 2
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    k = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    k[k < np.finfo(k.dtype).eps * k.max()] = 0
    return k / k.sum()


_GAUSS_7_5 = _matlab_gaussian()


_GAUSS_RADIUS = 3  # the 7x7 kernel reaches 3 px


def weighted_fmeasure(pred: np.ndarray, gt: np.ndarray, beta: float = 1.0) -> float:
    """Weighted F-measure: errors propagated to background pixels from their nearest object pixel
    (exact Euclidean feature transform), smoothed by a 7x7 Gaussian (sigma 5), weighted by distance.

    The propagated, smoothed error is only used on object pixels, so it is computed inside the object's
    bounding box grown by the kernel radius and one pixel more (every object pixel lies inside the box, so each
    background pixel there finds the same nearest object pixel as in the whole image); the distance weights of
    all background pixels come from OpenCV's exact distance transform.
    """
    if not gt.any():
        return 0.0
    err = np.abs(pred - gt)
    rows, cols = np.nonzero(gt.any(1))[0], np.nonzero(gt.any(0))[0]
    m = _GAUSS_RADIUS + 1
    y0, y1 = max(rows[0] - m, 0), min(rows[-1] + m + 1, gt.shape[0])
    x0, x1 = max(cols[0] - m, 0), min(cols[-1] + m + 1, gt.shape[1])
    gt_box, err_box = gt[y0:y1, x0:x1], err[y0:y1, x0:x1]
    iy, ix = distance_transform_edt(~gt_box, return_distances=False, return_indices=True)
    err_prop = err_box[iy, ix]  # background pixels take their nearest object pixel's error; object pixels keep theirs
    # Every object pixel is >= 4 px inside the box, or the box meets the image border there: filtering the box
    # with a zero border gives the same values on object pixels as filtering the whole image.
    smoothed = cv2.filter2D(err_prop, cv2.CV_64F, _GAUSS_7_5, borderType=cv2.BORDER_CONSTANT)
    min_err_gt = np.minimum(smoothed[gt_box], err_box[gt_box])  # the object's errors, lowered where smoothing lowers them
    dist_bg = cv2.distanceTransform((~gt).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[~gt]
    weighted_bg = err[~gt] * (2 - np.exp(math.log(0.5) / 5 * dist_bg.astype(np.float64)))
    tp = min_err_gt.size - min_err_gt.sum()
    fp = weighted_bg.sum()
    recall = 1 - min_err_gt.mean()
    precision = tp / (tp + fp + EPS)
    return float((1 + beta) * recall * precision / (recall + beta * precision + EPS))


# ---------------------------------------------------------------- the accumulator


@dataclass
class SaliencyMetrics:
    """Accumulates MAE, S-measure, weighted F, F-measure and E-measure (adaptive, mean, max) over a dataset.

    ``update(pred, gt)`` takes uint8-range arrays (0..255) of one image, numpy or torch, same shape.
    ``compute()`` returns ``{mae, sm, wfm, adp_fm, mean_fm, max_fm, adp_em, mean_em, max_em, boundary_iou}``
    (Boundary IoU of the prediction binarised at >= 0.5, averaged over images) plus the
    curves (``precision``, ``recall``, ``fm_curve``, ``em_curve``, ascending thresholds 0..255).
    """

    beta_sq: float = BETA_SQ
    _sums: dict = field(default_factory=dict)
    _curves: dict = field(default_factory=dict)
    count: int = 0

    def reset(self) -> None:
        self._sums, self._curves, self.count = {}, {}, 0

    def update(self, pred, gt) -> dict[str, float]:
        pred_a, gt_a = _as_numpy(pred), _as_numpy(gt)
        if pred_a.shape != gt_a.shape:
            raise ValueError(f"prediction {pred_a.shape} and ground truth {gt_a.shape} differ in size")
        p, g = prepare(pred_a, gt_a)
        scores, curves = per_image_scores(p, g, self.beta_sq)
        for k, v in scores.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        for k, v in curves.items():
            self._curves[k] = self._curves.get(k, 0.0) + v
        self.count += 1
        return scores

    def merge(self, other: SaliencyMetrics) -> None:
        """Add another accumulator's state (from another worker or process)."""
        for k, v in other._sums.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        for k, v in other._curves.items():
            self._curves[k] = self._curves.get(k, 0.0) + v
        self.count += other.count

    def reduce_from_all_processes(self) -> None:
        """Sum the state over torch.distributed processes (no-op when not distributed)."""
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        keys = sorted(self._sums)
        curve_keys = sorted(self._curves)
        flat = np.concatenate([[self.count], [self._sums[k] for k in keys], *[self._curves[k] for k in curve_keys]])
        t = torch.tensor(flat, dtype=torch.float64)
        dist.all_reduce(t)
        flat = t.numpy()
        self.count = int(round(flat[0]))
        self._sums = {k: float(flat[1 + i]) for i, k in enumerate(keys)}
        off = 1 + len(keys)
        for k in curve_keys:
            self._curves[k] = flat[off : off + NUM_THRESHOLDS]
            off += NUM_THRESHOLDS

    def compute(self) -> dict:
        if self.count == 0:
            raise ValueError("no image was scored: call update() first")
        n = self.count
        mean = {k: v / n for k, v in self._sums.items()}
        curves = {k: (v / n)[::-1] for k, v in self._curves.items()}  # ascending thresholds
        return {
            "mae": mean["mae"],
            "sm": mean["sm"],
            "wfm": mean["wfm"],
            "adp_fm": mean["adp_fm"],
            "mean_fm": float(curves["fm"].mean()),
            "max_fm": float(curves["fm"].max()),
            "adp_em": mean["adp_em"],
            "mean_em": float(curves["em"].mean()),
            "max_em": float(curves["em"].max()),
            "boundary_iou": mean["boundary_iou"],
            "precision": curves["precision"],
            "recall": curves["recall"],
            "fm_curve": curves["fm"],
            "em_curve": curves["em"],
        }


def per_image_scores(pred: np.ndarray, gt: np.ndarray, beta_sq: float = BETA_SQ) -> tuple[dict, dict]:
    """All saliency scores and curves of one prepared pair (``prepare``'s output)."""
    counts = threshold_counts(pred, gt)
    precision, recall, fm = precision_recall_f(counts, beta_sq)
    scores = {
        "mae": mae(pred, gt),
        "sm": smeasure(pred, gt),
        "wfm": weighted_fmeasure(pred, gt),
        "adp_fm": adaptive_fmeasure(pred, gt, beta_sq),
        "adp_em": adaptive_emeasure(pred, gt),
        "boundary_iou": boundary_iou(pred >= 0.5, gt),
    }
    curves = {"precision": precision, "recall": recall, "fm": fm, "em": emeasure_curve(counts)}
    return scores, curves


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D map (H, W), got shape {x.shape}")
    return x
