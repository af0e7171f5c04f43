"""Dice and IoU as polyp segmentation papers report them: PraNet's evaluation (Fan et al., MICCAI 2020;
``eval/main.m`` and ``eval/Fmeasure_calu.m`` of DengPingFan/PraNet), which later polyp papers reuse.

Per image: the 8-bit map / 255 is min-max normalised as MATLAB's ``mapminmax(x, 0, 1)`` computes it
(``(x - min) * (1 / (max - min))``; a constant map passes unchanged), the ground truth is ``> 128``. At each of 256
thresholds ``1:-1/255:0`` (MATLAB's colon operator: from 1 down to 0 in steps of 1/255) a pixel is predicted when
its value is ``>=`` the threshold; Dice = 2 TP / (|G| + |P|) and IoU = TP / (TP + FP + FN), both 0 when there is
no true positive, even when prediction and ground truth are both empty. Each threshold's scores are averaged over
images; mean Dice (``mdice``) and mean IoU (``miou``) average that curve over the thresholds, ``max_dice`` and
``max_iou`` take its maximum. Every saliency score (S, E, weighted F, MAE ...) is reported beside them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segkit.metrics.saliency import (
    NUM_THRESHOLDS,
    PreparedPair,
    SaliencyMetrics,
    SaliencyScores,
)

_LEVELS = np.arange(256, dtype=np.float64) / 255.0


def matlab_thresholds() -> np.ndarray:
    """``1:-1/255:0`` as MATLAB's colon operator computes it: the first half counted from the start
    (``1 + k * step``), the second half from the end (``0 - (n - k) * step``), so both ends are exact."""
    step, n = -1.0 / 255.0, NUM_THRESHOLDS - 1
    k = np.arange(NUM_THRESHOLDS, dtype=np.float64)
    return np.where(k <= n // 2, 1.0 + k * step, 0.0 - (n - k) * step)


THRESHOLDS = matlab_thresholds()  # (256,) descending, 1 ... 0


def mapminmax_levels(raw: np.ndarray) -> np.ndarray:
    """(256,) the value MATLAB's ``mapminmax(im2double(raw), 0, 1)`` gives each 8-bit level of this map."""
    lo, hi = _LEVELS[raw.min()], _LEVELS[raw.max()]
    if hi == lo:  # mapminmax's fix for a zero range: gain 1, offset 0, so the values pass unchanged
        return _LEVELS.copy()
    gain = 1.0 / (hi - lo)
    return (_LEVELS - lo) * gain


def dice_iou_curves(pair: PreparedPair) -> tuple[np.ndarray, np.ndarray]:
    """One image's Dice and IoU at each of the 256 thresholds (descending), as ``Fmeasure_calu.m``."""
    values = mapminmax_levels(pair.raw)
    above = values[None, :] >= THRESHOLDS[:, None]  # (threshold, level): the level is predicted object
    tp = above @ pair.hist[:, 1]
    predicted = above @ pair.hist.sum(1)
    gt_fg = pair.truth.object_pixels
    with np.errstate(divide="ignore", invalid="ignore"):
        dice = np.where(tp > 0, 2.0 * tp / (gt_fg + predicted), 0.0)
        iou = np.where(tp > 0, tp / (gt_fg - tp + predicted), 0.0)
    return dice, iou


@dataclass(frozen=True)
class PolypScores(SaliencyScores):
    """The saliency scores plus PraNet's Dice and IoU (see the module docstring)."""

    mdice: float = 0.0
    miou: float = 0.0
    max_dice: float = 0.0
    max_iou: float = 0.0
    dice_curve: np.ndarray | None = None  # (256,) over thresholds 1 ... 0, averaged over images
    iou_curve: np.ndarray | None = None


class PolypMetrics(SaliencyMetrics):
    """``SaliencyMetrics`` with PraNet's Dice and IoU curves; ``compute()`` returns ``PolypScores``."""

    CURVE_KEYS = (*SaliencyMetrics.CURVE_KEYS, "dice", "iou")

    def image_scores_and_curves(self, pair: PreparedPair) -> tuple[dict, dict]:
        scores, curves = super().image_scores_and_curves(pair)
        curves["dice"], curves["iou"] = dice_iou_curves(pair)
        return scores, curves

    def compute(self) -> PolypScores:
        base = super().compute()
        dice, iou = self._curves["dice"] / self.count, self._curves["iou"] / self.count
        fields = {k: getattr(base, k) for k in base.__dataclass_fields__}
        return PolypScores(
            **fields,
            mdice=float(dice.mean()),
            miou=float(iou.mean()),
            max_dice=float(dice.max()),
            max_iou=float(iou.max()),
            dice_curve=dice,
            iou_curve=iou,
        )
