"""Polyp segmentation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from segkit.data.builtin import BuiltinSpec

from segkit.tasks.saliency import SaliencyTask


class PolypTask(SaliencyTask):
    """Polyp segmentation: binary masks, PraNet by default, the polyp datasets, PraNet's mean Dice and IoU
    (``segkit.metrics.polyp``) beside the saliency scores."""

    name = "polyp"
    primary_metric = "mdice"
    metric_keys = (*SaliencyTask.metric_keys, "mdice", "miou", "max_dice", "max_iou")
    table_metrics = ("mdice", "miou", "wfm", "sm", "max_em", "mae")
    caption_keys = {"Dice": "mdice", "IoU": "miou"}
    default_arch = "pranet"
    default_loss = "structure"
    default_config = "demo_polyp.yaml"

    @property
    def datasets(self):
        from segkit.data.saliency import POLYP

        return POLYP

    def builtin_sample(self, split: str, index: int, spec: BuiltinSpec) -> tuple[np.ndarray, np.ndarray]:
        from segkit.data.builtin import polyp_sample

        return polyp_sample(split, index, spec)

    def make_demo(self, out: Path | str, spec: BuiltinSpec | None = None) -> Path:
        """PraNet's layout: ``TrainDataset/image|mask`` (train) and ``TestDataset/Kvasir/images|masks`` (val)."""
        from segkit.data.builtin import BuiltinSpec, make_binary_demo, polyp_sample

        folders = {"train": ("TrainDataset/image", "TrainDataset/mask"),
                   "val": ("TestDataset/Kvasir/images", "TestDataset/Kvasir/masks")}  # fmt: skip
        return make_binary_demo(out, polyp_sample, folders, spec or BuiltinSpec())

    def metrics(self, num_classes: int = 1, **options):
        from segkit.metrics.polyp import PolypMetrics

        return PolypMetrics(**options)

    conventions = ("saliency", "polyp")
    table_note = "PraNet's columns: mean Dice, mean IoU, weighted F, S-measure, max E-measure, MAE"

    def summary(self, scores) -> str:
        return f"mDice {scores.mdice:.4f}, mIoU {scores.miou:.4f}, MAE {scores.mae:.4f}"
