"""The metric card: the conventions that produced a set of scores, carried inside every result ``segkit eval``
writes, so that a number can be traced to its variant (which binarisation, which thresholds, which E-measure)."""

from __future__ import annotations

from segkit.conventions import IGNORE_INDEX
from segkit.metrics.boundary import DILATION_RATIO
from segkit.metrics.saliency import BETA_SQ, NUM_THRESHOLDS

CARD_FORMAT = "segkit-metric-card/1"


def _version() -> str:
    from segkit import __version__

    return __version__


def size_policy(labels: bool, strict_size: bool) -> str:
    """How a prediction of another size is handled; ``labels``: masks hold class ids (resized nearest)."""
    if strict_size:
        return "refused: a prediction of another size than its ground truth is not scored (--strict-size)"
    how = "nearest neighbour" if labels else "bilinear"
    return f"resized to its ground truth's size ({how}, OpenCV), then scored; each such file is listed"


def saliency_conventions() -> dict[str, str]:
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
        "reference": "equal to PySODMetrics 1.6 to 1e-10 and to the MATLAB toolbox's published values (segkit tests)",
    }


def polyp_conventions() -> dict[str, str]:
    return {
        "dice_iou": "as PraNet's eval/main.m and Fmeasure_calu.m: the map / 255 min-max normalised as MATLAB's "
        "mapminmax (a constant map unchanged), ground truth > 128; at each of 256 thresholds 1:-1/255:0 (MATLAB's "
        "colon) a pixel is predicted when >= the threshold; Dice = 2TP/(|G|+|P|), IoU = TP/(TP+FP+FN), both 0 when "
        "TP = 0 (even when both are empty); averaged over images per threshold, then mean (mdice, miou) or max "
        "(max_dice, max_iou) over the thresholds",
        "table": "PraNet's columns: mean Dice, mean IoU, weighted F, S-measure, max E-measure, MAE",
    }


def segmentation_conventions(num_classes: int) -> dict[str, str]:
    return {
        "classes": f"{num_classes} classes, label {IGNORE_INDEX} ignored",
        "iou": "per class from the dataset-wide confusion matrix (pixels of all images summed); the means leave out "
        "classes with an empty union, as mmsegmentation does",
        "boundary_iou": f"Cheng et al. (CVPR 2021) per class, boundary width {DILATION_RATIO:g} x image diagonal",
    }


def metric_card(task, strict_size: bool = False, num_classes: int = 0) -> dict:
    """The conventions of ``task``'s scores (a Task or its name) as ``segkit eval`` computes them (per-dataset
    facts are added by the caller under ``datasets``)."""
    from segkit.tasks import get_task

    task = get_task(task)
    return {
        "format": CARD_FORMAT,
        "segkit_version": _version(),
        "task": task.name,
        **task.metric_conventions(num_classes),
        "size_mismatch": size_policy(task.labels, strict_size),
    }


def card_text(card: dict) -> str:
    """The card as aligned ``key: value`` lines, per-dataset facts as a table."""
    lines = []
    width = max(len(k) for k in card)
    for key, value in card.items():
        if key == "datasets":
            continue
        lines.append(f"{key.replace('_', ' '):<{width}}  {value}")
    datasets = card.get("datasets") or {}
    if datasets:
        lines += ["", "dataset / method: images scored, missing, resized, unreadable"]
        for name, facts in datasets.items():
            lines.append(f"{name} ({facts.get('ground_truths', '?')} ground truths)")
            for method, m in facts.get("methods", {}).items():
                if m is None:
                    lines.append(f"  {method}: no folder")
                    continue
                counts = f"{m['scored']}, {len(m['missing'])}, {len(m['resized'])}, {len(m['bad'])}"
                lines.append(f"  {method}: {counts}")
    return "\n".join(lines)
