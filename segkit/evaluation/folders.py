"""Scoring folders of saved masks: pairing by file stem, parallel reading and scoring, each ground truth read once
for every method scored against it."""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from segkit.accel.memory import keep_freed_memory
from segkit.data.io import BadFileError, list_images, will_read
from segkit.errors import SegkitError
from segkit.metrics.saliency import SaliencyMetrics, SaliencyScores
from segkit.metrics.segmentation import SegmentationMetrics, SegmentationScores
from segkit.tasks import get_task

# Suffixes that published saliency maps carry after the image's stem (DSS writes 0001_sal_fuse.png, others
# 0001_sal.png, 0001_pred.png ...). A prediction pairs with its ground truth by exact stem first, then by one of
# these, never by any other prefix: ``cat_2.png`` is not ``cat``'s prediction.
PREDICTION_SUFFIXES = ("_sal_fuse", "_sal", "_fuse", "_pred", "_prediction", "_mask", "_saliency", "_out", "_res")
# Which file of a stem is used when one folder holds several (lossless first).
_FORMAT_PREFERENCE = (".png", ".bmp", ".tif", ".tiff", ".webp", ".jpg", ".jpeg")


@dataclass
class Pairing:
    pairs: list[tuple[Path, Path]]  # (prediction, ground truth)
    missing: list[str] = field(default_factory=list)  # ground-truth stems with no prediction
    notes: list[str] = field(default_factory=list)  # duplicates and ambiguous names, said once per run
    extra: list[str] = field(default_factory=list)  # predictions no ground truth pairs with (not scored)


def files_by_stem(folder: Path, notes: list[str]) -> dict[str, Path]:
    """One file per stem; a stem present in several formats (0000.png and 0000.jpg) keeps the lossless one and
    is noted, never counted twice."""
    by_stem: dict[str, list[Path]] = {}
    for path in list_images(folder):
        by_stem.setdefault(path.stem, []).append(path)
    chosen = {}
    for stem, paths in by_stem.items():
        paths.sort(key=lambda p: _FORMAT_PREFERENCE.index(p.suffix.lower()) if p.suffix.lower() in
                   _FORMAT_PREFERENCE else len(_FORMAT_PREFERENCE))  # fmt: skip
        chosen[stem] = paths[0]
        if len(paths) > 1:
            notes.append(f"'{folder}' holds {stem} in {len(paths)} formats; used {paths[0].name}, ignored "
                         + ", ".join(p.name for p in paths[1:]))  # fmt: skip
    return chosen


def listed_by_stem(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """``files_by_stem`` of a folder and its notes."""
    notes: list[str] = []
    return files_by_stem(folder, notes), notes


def pair_by_stem(pred_dir: Path, gt_dir: Path, gt_listing: tuple[dict[str, Path], list[str]] | None = None) -> Pairing:
    """Pair each ground-truth file with the prediction of the same stem, else of the stem plus one of
    ``PREDICTION_SUFFIXES``; a prediction is used for one ground truth at most. ``gt_listing``:
    ``listed_by_stem(gt_dir)`` made once for several methods."""
    gts, gt_notes = gt_listing or listed_by_stem(gt_dir)
    notes = list(gt_notes)
    if not gts:
        raise SegkitError(f"ground-truth folder '{gt_dir}' holds no image files")
    preds = files_by_stem(pred_dir, notes)
    pairs, missing, used = [], [], set()
    for stem, gt in sorted(gts.items()):
        candidates = [stem] + [stem + suffix for suffix in PREDICTION_SUFFIXES]
        found = [preds[c] for c in candidates if c in preds and c not in used]
        if not found:
            missing.append(stem)
            continue
        if len(found) > 1:
            notes.append(f"{stem} has several predictions ({', '.join(p.name for p in found)}); used {found[0].name}")
        used.add(found[0].stem)
        pairs.append((found[0], gt))
    extra = sorted(p.name for stem, p in preds.items() if stem not in used)
    return Pairing(pairs, missing, notes, extra)


# Ground truths ahead of the one being scored whose files (with their predictions) are asked for (``will_read``)
READ_AHEAD = 16


@dataclass(frozen=True)
class Job:
    """Ground truths of one dataset, each with the predictions (one per method) to score against it."""

    task: str  # the task's name (a worker process looks it up)
    items: list[tuple[Path, dict[str, Path]]]  # (ground truth, {method: prediction})
    methods: tuple[str, ...]
    num_classes: int = 0
    strict_size: bool = False
    dataset: str = ""


@dataclass
class ChunkResult:
    metrics: SaliencyMetrics | SegmentationMetrics
    resized: list[str] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)
    surprising: list[tuple[str, str]] = field(default_factory=list)  # ground truths whose values read oddly

    def merge(self, other: ChunkResult) -> None:
        self.metrics.merge(other.metrics)
        self.resized += other.resized
        self.bad += other.bad
        self.surprising += other.surprising


