"""Scoring a model on a validation split at each image's original size, optionally split across processes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from segkit.data.datasets import SampleSource
from segkit.data.io import BadFileError
from segkit.engine.inference import InferenceSettings, Net, predict_probs
from segkit.errors import SegkitError
from segkit.tasks import get_task, require_task


def evaluate(
    net: Net,
    source: SampleSource,
    settings: InferenceSettings,
    num_classes: int,
    rank: int = 0,
    world_size: int = 1,
    max_images: int = 0,
    progress: Callable[[int, int], None] | None = None,
):
    """The task's scores over ``source`` (``SaliencyScores`` or ``SegmentationScores``). This process scores
    every ``world_size``-th image; the accumulators are reduced across processes."""
    task = get_task(settings.task)
    metrics = task.metrics(num_classes)
    n = len(source) if not max_images else min(max_images, len(source))
    indices = range(rank, n, world_size)
    for k, i in enumerate(indices):
        try:
            image, mask, _ = source.load(i)
        except BadFileError as err:
            raise SegkitError(f"validation sample {err}; fix or remove it (segkit data check shows all)") from None
        metrics.update(task.to_mask(predict_probs(net, image, settings)), mask)
        if progress:
            progress(k + 1, len(indices))
    if world_size > 1:
        metrics.reduce_from_all_processes()
    return metrics.compute()


@dataclass
class CheckpointScores:
    """``segkit eval --checkpoint``'s result: the task's scores and what is needed to print them."""

    task: str
    scores: object  # SaliencyScores or SegmentationScores
    class_names: tuple[str, ...]
    notice: str | None = None  # said when a demo-data model is scored on other data
    how: str = ""  # the precision that ran, and whether compiled


def evaluate_checkpoint(
    checkpoint: Path | str,
    data_root: Path | str | None = None,
    split: str = "val",
    tta: bool = False,
    output_stride: int | None = None,
    task: str | None = None,
    precision: str = "fp32",
    compile: bool | str = False,
) -> CheckpointScores:
    """Score a checkpoint on ``split`` of ``data_root`` (the built-in data when None) at original sizes, on the
    CPU, in ``precision`` ("fp32", "bf16" or "auto": bf16 where native), compiled when ``compile`` (True/"on",
    or "auto": when the split has ``COMPILE_MIN_IMAGES`` images or more).

    ``task``, when given, must be the checkpoint's task."""
    from segkit.engine.predictor import Predictor

    if Path(checkpoint).suffix.lower() == ".onnx":
        raise SegkitError(f"'{checkpoint}' is an ONNX model; segkit eval --checkpoint takes a segkit checkpoint (.pt)")
    predictor = Predictor(checkpoint, tta=tta, device="cpu", output_stride=output_stride, precision=precision)
    require_task(task, predictor.task, f"checkpoint '{checkpoint}'")
    source = get_task(predictor.task).source(data_root, split, predictor.config.data.mask_values)
    predictor.set_compile(compile, len(source))
    scores = evaluate(predictor.net, source, predictor.settings, predictor.num_classes)
    notice = predictor.notice if data_root is not None else None  # its own built-in data: nothing to say
    return CheckpointScores(predictor.task, scores, predictor.class_names, notice, predictor.describe())


def evaluate_test_sets(
    checkpoint: Path | str,
    root: Path | str,
    save_preds: Path | str | None = None,
    tta: bool = False,
    output_stride: int | None = None,
    task: str | None = None,
    precision: str = "auto",
    compile: bool | str = "auto",
    progress: Callable[[int], Callable[[str, int], None]] | None = None,
):
    """Score a saliency checkpoint on every test set under ``root`` (training sets skipped), as
    ``segkit.metrics.paper.Results`` with one method named after the checkpoint. ``save_preds`` writes each map
    to ``save_preds/DATASET/STEM.png``, the layout ``segkit eval --pred NAME=DIR --data ROOT`` reads, where they
    score the same."""
    from segkit.data.io import write_png
    from segkit.data.saliency import pair_files
    from segkit.engine.predictor import Predictor
    from segkit.metrics.card import metric_card
    from segkit.metrics.folders import FolderScores, Unscored
    from segkit.metrics.paper import Results, find_test_sets

    predictor = Predictor(checkpoint, tta=tta, device="cpu", output_stride=output_stride, precision=precision)
    require_task(task, predictor.task, f"checkpoint '{checkpoint}'")
    sal = get_task(predictor.task)
    if not sal.scores_test_sets:
        raise SegkitError(f"scoring every test set under --data is for saliency models, not {sal.name}; give --split")
    sources, skipped = find_test_sets(root)
    sets = {
        s.name: sal.file_source(pair_files(s.image_dir, s.mask_dir).pairs, str(s.image_dir), ("object",))
        for s in sources
    }
    predictor.set_compile(compile, sum(len(s) for s in sets.values()))
    tick = progress(sum(len(s) for s in sets.values())) if progress else None
    name = Path(checkpoint).stem if Path(checkpoint).is_file() else Path(checkpoint).name
    cells, facts = {}, {}
    for dataset, source in sets.items():
        if save_preds is not None:
            _make_folder(Path(save_preds) / dataset)
        metrics, bad = sal.metrics(), []
        for i in range(len(source)):
            try:
                image, gt, stem = source.load(i)
            except BadFileError as err:
                bad.append({"path": err.path, "problem": err.problem})
                continue
            mask = sal.to_mask(predict_probs(predictor.net, image, predictor.settings))
            if save_preds is not None:
                write_png(Path(save_preds) / dataset / f"{stem}.png", mask)
            metrics.update(mask, gt)
            if tick:
                tick(dataset, 1)
        cell = FolderScores(metrics.compute(), metrics.count, [], [], bad) if metrics.count else None
        cells[dataset] = {name: cell or Unscored("no image could be scored", bad=bad)}
        facts[dataset] = {"ground_truths": len(source), "methods": {name: {"scored": metrics.count, "missing": [],
                          "resized": [], "bad": bad}}}  # fmt: skip
    card = metric_card(sal) | {"model": {"checkpoint": str(checkpoint), "run_as": predictor.describe(), "tta": tta}}
    card["datasets"] = facts
    notes = [f"skipped training set(s): {', '.join(skipped)}"] if skipped else []
    return Results(sal.name, list(sets), [name], cells, card, notes), predictor


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SegkitError(f"cannot create '{folder}' for --save-preds: {err.strerror or err}") from None
