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