def _single_threaded() -> None:
    """Set up a worker: one thread (the parallelism is across images; nested thread pools only contend), and
    freed memory kept in the heap (``keep_freed_memory``), so the per-image temporaries (about 1 MB each) are not
    mapped and unmapped, page fault by page fault, for every image (1,000 pairs: system time 1.8 s -> 0.2 s)."""
    cv2.setNumThreads(1)
    keep_freed_memory()


def _score_chunk(job: Job) -> tuple[Job, dict[str, ChunkResult]]:
    """Each ground truth is read (and its own parts computed) once, then every method's prediction is scored."""
    task = get_task(job.task)
    out = {m: ChunkResult(task.metrics(job.num_classes)) for m in job.methods}
    items = job.items
    will_read(path for item in items[:READ_AHEAD] for path in _files(item))
    for i, (gt_path, preds) in enumerate(items):
        if i + READ_AHEAD < len(items):
            will_read(_files(items[i + READ_AHEAD]))  # a window, so a chunk of large files never floods the cache
        try:
            gt = task.read_mask(gt_path)
        except BadFileError as err:
            for m in preds:
                out[m].bad.append((err.path, err.problem))
            continue
        surprise = task.mask_surprise(gt, gt_path)
        truth = task.truth(gt)  # what the scores need of the ground truth alone, computed once
        for method, pred_path in preds.items():
            if surprise:
                out[method].surprising.append((str(gt_path), surprise))
            _score_pair(task, pred_path, gt, truth, job.strict_size, out[method])
    return job, out


def _files(item: tuple[Path, dict[str, Path]]) -> tuple[Path, ...]:
    """A ground truth's file and its predictions'."""
    return (item[0], *item[1].values())


def _score_pair(task, pred_path: Path, gt: np.ndarray, truth, strict_size: bool, out: ChunkResult) -> None:
    try:
        pred = task.read_mask(pred_path)
    except BadFileError as err:
        out.bad.append((err.path, err.problem))
        return
    if pred.shape[:2] != gt.shape[:2]:
        sizes = f"{_wxh(pred)} -> {_wxh(gt)}"
        if strict_size:
            out.bad.append((str(pred_path), f"size {_wxh(pred)} differs from its ground truth's {_wxh(gt)}"))
            return
        pred = task.resize_mask(pred, gt.shape)
        out.resized.append(f"{pred_path} ({sizes})")
    try:
        out.metrics.update(pred, truth)
    except ValueError as err:
        out.bad.append((str(pred_path), str(err)))


def _wxh(image: np.ndarray) -> str:
    """An image's size as segkit prints sizes everywhere: width x height."""
    return f"{image.shape[1]}x{image.shape[0]}"


@dataclass
class FolderScores:
    """The scores of one folder of predictions and what happened to its files."""

    scores: SaliencyScores | SegmentationScores
    count: int  # pairs scored
    missing: list[str]  # ground-truth stems without a prediction
    resized: list[str]  # predictions resized to their ground truth's size
    bad: list[dict]  # {"path", "problem"} of files that could not be scored
    notes: list[str] = field(default_factory=list)  # duplicates, ambiguous names
    extra: list[str] = field(default_factory=list)  # predictions without a ground truth (not scored)

    def to_json(self) -> dict:
        return {**self.scores.to_json(), "count": self.count, "missing": self.missing, "resized": self.resized,
                "bad": self.bad, "notes": self.notes, "extra": self.extra}  # fmt: skip


@dataclass
class Unscored:
    """A method that could not be scored on a dataset: no file pairs, or every pair failed."""

    reason: str
    missing: list[str] = field(default_factory=list)
    bad: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """What to score on one dataset: its ground truth, each method's pairing."""

    dataset: str
    gt_dir: Path
    pairings: dict[str, Pairing]  # method -> its pairs (methods with no pair are left out, in ``unscored``)
    unscored: dict[str, Unscored] = field(default_factory=dict)


def plan_dataset(dataset: str, gt_dir: Path | str, methods: dict[str, Path | str]) -> Plan:
    """Pair each method's folder with the ground truth; a method with no matching file is ``unscored``."""
    gt_dir = Path(gt_dir)
    plan = Plan(dataset, gt_dir, {})
    gt_listing = listed_by_stem(gt_dir)  # once for every method
    for method, pred_dir in methods.items():
        pairing = pair_by_stem(Path(pred_dir), gt_dir, gt_listing)
        if pairing.pairs:
            plan.pairings[method] = pairing
        else:
            reason = (
                f"no prediction in '{pred_dir}' matches a ground-truth file in '{gt_dir}' by file stem "
                f"(first ground-truth stems: {', '.join(pairing.missing[:5])})"
            )
            plan.unscored[method] = Unscored(reason, pairing.missing, notes=pairing.notes)
    return plan


