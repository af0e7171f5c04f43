"""Salient object detection, and the one-map networks every binary-map task can train."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    import torch

    from segkit.data.builtin import BuiltinSpec
    from segkit.data.check import CheckReport
    from segkit.data.datasets import SampleSource

from segkit.tasks.base import Task


class SaliencyTask(Task):
    """Salient object detection: grey-level masks (object > 128), a PoolNet-style network, the SOD metrics."""

    name = "saliency"
    primary_metric = "max_fm"
    metric_keys = ("mae", "sm", "wfm", "adp_fm", "mean_fm", "max_fm", "adp_em", "mean_em", "max_em", "boundary_iou")
    table_metrics: ClassVar[tuple[str, ...]] = ("max_fm", "mae", "sm", "mean_em")  # eval --data's default columns
    caption_keys = {"MAE": "mae", "maxF": "max_fm"}
    scores_test_sets = True
    default_arch: ClassVar[str] = "poolnet-style"

    @property
    def datasets(self):
        """The community's datasets: layouts, training sets, the papers' test-set order."""
        from segkit.data.saliency import SOD

        return SOD

    def truth(self, gt: np.ndarray):
        from segkit.metrics.saliency import SaliencyTruth

        return SaliencyTruth(gt)  # the weighted F-measure's transforms, computed once

    conventions = ("saliency",)

    default_loss = "bce_iou"
    default_config = "demo_saliency.yaml"
    labels = False
    mask_readings = ("standard", "nonzero")

    def mask_surprise(self, mask: np.ndarray, path: Path | str | None = None) -> str | None:
        from segkit.data.masks import palette_read_as_grey, zero_one

        fix = "Read every non-zero value as object with --set data.mask_values=nonzero"
        if zero_one(mask):
            return f"holds only 0 and 1 (a 0/1 mask): binarised as the benchmarks do (> 128) its object is empty. {fix}"
        if palette_read_as_grey(mask, path):
            return (
                "is a palette PNG whose colours read as grey levels of 128 or less: binarised as the benchmarks do "
                f"(> 128) its object is empty. {fix}"
            )
        return None

    def read_mask(self, path: Path | str) -> np.ndarray:
        from segkit.data.io import read_gray

        return read_gray(path)

    def builtin_sample(self, split: str, index: int, spec: BuiltinSpec) -> tuple[np.ndarray, np.ndarray]:
        from segkit.data.builtin import saliency_sample

        return saliency_sample(split, index, spec)

    def builtin_classes(self) -> tuple[str, ...]:
        return ("object",)

    def folder_classes(self, num_classes: int | None) -> tuple[str, ...]:
        return ("object",)

    def make_demo(self, out: Path | str, spec: BuiltinSpec | None = None) -> Path:
        from segkit.data.builtin import BuiltinSpec, make_saliency_demo

        return make_saliency_demo(out, spec or BuiltinSpec())

    def dataset_source(self, root: Path | str, split: str, reading: str = "standard") -> SampleSource:
        """The family's training set(s) (train; DUTS-TR for saliency) or its validation test set (val; DUTS-TE)
        under ``root``."""
        from segkit.data.saliency import find_source, pair_files, training_sources

        family = self.datasets
        found = training_sources(root, family) if split == "train" else [find_source(root, family.val, family)]
        pairs = [pair for source in found for pair in pair_files(source.image_dir, source.mask_dir).pairs]
        where = " + ".join(str(source.image_dir) for source in found)
        return self.file_source(pairs, where, self.builtin_classes(), reading)

    def check_dataset(self, root: Path | str) -> CheckReport:
        from segkit.data.check import check_root, check_saliency

        return check_saliency(check_root(root), self.mask_checks(), self.datasets)

    def train_transform(self, size_px: int):
        from segkit.data.transforms import saliency_train

        return saliency_train(size_px)

    def target(self, mask: np.ndarray) -> torch.Tensor:
        from segkit.data.transforms import grey_target

        return grey_target(mask)

    def to_mask(self, probs: np.ndarray) -> np.ndarray:
        from segkit.conventions import probs_to_uint8

        return probs_to_uint8(probs)

    def confidence(self, probs: np.ndarray) -> np.ndarray:
        return probs

    def write_mask(self, path: Path | str, mask: np.ndarray) -> None:
        from segkit.data.io import write_png

        write_png(path, mask)

    def foreground(self, mask: np.ndarray) -> np.ndarray:
        return mask >= 128  # probability >= 0.5

    def decisions(self, mask: np.ndarray) -> np.ndarray:
        return self.foreground(mask)

    def error_maps(self, pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p, g = pred >= 128, gt > 128  # prediction at 0.5; ground truth as the metrics binarise it
        return p & ~g, ~p & g

    def mask_rgb(self, mask: np.ndarray) -> np.ndarray:
        return np.repeat(mask[..., None], 3, axis=2)

    def overlay(self, image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        colour = np.zeros_like(image)
        colour[..., 0] = 255  # red, weighted by the saliency
        weight = (mask.astype(np.float32) / 255 * alpha)[..., None]
        return (image * (1 - weight) + colour * weight).astype(np.uint8)

    def metrics(self, num_classes: int = 1, **options):
        from segkit.metrics.saliency import SaliencyMetrics

        return SaliencyMetrics(**options)

    def summary(self, scores) -> str:
        return f"{super().summary(scores)}, MAE {scores.mae:.4f}"
