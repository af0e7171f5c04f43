"""Saliency metrics with the conventions of the MATLAB SOD toolbox (as ported by PySODMetrics 1.6).

Conventions, applied by ``prepare`` to every pair:
- ground truth is binarised at > 128 (of 0..255);
- the prediction is divided by 255, then min-max normalised per image unless its max equals its min;
- threshold curves use the 256 thresholds t/255, t = 0..255, compared with ``>=`` on the prediction quantised to
  uint8 by truncation (``uint8(pred * 255)``);
- F-measure uses beta^2 = 0.3 (``beta_sq``); the weighted F-measure uses beta^2 = 1;
- the adaptive threshold is min(2 x mean(pred), 1);
- scores are averaged over images; curves are averaged over images, then their max and mean are taken.

Why histograms: a saved prediction is uint8, so its prepared map takes at most 256 values. Every sum over pixels
that the definitions need (MAE, the threshold curves, the object and region terms of the S-measure, the adaptive
scores) is a sum over 256 levels weighted by a (level, object/background) histogram, computed once per image.
Only the weighted F-measure works on the map itself.

One exception keeps the published numbers: in an S-measure quadrant whose ground truth is uniform and whose
prediction is one constant, the standard implementation (PySODMetrics, like the MATLAB code) scores 1 when
``np.mean`` of those pixels returns the constant exactly and 0 when rounding leaves a tiny variance, while a
histogram always sees zero variance. Such quadrants are computed on their pixels as the standard does
(``_constant_quadrant_ssim``), so segkit returns the standard's value there too.

What depends on the ground truth alone (the nearest-object-pixel transform and the distance weights of the weighted
F-measure, the boundary of Boundary IoU) is kept in a ``SaliencyTruth``: scoring several methods against one ground
truth computes it once (``SaliencyMetrics.update(pred, truth)`` takes one).

Per-image formulas are pure functions of a ``PreparedPair``; ``SaliencyMetrics`` accumulates them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import ClassVar

import cv2
import numpy as np

from segkit.metrics.arrays import as_2d_numpy
from segkit.metrics.boundary import boundary_iou, boundary_width_px, mask_boundary

EPS = np.spacing(1)  # the toolbox's eps (MATLAB's eps = 2.2e-16)
BETA_SQ = 0.3  # F-measure beta^2 (Achanta et al. 2009)
NUM_THRESHOLDS = 256
_LEVELS = np.arange(256, dtype=np.float64) / 255.0  # raw uint8 level -> pred / 255


_GAUSS_RADIUS = 3  # the weighted F-measure's 7x7 kernel reaches 3 px


class SaliencyTruth:
    """A ground truth binarised (> 128), and what the scores need of it alone, each computed on first use and kept:
    score several predictions against one ``SaliencyTruth`` and those parts are computed once."""

    def __init__(self, gt: np.ndarray):
        self.mask = np.ascontiguousarray(to_bool_mask(as_2d_numpy(gt)))

    @property
    def shape(self) -> tuple[int, int]:
        return self.mask.shape

    @cached_property
    def line_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(H,) and (W,) int64: the object's pixels in each row and in each column (two OpenCV row/column sums:
        a sixth of numpy's ``count_nonzero`` along each axis here); the object's size, box and centroid come
        from them."""
        m = self.mask.view(np.uint8)
        rows = cv2.reduce(m, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()  # at most W each: no int32 overflow
        cols = cv2.reduce(m, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
        return rows.astype(np.int64), cols.astype(np.int64)

    @cached_property
    def object_pixels(self) -> int:
        return int(self.line_counts[0].sum())

    @cached_property
    def object_box(self) -> tuple[slice, slice]:
        """The object's bounding box grown by the weighted F-measure's kernel radius and one pixel more (clipped)."""
        rows, cols = (np.flatnonzero(c) for c in self.line_counts)
        m = _GAUSS_RADIUS + 1
        h, w = self.mask.shape
        return slice(max(rows[0] - m, 0), min(rows[-1] + m + 1, h)), slice(
            max(cols[0] - m, 0), min(cols[-1] + m + 1, w)
        )

    @cached_property
    def object_in_box(self) -> np.ndarray:
        """Flat indices (in ``object_box``) of the object's pixels, in row-major order."""
        return np.flatnonzero(self.mask[self.object_box])

    @cached_property
    def quadrant_codes(self) -> np.ndarray:
        """uint8 (H, W): 2 x quadrant + object, the quadrant (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right)
        split at the S-measure's ``centroid``: one 2-D histogram of (level, code) then holds every count the scores
        need."""
        x, y = self.centroid
        codes = self.mask.view(np.uint8).copy()
        codes[y:, :] += 4
        codes[:, x:] += 2
        return codes

    @cached_property
    def squared_distance(self) -> np.ndarray | None:
        """int32 (H, W): each pixel's exact squared distance to the nearest object pixel (0 on the object), or None
        where distances are too long for ``exact_squared_distance_to``."""
        return exact_squared_distance_to(self.mask)

    @cached_property
    def nearest_object_pixel(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices inside ``object_box``: the background pixels the weighted F-measure's kernel reads around
        the object, and the nearest object pixel of each (``band_nearest``; where exact squared distances are
        not available, every pixel of the box and its nearest object pixel by SciPy's transform)."""
        box = self.mask[self.object_box]
        found = None if self.squared_distance is None else band_nearest(box, self.squared_distance[self.object_box])
        if found is None:
            return np.arange(box.size, dtype=np.intp), _feature_transform(box).ravel()
        return found

    @cached_property
    def background_weight(self) -> np.ndarray:
        """The weighted F-measure's weight 2 - exp(ln(0.5) / 5 * distance to the object): 1 on the object."""
        squared = self.squared_distance
        if squared is not None:  # integers: the weight of each looked up in one table shared by every image
            return np.take(_distance_weights(int(squared.max(initial=0))), squared)
        from scipy.ndimage import distance_transform_edt  # only for distances beyond _ROUNDING_SAFE_PX

        return _distance_weight(distance_transform_edt(~self.mask))

    @cached_property
    def centroid(self) -> tuple[int, int]:
        """The S-measure's split point (1-based x, y): the object's rounded centroid."""
        return _centroid_from_counts(*self.line_counts)

    @cached_property
    def boundary(self) -> np.ndarray:
        """Boundary IoU's inner boundary of the object (width from the image's diagonal)."""
        return mask_boundary(self.mask, boundary_width_px(*self.mask.shape))


def exact_squared_distance_to(mask: np.ndarray) -> np.ndarray | None:
    """The squared Euclidean distance (an integer, int32) of every pixel to the nearest ``mask`` pixel, or None
    where distances reach ``_ROUNDING_SAFE_PX`` (the caller then uses SciPy's exact transform). OpenCV's "precise"
    transform is 4 times faster than SciPy's but returns float32 values up to 4e-6 off that vary from run to run in
    the last bits (measured); their squares, taken in float32 too, are within 0.02 of the true integer, so rounding
    them recovers it exactly, the same on every run. Beyond ``_ROUNDING_SAFE_PX`` float32 is too coarse for that."""
    distance = cv2.distanceTransform((~mask).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    if distance.size and distance.max() > _ROUNDING_SAFE_PX:
        return None
    return cv2.multiply(distance, distance, dtype=cv2.CV_32S)  # the float32 square rounded to the nearest integer


def exact_distance_to(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (float64) of every pixel to the nearest ``mask`` pixel, exactly as a feature transform
    gives it (sqrt of an integer): ``exact_squared_distance_to``, else SciPy's exact transform."""
    squared = exact_squared_distance_to(mask)
    if squared is None:
        from scipy.ndimage import distance_transform_edt  # only for distances beyond _ROUNDING_SAFE_PX

        return distance_transform_edt(~mask)
    return np.sqrt(squared, dtype=np.float64)


def _feature_transform(box: np.ndarray) -> np.ndarray:
    """The flat index (in ``box``) of every pixel's nearest ``box`` pixel by SciPy's exact feature transform: the
    slower way, for a ground truth whose distances ``exact_squared_distance_to`` cannot give."""
    from scipy.ndimage import distance_transform_edt

    iy, ix = distance_transform_edt(~box, return_distances=False, return_indices=True)
    np.multiply(iy, box.shape[1], out=iy)  # in place: the flat index iy * width + ix
    np.add(iy, ix, out=iy)
    return iy.astype(np.intp)


# The band the weighted F-measure's 7x7 kernel reads around the object: pixels within 3 px of an object pixel
# along both axes, so within a squared distance of 18.
_BAND_SQUARED = 2 * _GAUSS_RADIUS**2
_BAND_REACH = math.isqrt(_BAND_SQUARED)  # the farthest a band pixel's nearest object pixel lies along one axis


def _offsets_by_squared_distance(limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(limit + 1, n) row and column offsets: row k lists every (dy, dx) with dy^2 + dx^2 = k, ordered by dx, then
    dy (the order in which SciPy's feature transform breaks ties between equally near pixels: the leftmost column,
    then the top row), padded by repeating its last entry (an empty row: (0, 0))."""
    reach = math.isqrt(limit)
    rows: list[list[tuple[int, int]]] = [[] for _ in range(limit + 1)]
    for dx in range(-reach, reach + 1):
        for dy in range(-reach, reach + 1):
            if dy * dy + dx * dx <= limit:
                rows[dy * dy + dx * dx].append((dy, dx))
    rows = [r or [(0, 0)] for r in rows]
    width = max(len(r) for r in rows)
    table = np.array([r + r[-1:] * (width - len(r)) for r in rows], dtype=np.intp)  # (limit + 1, width, 2)
    return table[..., 0], table[..., 1]


_TIE_DY, _TIE_DX = _offsets_by_squared_distance(_BAND_SQUARED)


def band_nearest(mask: np.ndarray, squared: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The flat indices of the background pixels of ``mask`` within a squared distance of ``_BAND_SQUARED``, and
    of each one's nearest ``mask`` pixel: the one SciPy's exact feature transform picks (the tests check it against
    SciPy, ties included); None if ``squared`` (exact integer squared distances to ``mask``) does not fit ``mask``.

    With the exact distance known, the nearest pixel is one of the few offsets at that distance (at most 8 within
    the band): the first of them, in SciPy's tie order, that lands on the mask. Searched for the band's pixels
    alone it costs a quarter or less of SciPy's transform of the object's box (0.36 against 1.3-1.7 ms, 400 x 300)."""
    band = np.flatnonzero(cv2.inRange(squared, 1, _BAND_SQUARED))
    if not band.size:
        return band, band
    h, w = mask.shape
    r = _BAND_REACH
    padded = np.zeros((h + 2 * r, w + 2 * r), np.bool_)  # offsets off the mask's edge land on background
    padded[r : r + h, r : r + w] = mask
    k = squared.ravel()[band]
    rows, cols = np.divmod(band, w)
    dy, dx = _TIE_DY[k], _TIE_DX[k]  # (n, candidates)
    hits = padded.ravel()[((rows + r) * (w + 2 * r) + cols + r)[:, None] + dy * (w + 2 * r) + dx]
    first = hits.argmax(1)
    pick = np.arange(band.size), first
    if not hits[pick].all():  # not exact distances: the caller takes SciPy's transform
        return None
    return band, band + dy[pick] * w + dx[pick]


def _distance_weight(distance: np.ndarray) -> np.ndarray:
    """The weighted F-measure's 2 - exp(ln(0.5) / 5 * distance), elementwise (float64)."""
    weight = np.multiply(distance, math.log(0.5) / 5)
    np.exp(weight, out=weight)
    return np.subtract(2.0, weight, out=weight)


_WEIGHTS_BY_SQUARE = np.empty(0)


def _distance_weights(max_square: int) -> np.ndarray:
    """``_distance_weight(sqrt(k))`` for every integer k up to ``max_square`` at least: one table, grown as larger
    images come, shared by every ground truth (each entry is what the elementwise formula gives, bit for bit)."""
    global _WEIGHTS_BY_SQUARE
    if _WEIGHTS_BY_SQUARE.size <= max_square:
        size = max(max_square + 1, 2 * _WEIGHTS_BY_SQUARE.size, 1 << 16)
        _WEIGHTS_BY_SQUARE = _distance_weight(np.sqrt(np.arange(size, dtype=np.float64)))
    return _WEIGHTS_BY_SQUARE


# float32 distances D carry about 1 ulp = D * 2^-23 of error, so D^2 about 2 D^2 2^-23, and squaring in float32
# adds half an ulp of D^2 (D^2 2^-24): below 0.5 up to 1295 px
_ROUNDING_SAFE_PX = 1000


@dataclass(frozen=True)
class PreparedPair:
    """One prediction / ground-truth pair after the conventions, with its level histogram."""

    raw: np.ndarray  # (H, W) uint8 prediction as saved
    gt: np.ndarray  # (H, W) bool, ground truth > 128
    values: np.ndarray  # (256,) prepared value (in [0, 1]) of each raw level
    pred: np.ndarray  # (H, W) float64 in [0, 1]: the prepared prediction, values[raw]
    hist: np.ndarray  # (256, 2) pixel counts per raw level on background (column 0) and object (column 1)
    truth: SaliencyTruth  # the ground truth's own parts, shared by every prediction scored against it
    quadrants: np.ndarray  # (4, 256, 2): ``hist`` of each S-measure quadrant (``SaliencyTruth.quadrant_codes``)

    @property
    def size(self) -> int:
        return self.gt.size

    @cached_property
    def adaptive_counts(self) -> tuple[int, int]:
        """(object pixels, background pixels) predicted >= the adaptive threshold (both adaptive scores use them)."""
        selected = self.values >= adaptive_threshold(self)
        return int(self.hist[selected, 1].sum()), int(self.hist[selected, 0].sum())


def to_uint8_prediction(pred: np.ndarray) -> np.ndarray:
    """uint8 arrays as they are; floating arrays are probabilities in [0, 1], quantised as a saved PNG would be."""
    if pred.dtype == np.uint8:
        return pred
    if np.issubdtype(pred.dtype, np.floating):
        return np.clip(np.round(pred * 255), 0, 255).astype(np.uint8)
    if pred.min() < 0 or pred.max() > 255:
        raise ValueError(f"integer predictions must lie in 0..255, got {pred.min()}..{pred.max()}")
    return pred.astype(np.uint8)


def to_bool_mask(gt: np.ndarray) -> np.ndarray:
    """bool as it is; uint8/integer masks binarised at > 128; floating masks (0..1) at > 0.5."""
    if gt.dtype == np.bool_:
        return gt
    if np.issubdtype(gt.dtype, np.floating):
        return gt > 0.5
    return gt > 128


def prepare(pred: np.ndarray, gt: np.ndarray | SaliencyTruth) -> PreparedPair:
    """Apply the conventions to a prediction (uint8, or probabilities) and a ground truth of the same shape (an
    array, or a ``SaliencyTruth`` shared with other predictions)."""
    raw = to_uint8_prediction(pred)
    truth = gt if isinstance(gt, SaliencyTruth) else SaliencyTruth(gt)
    gt_bool = truth.mask
    raw = np.ascontiguousarray(raw)
    if raw.size == 0:
        raise ValueError("the prediction has no pixels (an empty image cannot be scored)")
    quadrants = quadrant_hists(raw, truth.quadrant_codes)
    hist = quadrants.sum(0)
    present = np.flatnonzero(hist.any(1))
    lo, hi = _LEVELS[present[0]], _LEVELS[present[-1]]  # the map's min and max, read off the histogram
    values = _LEVELS if hi == lo else (_LEVELS - lo) / (hi - lo)  # elementwise as on the map: same bits
    pred_map = cv2.LUT(raw, values)  # values[raw], by OpenCV's table lookup (7x numpy's gather here)
    return PreparedPair(raw, gt_bool, values, pred_map, hist, truth, quadrants)


_FLOAT32_EXACT_COUNT = 2**24  # OpenCV's histograms count in float32: exact below 2^24 pixels


def quadrant_hists(raw: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(4, 256, 2) int64: pixels of each raw level by quadrant and background/object (``codes``: 2 x quadrant +
    object), in one pass over the image."""
    if raw.size < _FLOAT32_EXACT_COUNT:
        counts = cv2.calcHist([raw, codes], [0, 1], None, [256, 8], [0, 256, 0, 8])  # (level, code)
        return counts.astype(np.int64).reshape(256, 4, 2).transpose(1, 0, 2)
    joint = np.bincount((raw.astype(np.int64) * 8 + codes).ravel(), minlength=256 * 8)
    return joint.reshape(256, 4, 2).transpose(1, 0, 2)


def mae(pair: PreparedPair) -> float:
    """Mean absolute error between the prepared prediction and the binary ground truth."""
    bg, fg = pair.hist[:, 0], pair.hist[:, 1]
    return float((np.dot(fg, 1 - pair.values) + np.dot(bg, pair.values)) / pair.size)


def adaptive_threshold(pair: PreparedPair) -> float:
    """Twice the mean saliency, capped at 1 (Achanta et al., CVPR 2009)."""
    return min(2.0 * float(pair.pred.mean()), 1.0)


# ---------------------------------------------------------------- threshold curves (histograms + cumulative sums)


@dataclass(frozen=True)
class ThresholdCounts:
    """Per-threshold pixel counts, index k = threshold (255 - k)/255 (descending thresholds)."""

    tp: np.ndarray  # predicted >= t and gt foreground
    fp: np.ndarray  # predicted >= t and gt background
    gt_fg: int
    size: int


def threshold_counts(pair: PreparedPair) -> ThresholdCounts:
    """Counts for all 256 thresholds at once: the level histogram re-binned by quantised value, cumulated from the
    top threshold down."""
    quantised = (pair.values * 255).astype(np.uint8)  # each level's uint8(pred * 255)
    fg = np.bincount(quantised, weights=pair.hist[:, 1], minlength=NUM_THRESHOLDS).astype(np.int64)
    bg = np.bincount(quantised, weights=pair.hist[:, 0], minlength=NUM_THRESHOLDS).astype(np.int64)
    tp = np.cumsum(fg[::-1])
    fp = np.cumsum(bg[::-1])
    return ThresholdCounts(tp=tp, fp=fp, gt_fg=int(tp[-1]), size=pair.size)


def precision_recall_f(counts: ThresholdCounts, beta_sq: float = BETA_SQ) -> tuple[np.ndarray, ...]:
    """Precision, recall and F-measure curves (descending thresholds)."""
    predicted = counts.tp + counts.fp
    precision = counts.tp / np.where(predicted == 0, 1, predicted)
    recall = counts.tp / max(counts.gt_fg, 1)
    numerator = (1 + beta_sq) * precision * recall
    denominator = np.where(numerator == 0, 1, beta_sq * precision + recall)
    return precision, recall, numerator / denominator


def adaptive_fmeasure(pair: PreparedPair, beta_sq: float = BETA_SQ) -> float:
    """F-measure at the adaptive threshold; 0 when nothing predicted overlaps the object."""
    intersection, false_pos = pair.adaptive_counts
    if intersection == 0:
        return 0.0
    precision = intersection / (intersection + false_pos)
    recall = intersection / pair.truth.object_pixels
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


def adaptive_emeasure(pair: PreparedPair) -> float:
    """E-measure of the prediction binarised at the adaptive threshold."""
    fg_fg, fg_bg = pair.adaptive_counts
    gt_fg = pair.truth.object_pixels
    return float(_enhanced_alignment_sum(fg_fg, fg_bg, gt_fg, pair.size) / (pair.size - 1 + EPS))


# ---------------------------------------------------------------- S-measure (Fan et al., ICCV 2017), alpha = 0.5


def _object_similarity(values: np.ndarray, counts: np.ndarray) -> float:
    """2 mean / (mean^2 + 1 + std + eps) of a region whose pixels take ``values`` ``counts`` times."""
    n = counts.sum()
    mean = np.dot(counts, values) / n
    dev = values - mean
    std = np.sqrt(np.dot(counts, dev * dev) / (n - 1 + EPS))  # sample std; 0, not 0/0, for one pixel
    return 2 * mean / (mean * mean + 1 + std + EPS)


def _object_score(pair: PreparedPair) -> float:
    fg_ratio = pair.truth.object_pixels / pair.size
    fg = _object_similarity(pair.values, pair.hist[:, 1])
    bg = _object_similarity(1 - pair.values, pair.hist[:, 0])
    return fg * fg_ratio + bg * (1 - fg_ratio)


def _ssim(values: np.ndarray, hist: np.ndarray) -> float:
    """The SSIM-like region term of one quadrant from its (level, object) histogram."""
    bg, fg = hist[:, 0], hist[:, 1]
    count = bg + fg
    n = count.sum()
    n_fg = fg.sum()
    x = np.dot(count, values) / n
    y = n_fg / n
    dx = values - x
    # EPS: a one-pixel quadrant has zero variance, not 0/0
    var_x = np.dot(count, dx * dx) / (n - 1 + EPS)
    var_y = (n_fg * (1 - y) ** 2 + (n - n_fg) * y * y) / (n - 1 + EPS)
    cov = np.dot(dx, fg * (1 - y) - bg * y) / (n - 1 + EPS)
    alpha = 4 * x * y * cov
    beta = (x * x + y * y) * (var_x + var_y)
    if alpha != 0:
        return alpha / (beta + EPS)
    return 1.0 if beta == 0 else 0.0


def _centroid_from_counts(row_counts: np.ndarray, col_counts: np.ndarray) -> tuple[int, int]:
    """1-based (x, y) split point: the rounded centroid of the object (the image centre when empty), from the
    object's pixel counts per row and per column."""
    h, w = row_counts.size, col_counts.size
    n = row_counts.sum()
    if n == 0:
        return int(np.round(w / 2)) + 1, int(np.round(h / 2)) + 1
    # integer sums, so the mean equals the mean of the pixels' coordinates exactly
    x = np.dot(np.arange(w), col_counts) / n
    y = np.dot(np.arange(h), row_counts) / n
    return int(np.round(x)) + 1, int(np.round(y)) + 1


def _constant_quadrant_ssim(pred: np.ndarray, gt_value: float) -> float:
    """The region term of a quadrant whose prediction is one constant and whose ground truth is uniform, computed
    on the pixels as the standard implementation does: its ``alpha == 0 and beta == 0`` branch gives 1 only when
    ``np.mean`` of the constant pixels returns the constant exactly (zero variance), and 0 otherwise."""
    n = pred.size
    x = np.mean(pred)
    var_x = np.sum((pred - x) ** 2) / (n - 1 + EPS)
    beta = (x * x + gt_value * gt_value) * var_x
    return 1.0 if beta == 0 else 0.0


def _quadrant_ssim(pair: PreparedPair, quadrant: int, rows: slice, cols: slice) -> float:
    hist = pair.quadrants[quadrant]
    levels, n_fg = np.count_nonzero(hist.sum(1)), hist[:, 1].sum()
    if levels == 1 and (n_fg == 0 or n_fg == hist.sum()):
        return _constant_quadrant_ssim(pair.pred[rows, cols], 1.0 if n_fg else 0.0)
    return _ssim(pair.values, hist)


def _region_score(pair: PreparedPair) -> float:
    h, w = pair.gt.shape
    x, y = pair.truth.centroid
    w_lt = x * y / (h * w)
    w_rt = y * (w - x) / (h * w)
    w_lb = (h - y) * x / (h * w)
    w_rb = 1 - w_lt - w_rt - w_lb
    top, bottom, left, right = slice(None, y), slice(y, None), slice(None, x), slice(x, None)
    return (
        w_lt * _quadrant_ssim(pair, 0, top, left)
        + w_rt * _quadrant_ssim(pair, 1, top, right)
        + w_lb * _quadrant_ssim(pair, 2, bottom, left)
        + w_rb * _quadrant_ssim(pair, 3, bottom, right)
    )


def smeasure(pair: PreparedPair, alpha: float = 0.5) -> float:
    """Structure measure: alpha x object-aware + (1 - alpha) x region-aware similarity, clipped at 0."""
    n_fg = pair.truth.object_pixels
    if n_fg == 0:
        return float(1 - pair.pred.mean())
    if n_fg == pair.size:
        return float(pair.pred.mean())
    with np.errstate(invalid="ignore", divide="ignore"):
        score = alpha * _object_score(pair) + (1 - alpha) * _region_score(pair)
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


def _gaussian_1d(size: int = 7, sigma: float = 5.0) -> np.ndarray:
    """The normalised 1-D Gaussian whose outer product with itself is ``_matlab_gaussian(size, sigma)`` where that
    kernel has no entry under MATLAB's cut-off (eps x its max), as for 7 x 7, sigma 5 (tests check it)."""
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-x * x / (2 * sigma * sigma))
    return g / g.sum()


_GAUSS_7_5 = _matlab_gaussian()
_GAUSS_7_5_1D = _gaussian_1d()


def weighted_fmeasure(pair: PreparedPair, beta_sq: float = 1.0) -> float:
    """Weighted F-measure: errors propagated to background pixels from their nearest object pixel
    (exact Euclidean feature transform), smoothed by a 7x7 Gaussian (sigma 5), weighted by distance.

    The propagated, smoothed error is only used on object pixels, so it is computed inside the object's
    bounding box grown by the kernel radius and one pixel more, and only the background pixels the kernel reads
    from an object pixel (within 3 px along both axes) take their nearest object pixel's error, found as SciPy's
    transform finds it (``band_nearest``); the distance weights of all background pixels come from OpenCV's
    exact distance transform, rounded to the exact squares.
    """
    truth = pair.truth
    n_fg = truth.object_pixels
    if n_fg == 0:
        return 0.0
    # |pred - gt| is 1 - pred on an object pixel, and a background pixel takes its nearest object pixel's error:
    # each object pixel keeps its level, each pixel of the band the kernel reads takes its nearest object pixel's
    # (the rest of the box is never read on an object pixel), then 1 - pred is looked up by level.
    nearest_level = pair.raw[truth.object_box].copy()
    band, nearest = truth.nearest_object_pixel
    flat = nearest_level.ravel()
    flat[band] = flat[nearest]
    err_prop = cv2.LUT(nearest_level, 1.0 - pair.values)
    # Every object pixel is >= 4 px inside the box, or the box meets the image border there: filtering the box
    # with a zero border gives the same values on object pixels as filtering the whole image. The kernel is the
    # outer product of two 1-D Gaussians (no entry falls below MATLAB's cut-off), so it is applied as two.
    smoothed = cv2.sepFilter2D(err_prop, cv2.CV_64F, _GAUSS_7_5_1D, _GAUSS_7_5_1D, borderType=cv2.BORDER_CONSTANT)
    on_object = truth.object_in_box
    # object errors, lowered where smoothing lowers them
    min_err_fg = np.minimum(smoothed.ravel().take(on_object), err_prop.ravel().take(on_object))
    # Background error is the prediction itself; its weight 2 - exp(ln(0.5) / 5 * distance) is 1 on the object
    # (distance 0), so the background sum is the whole-image sum minus the object's prediction sum.
    fp = np.einsum("ij,ij->", pair.pred, truth.background_weight) - np.dot(pair.hist[:, 1], pair.values)
    tp = n_fg - min_err_fg.sum()
    recall = 1 - min_err_fg.mean()
    precision = tp / (tp + fp + EPS)
    return float((1 + beta_sq) * recall * precision / (recall + beta_sq * precision + EPS))


# ---------------------------------------------------------------- results and the accumulator


@dataclass(frozen=True)
class SaliencyCurves:
    """Dataset curves over the 256 thresholds t/255, ascending (index t)."""

    precision: np.ndarray
    recall: np.ndarray
    fmeasure: np.ndarray  # F-measure with beta^2 = 0.3
    emeasure: np.ndarray


@dataclass(frozen=True)
class SaliencyScores:
    """Dataset scores (means over images; mean/max F and E from the mean curves) and the curves apart."""

    mae: float
    sm: float  # S-measure, alpha = 0.5
    wfm: float  # weighted F-measure
    adp_fm: float
    mean_fm: float
    max_fm: float
    adp_em: float
    mean_em: float
    max_em: float
    boundary_iou: float  # of the prediction binarised at >= 0.5
    curves: SaliencyCurves
    count: int  # images scored

    def scalars(self) -> dict[str, float]:
        """Every scalar score by its key (``mae``, ``sm``, ...), in table order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.type == "float"}

    def to_json(self) -> dict:
        return {**self.scalars(), "count": self.count}


@dataclass
class SaliencyMetrics:
    """Accumulates MAE, S-measure, weighted F, F-measure and E-measure (adaptive, mean, max) over a dataset.

    ``update(pred, gt)`` takes one image's maps, numpy or torch (CPU or CUDA), same shape: the prediction as uint8
    (0..255, as saved) or as probabilities in [0, 1] (quantised as a saved PNG would be); the ground truth as uint8
    (> 128 is object), bool, or floats in [0, 1] (> 0.5).
    ``compute()`` returns ``SaliencyScores``: mae, sm, wfm, adp/mean/max F and E, boundary_iou (of the prediction
    binarised at >= 0.5, averaged over images) and, apart, the curves (ascending thresholds 0..255).
    """

    # what update() accumulates (the per-image scores, and the curves over NUM_THRESHOLDS thresholds): the fixed
    # layout of the cross-process reduction
    SCORE_KEYS: ClassVar[tuple[str, ...]] = ("mae", "sm", "wfm", "adp_fm", "adp_em", "boundary_iou")
    CURVE_KEYS: ClassVar[tuple[str, ...]] = ("precision", "recall", "fm", "em")
    beta_sq: float = BETA_SQ
    _sums: dict = field(default_factory=dict)
    _curves: dict = field(default_factory=dict)
    count: int = 0

    def reset(self) -> None:
        self._sums, self._curves, self.count = {}, {}, 0

    def update(self, pred, gt) -> dict[str, float]:
        """Add one image; ``gt`` may be a ``SaliencyTruth`` shared with other methods' predictions."""
        pred_a = as_2d_numpy(pred)
        truth = gt if isinstance(gt, SaliencyTruth) else SaliencyTruth(gt)
        if pred_a.shape != truth.shape:
            raise ValueError(f"prediction {pred_a.shape} and ground truth {truth.shape} differ in size")
        scores, curves = self.image_scores_and_curves(prepare(pred_a, truth))
        for k, v in scores.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        for k, v in curves.items():
            self._curves[k] = self._curves.get(k, 0.0) + v
        self.count += 1
        return scores

    def image_scores_and_curves(self, pair: PreparedPair) -> tuple[dict, dict]:
        """One prepared image's scores (averaged over images) and curves (averaged per threshold); a subclass
        adds its own (``segkit.metrics.polyp``)."""
        return per_image_scores(pair, self.beta_sq)

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
        # one layout on every process, whatever each has seen: a process with no image sends zeros
        keys, curve_keys = self.SCORE_KEYS, self.CURVE_KEYS
        unknown = (set(self._sums) - set(keys)) | (set(self._curves) - set(curve_keys))
        if unknown:
            raise ValueError(f"{type(self).__name__} holds {sorted(unknown)}, which its SCORE_KEYS/CURVE_KEYS omit")
        zeros = np.zeros(NUM_THRESHOLDS)
        flat = np.concatenate(
            [[self.count], [self._sums.get(k, 0.0) for k in keys], *[self._curves.get(k, zeros) for k in curve_keys]]
        )
        t = torch.tensor(flat, dtype=torch.float64)
        dist.all_reduce(t)
        flat = t.numpy()
        self.count = int(round(flat[0]))
        self._sums = {k: float(flat[1 + i]) for i, k in enumerate(keys)}
        off = 1 + len(keys)
        self._curves = {}
        for k in curve_keys:
            self._curves[k] = flat[off : off + NUM_THRESHOLDS].copy()
            off += NUM_THRESHOLDS

    def compute(self) -> SaliencyScores:
        if self.count == 0:
            raise ValueError("no image was scored: call update() first")
        n = self.count
        mean = {k: v / n for k, v in self._sums.items()}
        curves = {k: (v / n)[::-1] for k, v in self._curves.items()}  # ascending thresholds
        return SaliencyScores(
            mae=mean["mae"],
            sm=mean["sm"],
            wfm=mean["wfm"],
            adp_fm=mean["adp_fm"],
            mean_fm=float(curves["fm"].mean()),
            max_fm=float(curves["fm"].max()),
            adp_em=mean["adp_em"],
            mean_em=float(curves["em"].mean()),
            max_em=float(curves["em"].max()),
            boundary_iou=mean["boundary_iou"],
            curves=SaliencyCurves(curves["precision"], curves["recall"], curves["fm"], curves["em"]),
            count=n,
        )


def binarised(pair: PreparedPair, threshold: float) -> np.ndarray:
    """(H, W) bool: the prepared prediction >= ``threshold``. The prepared value grows with the raw level, so
    that is the raw level >= the first level whose value reaches the threshold: one OpenCV threshold (a ninth of
    a table lookup's time here)."""
    reaching = np.flatnonzero(pair.values >= threshold)
    level = int(reaching[0]) if reaching.size else 256
    return cv2.threshold(pair.raw, level - 1, 1, cv2.THRESH_BINARY)[1].view(np.bool_)


def per_image_scores(pair: PreparedPair, beta_sq: float = BETA_SQ) -> tuple[dict, dict]:
    """All saliency scores and curves of one prepared pair."""
    counts = threshold_counts(pair)
    precision, recall, fm = precision_recall_f(counts, beta_sq)
    scores = {
        "mae": mae(pair),
        "sm": smeasure(pair),
        "wfm": weighted_fmeasure(pair),
        "adp_fm": adaptive_fmeasure(pair, beta_sq),
        "adp_em": adaptive_emeasure(pair),
        "boundary_iou": boundary_iou(binarised(pair, 0.5), None, gt_boundary=pair.truth.boundary),
    }
    curves = {"precision": precision, "recall": recall, "fm": fm, "em": emeasure_curve(counts)}
    return scores, curves
