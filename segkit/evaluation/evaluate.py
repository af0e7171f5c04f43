"""Scoring a model on a validation split at each image's original size, optionally split across processes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from segkit.data.datasets import SampleSource
from segkit.data.io import BadFileError
from segkit.errors import SegkitError
from segkit.inference.pipeline import InferenceSettings, Net, predict_probs
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


def load_for_evaluation(
    checkpoint: Path | str,
    tta: bool = False,
    output_stride: int | None = None,
    task: str | None = None,
    precision: str = "fp32",
    device: str | None = None,
    engine: str = "auto",
):
    """The Predictor that scores ``checkpoint`` on ``device`` (None: a CUDA GPU when there is one, else the CPU)
    with ``engine`` (``segkit.inference.engines``), not yet compiled (that waits for the job's size); ``task``,
    when given, must be the checkpoint's task."""
    from segkit.accel.hardware import check_device
    from segkit.inference.predictor import Predictor

    if Path(checkpoint).suffix.lower() == ".onnx":
        raise SegkitError(f"'{checkpoint}' is an ONNX model; segkit eval --checkpoint takes a segkit checkpoint (.pt)")
    if device is not None:
        check_device(device)
    predictor = Predictor(
        checkpoint, tta=tta, device=device, output_stride=output_stride, precision=precision, engine=engine
    )
    require_task(task, predictor.task, f"checkpoint '{checkpoint}'")
    return predictor


def evaluate_checkpoint(
    checkpoint: Path | str,
    data_root: Path | str | None = None,
    split: str = "val",
    tta: bool = False,
    output_stride: int | None = None,
    task: str | None = None,
    precision: str = "fp32",
    compile: bool | str = False,
    predictor=None,
) -> CheckpointScores:
    """Score a checkpoint on ``split`` of ``data_root`` (the built-in data when None) at original sizes, on the
    CPU, in ``precision`` ("fp32", "bf16" or "auto": bf16 where native), compiled when ``compile`` (True/"on",
    or "auto": see ``segkit.inference.predictor.compile_decision``, for a job of the split's images).

    ``task``, when given, must be the checkpoint's task. ``predictor``: the checkpoint already loaded
    (``load_for_evaluation``), so that it is read once."""
    if predictor is None:
        predictor = load_for_evaluation(checkpoint, tta, output_stride, task, precision)
    source = get_task(predictor.task).source(data_root, split, predictor.config.data.mask_values)
    predictor.set_compile(compile, len(source))
    scores = evaluate(predictor.net, source, predictor.settings, predictor.num_classes)
    notice = predictor.notice if data_root is not None else None  # its own built-in data: nothing to say
    return CheckpointScores(predictor.task, scores, predictor.class_names, notice, predictor.describe())


def evaluate_test_sets(
    predictor,
    checkpoint: Path | str,
    root: Path | str,
    save_preds: Path | str | None = None,
    compile: bool | str = "auto",
    progress: Callable[[int], Callable[[str, int], None]] | None = None,
):
    """Score a saliency model (``predictor``, loaded from ``checkpoint`` by ``load_for_evaluation``) on every test
    set under ``root`` (training sets skipped), as ``segkit.evaluation.paper.Results`` with one method named after
    the checkpoint. ``save_preds`` writes each map to ``save_preds/DATASET/STEM.png``, the layout ``segkit eval
    --pred NAME=DIR --data ROOT`` reads, where they score the same."""
    from segkit.data.saliency import pair_files
    from segkit.evaluation.card import metric_card
    from segkit.evaluation.folders import FolderScores, Unscored
    from segkit.evaluation.paper import Results, dataset_facts, find_test_sets

    sal = get_task(predictor.task)
    if not sal.scores_test_sets:
        raise SegkitError(f"scoring every test set under --data is for saliency models, not {sal.name}; give --split")
    sources, skipped = find_test_sets(root, sal.datasets)
    classes = sal.builtin_classes()
    sets = {
        s.name: sal.file_source(pair_files(s.image_dir, s.mask_dir).pairs, str(s.image_dir), classes) for s in sources
    }
    mask_dirs = {s.name: s.mask_dir for s in sources}
    total = sum(len(s) for s in sets.values())
    predictor.set_compile(compile, total)
    tick = progress(total) if progress else None
    name = Path(checkpoint).stem if Path(checkpoint).is_file() else Path(checkpoint).name
    cells, facts = {}, {}
    for dataset, source in sets.items():
        maps = Path(save_preds) / dataset if save_preds is not None else None
        metrics, bad = _score_test_set(predictor, source, maps, lambda n, d=dataset: tick and tick(d, n))
        cell = FolderScores(metrics.compute(), metrics.count, [], [], bad) if metrics.count else None
        cells[dataset] = {name: cell or Unscored("no image could be scored", bad=bad)}
        facts[dataset] = dataset_facts(mask_dirs[dataset], cells[dataset])
    model = {"checkpoint": str(checkpoint), "run_as": predictor.describe(), "tta": predictor.settings.tta}
    card = metric_card(sal) | {"model": model, "datasets": facts}
    notes = [f"skipped training set(s): {', '.join(skipped)}"] if skipped else []
    return Results(sal.name, list(sets), [name], cells, card, notes)


def _score_test_set(predictor, source: SampleSource, maps: Path | None, tick: Callable[[int], object]):
    """One test set: each image predicted, written to ``maps`` (when given) and scored; unreadable samples are
    listed, not fatal. Returns the metrics accumulator and the unreadable files."""
    from segkit.data.io import write_png

    task = get_task(predictor.task)
    metrics, bad = task.metrics(), []
    if maps is not None:
        _make_folder(maps)
    for i in range(len(source)):
        try:
            image, gt, stem = source.load(i)
        except BadFileError as err:
            bad.append({"path": err.path, "problem": err.problem})
            continue
        mask = task.to_mask(predict_probs(predictor.net, image, predictor.settings))
        if maps is not None:
            write_png(maps / f"{stem}.png", mask)
        metrics.update(mask, gt)
        tick(1)
    return metrics, bad


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SegkitError(f"cannot create '{folder}' for --save-preds: {err.strerror or err}") from None
