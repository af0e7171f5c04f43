"""What each family of scores means, in words: the conventions behind a number (which binarisation, which
thresholds, which E-measure), for the metric card ``segkit eval`` writes (``segkit.evaluation.card``) and the model
card of a model folder. A task names its groups (``Task.conventions``)."""

from __future__ import annotations

from segkit.conventions import IGNORE_INDEX
from segkit.metrics.boundary import DILATION_RATIO
from segkit.metrics.saliency import BETA_SQ, NUM_THRESHOLDS


def saliency_conventions(num_classes: int = 1) -> dict[str, str]:
    return {
        "ground_truth": "binarised: object where the 8-bit value is > 128 (float masks: > 0.5)",
        "prediction": "8-bit map / 255, then min-max normalised per image unless constant; float maps in [0, 1] are "
        "first rounded to 8 bits, as a saved PNG",
        "thresholds": f"{NUM_THRESHOLDS} thresholds t/255, t = 0..255; a pixel is predicted object when its map "
        "value >= the threshold",
        "f_measure": f"beta^2 = {BETA_SQ}; max and mean are taken over the thresholds of the F curve averaged over "
        "images; adaptive: threshold min(2 x mean of the map, 1) per image",
        "weighted_f": "Margolin et al. (CVPR 2014): beta^2 = 1, 7x7 Gaussian with sigma 5, exact Euclidean "
        "nearest-object-pixel propagation",
        "s_measure": "Fan et al. (ICCV 2017), alpha = 0.5: object-aware and region-aware (4 quadrants at the "
        "ground truth's centroid, SSIM) terms",
        "e_measure": "Fan et al. (IJCAI 2018) enhanced alignment, as in the MATLAB toolbox and PySODMetrics 1.6: "
        "curve over the thresholds averaged over images (max, mean); adaptive at min(2 x mean, 1)",
        "mae": "mean absolute difference between the normalised map and the binary ground truth",
        "boundary_iou": f"Cheng et al. (CVPR 2021), map binarised at >= 0.5, boundary width {DILATION_RATIO:g} x "
        "image diagonal",
        "averaging": "every score is averaged over images (not pixels); curves averaged over images, then max/mean",
        "reference": "equal to PySODMetrics 1.6 to 1e-6 and to the MATLAB toolbox's published values to their 3 "
        "decimals (segkit's tests check both)",
    }


def polyp_conventions(num_classes: int = 1) -> dict[str, str]:
    return {
        "dice_iou": "as PraNet's eval/main.m and Fmeasure_calu.m: the map / 255 min-max normalised as MATLAB's "
        "mapminmax (a constant map unchanged), ground truth > 128; at each of 256 thresholds 1:-1/255:0 (MATLAB's "
        "colon) a pixel is predicted when >= the threshold; Dice = 2TP/(|G|+|P|), IoU = TP/(TP+FP+FN), both 0 when "
        "TP = 0 (even when both are empty); averaged over images per threshold, then mean (mdice, miou) or max "
        "(max_dice, max_iou) over the thresholds",
    }


def segmentation_conventions(num_classes: int) -> dict[str, str]:
    return {
        "classes": f"{num_classes} classes, label {IGNORE_INDEX} ignored",
        "iou": "per class from the dataset-wide confusion matrix (pixels of all images summed); the means leave out "
        "classes with an empty union, as mmsegmentation does",
        "boundary_iou": f"Cheng et al. (CVPR 2021) per class, boundary width {DILATION_RATIO:g} x image diagonal",
    }


CONVENTIONS = {
    "saliency": saliency_conventions,
    "polyp": polyp_conventions,
    "segmentation": segmentation_conventions,
}


def conventions(groups: tuple[str, ...], num_classes: int) -> dict[str, str]:
    """The conventions of the named groups (keys of ``CONVENTIONS``), in order, as ``name: text``."""
    return {k: v for group in groups for k, v in CONVENTIONS[group](num_classes).items()}
