"""The data of a qualitative comparison: rows of (image, ground truth, each method's mask), per-image scores from
``segkit.metrics``, where the methods disagree along the boundary, and the inset that shows it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from segkit.conventions import lower_is_better
from segkit.data.io import BadFileError, list_images, read_rgb
from segkit.errors import SegkitError
from segkit.metrics.boundary import boundary_band, boundary_width_px
from segkit.tasks import Task, get_task

INSET_FRACTION = 0.3  # inset side as a fraction of the image's shorter side


@dataclass
class MethodResult:
    mask: np.ndarray  # saliency: uint8 grey map; segmentation: class ids
    scores: dict[str, float] = field(default_factory=dict)  # the caption's scores, by label (MAE, maxF)
    all_scores: dict[str, float] = field(default_factory=dict)  # every score of this image, by key (mae, sm, ...)


@dataclass
class Row:
    name: str
    image: np.ndarray  # RGB uint8
    gt: np.ndarray | None
    methods: dict[str, MethodResult]
    disagreement: float = 0.0  # how much the methods differ along the boundary (sort key)
    inset: tuple[int, int, int, int] | None = None  # (y0, x0, y1, x1) in image pixels


@dataclass
class Comparison:
    task: str  # the task's name
    methods: list[str]
    rows: list[Row]
    skipped: dict[str, list[str]] = field(default_factory=dict)  # method -> images it lacks
    resized: list[str] = field(default_factory=list)
    class_names: tuple[str, ...] = ()
    num_classes: int = 0
    order: str = ""  # how the rows are ordered: "" (file order), "disagreement", or what ``select_worst`` chose


def binary(mask: np.ndarray, task: str | Task) -> np.ndarray:
    """Foreground: saliency >= 128 (i.e. probability >= 0.5), segmentation any class but background and ignore."""
    return get_task(task).foreground(mask)


def error_maps(pred: np.ndarray, gt: np.ndarray, task: str | Task) -> tuple[np.ndarray, np.ndarray]:
    """(false positives, false negatives) as the task defines them (``Task.error_maps``)."""
    return get_task(task).error_maps(pred, gt)


def disagreement_map(row: Row, task: str | Task) -> np.ndarray:
    """Where the methods differ, weighted to the boundary band: with several methods, pixels where their
    foreground decisions (class ids, for segmentation) disagree; with one, its errors against the ground truth.
    Restricted to the ground-truth boundary band (or the methods' own boundaries without ground truth)."""
    task = get_task(task)
    masks = [m.mask for m in row.methods.values()]
    h, w = row.image.shape[:2]
    d = boundary_width_px(h, w)
    if len(masks) > 1:
        labels = [task.decisions(m) for m in masks]
        differ = np.zeros((h, w), bool)
        for other in labels[1:]:
            differ |= other != labels[0]
    elif row.gt is not None:
        fp, fn = task.error_maps(masks[0], row.gt)
        differ = fp | fn
    else:
        return np.zeros((h, w), np.float32)
    if row.gt is not None:
        band = boundary_band(task.foreground(row.gt), d)
    else:
        band = np.zeros((h, w), bool)
        for m in masks:
            band |= boundary_band(task.foreground(m), d)
    return (differ & band).astype(np.float32)


def choose_inset(dis: np.ndarray, fraction: float = INSET_FRACTION) -> tuple[tuple[int, int, int, int] | None, float]:
    """The square window (side ``fraction`` of the shorter side) holding the most disagreement, and the total."""
    h, w = dis.shape
    total = float(dis.sum())
    if total == 0:
        return None, 0.0
    side = min(max(8, int(round(fraction * min(h, w)))), h, w)
    summed = cv2.boxFilter(dis, -1, (side, side), normalize=False, borderType=cv2.BORDER_CONSTANT)
    # boxFilter's anchor is the window centre; keep only centres whose window lies inside the image
    half = side // 2
    valid = summed[half : h - (side - half) + 1, half : w - (side - half) + 1]
    cy, cx = np.unravel_index(int(np.argmax(valid)), valid.shape)
    y0, x0 = int(cy), int(cx)
    return (y0, x0, y0 + side, x0 + side), total


def build_comparison(
    task: str | Task,
    images_dir: Path | str,
    methods: dict[str, Path | str | Callable[[np.ndarray], np.ndarray]],
    gt_dir: Path | str | None = None,
    num_classes: int = 21,
    class_names: tuple[str, ...] = (),
    sort: bool = False,
) -> Comparison:
    """Gather the rows. ``methods`` maps a name to a folder of masks (paired by file stem) or to a function
    image -> mask (a loaded model). Images a folder method lacks are skipped and listed; masks of another size
    are resized to the image and listed."""
    task = get_task(task)
    if not methods:
        raise SegkitError("give at least one method: --pred NAME=DIR or --checkpoint NAME=CKPT")
    images = list_images(images_dir)
    if not images:
        raise SegkitError(f"no images in '{images_dir}'")
    folders = {name: {p.stem: p for p in list_images(src)} for name, src in methods.items() if not callable(src)}
    gts = {p.stem: p for p in list_images(gt_dir)} if gt_dir else {}
    comp = Comparison(task.name, list(methods), [], {name: [] for name in methods}, [], class_names, num_classes)
    for path in images:
        row = _build_row(path, methods, folders, gts, comp)
        if row is not None:
            comp.rows.append(row)
    comp.skipped = {k: v for k, v in comp.skipped.items() if v}
    for row in comp.rows:
        row.inset, row.disagreement = choose_inset(disagreement_map(row, task))
    if sort:
        comp.rows.sort(key=lambda r: r.disagreement, reverse=True)
        comp.order = "disagreement"
    return comp


def _build_row(path: Path, methods: dict, folders: dict, gts: dict, comp: Comparison) -> Row | None:
    try:
        image = read_rgb(path)
    except BadFileError as err:
        comp.skipped.setdefault("(image)", []).append(f"{path.name}: {err.problem}")
        return None
    shape = image.shape[:2]
    task = get_task(comp.task)
    gt = None
    if path.stem in gts:
        gt = task.read_mask(gts[path.stem])
        if gt.shape != shape:
            gt = task.resize_mask(gt, shape)
            comp.resized.append(str(gts[path.stem]))
    results: dict[str, MethodResult] = {}
    for name, src in methods.items():
        if callable(src):
            mask = src(image)
        elif path.stem in folders[name]:
            mask = task.read_mask(folders[name][path.stem])
        else:
            comp.skipped[name].append(path.stem)
            return None
        if mask.shape != shape:
            mask = task.resize_mask(mask, shape)
            comp.resized.append(f"{name}/{path.stem}")
        every = task.image_scores(mask, gt, comp.num_classes) if gt is not None else {}
        caption = {label: every[key] for label, key in task.caption_keys.items()} if every else {}
        results[name] = MethodResult(mask, caption, every)
    return Row(path.stem, image, gt, results)


def select_worst(comp: Comparison, k: int, by: str | None = None) -> str:
    """Keep the ``k`` rows that fail most on score ``by`` (default: the first caption score), worst first: with
    one method, where it scores worst; with two, where they differ most; with more, where their mean is worst.
    Returns the description of the choice (also kept in ``comp.order``)."""
    task = get_task(comp.task)
    if k < 1:
        raise SegkitError(f"--worst takes a positive number of images, got {k}")
    if not any(r.gt is not None for r in comp.rows):
        raise SegkitError("--worst needs ground truth to score the images: add --gt DIR")
    from segkit.evaluation.tables import score_key

    key = score_key(task, by or next(iter(task.caption_keys)), "--by")
    sign = 1.0 if lower_is_better(key) else -1.0  # larger badness = worse

    def badness(row: Row) -> float:
        values = [row.methods[m].all_scores.get(key, float("nan")) for m in comp.methods]
        if len(values) == 2:
            return abs(values[0] - values[1])
        return sign * float(np.mean(values))

    scored = [(badness(r), i, r) for i, r in enumerate(comp.rows) if r.gt is not None]
    scored = [s for s in scored if not np.isnan(s[0])]
    scored.sort(key=lambda s: (-s[0], s[1]))
    comp.rows = [r for _, _, r in scored[:k]]
    if len(comp.methods) == 2:
        comp.order = f"the {len(comp.rows)} images where {comp.methods[0]} and {comp.methods[1]} differ most in {key}"
    elif len(comp.methods) == 1:
        comp.order = f"the {len(comp.rows)} images where {comp.methods[0]} scores worst on {key}"
    else:
        comp.order = f"the {len(comp.rows)} images with the worst {key} averaged over the methods"
    return comp.order