def score_plans(
    task: str,
    plans: list[Plan],
    num_classes: int = 0,
    strict_size: bool = False,
    workers: int | None = None,
    progress=None,
) -> dict[str, dict[str, FolderScores | Unscored]]:
    """Score every plan's methods in one pool of processes: dataset -> method -> scores (or why not). Each ground
    truth is read once however many methods are scored against it. ``progress(dataset, images)`` is called as
    chunks finish (images = ground truths x methods done)."""
    task_name = get_task(task).name
    get_task(task).metrics(num_classes)  # fails early, with the fix, when the task needs --num-classes
    workers = workers or min(os.cpu_count() or 1, 8)
    jobs = []
    for plan in plans:
        items = _items_by_gt(plan)
        if not items:
            continue
        chunks = _split(items, workers * 16)  # small chunks keep the workers evenly busy to the end
        jobs += [Job(task_name, c, tuple(plan.pairings), num_classes, strict_size, plan.dataset) for c in chunks]
    totals: dict[tuple[str, str], ChunkResult] = {}
    for job, result in _run(jobs, workers, sum(len(j.items) for j in jobs)):
        for method, chunk in result.items():
            if (job.dataset, method) in totals:
                totals[(job.dataset, method)].merge(chunk)
            else:
                totals[(job.dataset, method)] = chunk
        if progress:
            progress(job.dataset, sum(len(preds) for _, preds in job.items))
    return {plan.dataset: _finish(plan, totals) for plan in plans}


def _items_by_gt(plan: Plan) -> list[tuple[Path, dict[str, Path]]]:
    by_gt: dict[Path, dict[str, Path]] = {}
    for method, pairing in plan.pairings.items():
        for pred, gt in pairing.pairs:
            by_gt.setdefault(gt, {})[method] = pred
    return sorted(by_gt.items())


def _run(jobs: list[Job], workers: int, total_items: int):
    if workers == 1 or total_items < 16:
        yield from (_score_chunk(j) for j in jobs)
        return
    with ProcessPoolExecutor(workers, mp_context=_pool_context(), initializer=_single_threaded) as pool:
        yield from pool.map(_score_chunk, jobs)


def _finish(plan: Plan, totals: dict[tuple[str, str], ChunkResult]) -> dict[str, FolderScores | Unscored]:
    out: dict[str, FolderScores | Unscored] = dict(plan.unscored)
    for method, pairing in plan.pairings.items():
        total = totals[(plan.dataset, method)]
        bad = [{"path": p, "problem": why} for p, why in total.bad]
        notes = pairing.notes + _surprise_notes(total.surprising)
        if not total.metrics.count:
            out[method] = Unscored(f"no pair could be scored; problems: {total.bad[:5]}", pairing.missing, bad, notes)
            continue
        out[method] = FolderScores(
            total.metrics.compute(), total.metrics.count, pairing.missing, total.resized, bad, notes, pairing.extra
        )
    return {m: out[m] for m in [*plan.pairings, *plan.unscored] if m in out}


def evaluate_folders(
    task: str,
    pred_dir: Path | str,
    gt_dir: Path | str,
    num_classes: int = 0,
    strict_size: bool = False,
    workers: int | None = None,
) -> FolderScores:
    """Score every prediction in ``pred_dir`` against ``gt_dir`` with the task's metrics."""
    result = evaluate_methods(task, {"": pred_dir}, gt_dir, num_classes, strict_size, workers)[""]
    if isinstance(result, Unscored):
        raise SegkitError(result.reason)
    return result


def evaluate_methods(
    task: str,
    methods: dict[str, Path | str],
    gt_dir: Path | str,
    num_classes: int = 0,
    strict_size: bool = False,
    workers: int | None = None,
) -> dict[str, FolderScores | Unscored]:
    """Several methods' folders against one ground-truth folder, each ground truth read once."""
    get_task(task).metrics(num_classes)  # fails first, with the fix, when the task needs --num-classes
    plan = plan_dataset(Path(gt_dir).name, gt_dir, methods)
    return score_plans(task, [plan], num_classes, strict_size, workers)[plan.dataset]


def _surprise_notes(surprising: list[tuple[str, str]]) -> list[str]:
    """One line per kind of ground-truth surprise: how many files, one example, what it means (scores keep the
    standard reading)."""
    by_kind: dict[str, list[str]] = {}
    for path, why in surprising:
        by_kind.setdefault(why, []).append(path)
    return [
        f"{len(paths)} ground-truth file(s), e.g. {paths[0]}, {why.split('. ')[0]}; scored as read, the standard way"
        for why, paths in by_kind.items()
    ]


def _pool_context() -> multiprocessing.context.BaseContext:
    """fork where it is safe (the plain CLI: fastest start); forkserver once torch is loaded, since forking a
    process that already runs OpenMP thread pools can deadlock the child."""
    if "torch" in sys.modules or sys.platform != "linux":
        context = multiprocessing.get_context("forkserver" if sys.platform != "win32" else "spawn")
        if sys.platform != "win32":
            context.set_forkserver_preload(["segkit.evaluation.folders"])
        return context
    return multiprocessing.get_context("fork")


def _split(items: list, n: int) -> list[list]:
    n = max(1, min(n, len(items)))
    size = -(-len(items) // n)
    return [items[i : i + size] for i in range(0, len(items), size)]
