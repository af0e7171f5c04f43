"""Scoring a model on a validation split at each image's original size, optionally split across processes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from segkit.data.datasets import SampleSource
from segkit.data.io import BadFileError
from segkit.engine.inference import InferenceSettings, Net, predict_probs, to_mask
from segkit.errors import SegkitError
from segkit.metrics import SaliencyMetrics, SegmentationMetrics


def make_net(model: nn.Module, device: str, amp: bool = False) -> Net:
    """A ``Net`` over a torch model (eval mode), with bf16 autocast when ``amp``."""
    from segkit.engine.precision import autocast

    model.eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        with autocast(torch.device(device), enabled=amp):
            return model(x.contiguous(memory_format=torch.channels_last))

    return run


def evaluate(
    net: Net,
    source: SampleSource,
    settings: InferenceSettings,
    num_classes: int,
    rank: int = 0,
    world_size: int = 1,
    max_images: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Metrics over ``source`` (this process scores every ``world_size``-th image; the accumulators are reduced
    across processes). Returns the metrics issue's keys plus ``count``."""
    metrics = SaliencyMetrics() if settings.task == "saliency" else SegmentationMetrics(num_classes)
    n = len(source) if not max_images else min(max_images, len(source))
    indices = range(rank, n, world_size)
    for k, i in enumerate(indices):
        try:
            image, mask, _ = source.load(i)
        except BadFileError as err:
            raise SegkitError(f"validation sample {err}; fix or remove it (segkit data check shows all)") from None
        probs = predict_probs(net, image, settings)
        metrics.update(to_mask(probs, settings.task), mask)
        if progress:
            progress(k + 1, len(indices))
    if world_size > 1:
        metrics.reduce_from_all_processes()
    out = metrics.compute()
    out["count"] = n
    return {k: v for k, v in out.items() if k not in ("precision", "recall", "fm_curve", "em_curve")}


PRIMARY_METRIC = {"saliency": "max_fm", "segmentation": "miou"}
