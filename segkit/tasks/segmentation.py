"""Semantic segmentation (PASCAL VOC and any class-id masks)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from segkit.errors import SegkitError

if TYPE_CHECKING:
    import torch

    from segkit.data.builtin import BuiltinSpec
    from segkit.data.check import CheckReport
    from segkit.data.datasets import SampleSource

from segkit.tasks.base import Task


class SegmentationTask(Task):
    """Semantic segmentation: class-id masks (255 ignored), DeepLabv3+, the confusion-matrix metrics."""

    name = "segmentation"
    primary_metric = "miou"
    metric_keys = ("miou", "aacc", "macc", "fwiou", "mdice", "boundary_iou")
    caption_keys = {"IoU": "miou", "BIoU": "boundary_iou"}
    image_metric_options = {"trimap_widths_px": ()}

    conventions = ("segmentation",)

    default_loss = "ce"
    default_config = "demo_segmentation.yaml"
    labels = True
    default_arch = "deeplabv3plus"
    mask_readings = ("standard", "255-as-class-1")

    def mask_surprise(self, mask: np.ndarray, path: Path | str | None = None) -> str | None:
        from segkit.data.masks import void_only

        if not void_only(mask):
            return None
        return (
            "holds only 0 and 255 where class ids are expected, so its object is 'ignore' (255): a 0/255 "
            "binary mask? Read 255 as class 1 with --set data.mask_values=255-as-class-1 (and model.num_classes=2)"
        )

    def read_mask(self, path: Path | str) -> np.ndarray:
        from segkit.data.io import read_label

        return read_label(path)

    def mask_problem(self, mask: np.ndarray, num_classes: int) -> str | None:
        from segkit.conventions import label_range_problem

        return label_range_problem(mask, num_classes)

    def builtin_sample(self, split: str, index: int, spec: BuiltinSpec) -> tuple[np.ndarray, np.ndarray]:
        from segkit.data.builtin import segmentation_sample

        return segmentation_sample(split, index, spec)

    def builtin_classes(self) -> tuple[str, ...]:
        from segkit.data.builtin import SEGMENTATION_CLASSES

        return SEGMENTATION_CLASSES

    def folder_classes(self, num_classes: int | None) -> tuple[str, ...]:
        if not num_classes:
            raise SegkitError(
                "training segmentation on --images/--masks folders needs the number of classes: "
                "--set model.num_classes=N (class ids 0..N-1 in the masks, 255 ignored)"
            )
        return tuple(f"class {i}" for i in range(num_classes))

    def make_demo(self, out: Path | str, spec: BuiltinSpec | None = None) -> Path:
        from segkit.data.builtin import BuiltinSpec, make_segmentation_demo

        return make_segmentation_demo(out, spec or BuiltinSpec())

    def dataset_source(self, root: Path | str, split: str, reading: str = "standard") -> SampleSource:
        """A PASCAL VOC folder: train = train_aug when its split file exists (else train), val = val."""
        from segkit.data.voc import VOC_CLASSES, voc_samples, voc_train_split

        voc_split = voc_train_split(root) if split == "train" else split
        return self.file_source(voc_samples(root, voc_split), f"{root} ({voc_split})", VOC_CLASSES, reading)

    def check_dataset(self, root: Path | str) -> CheckReport:
        from segkit.data.check import check_root, check_segmentation

        return check_segmentation(check_root(root), self.mask_checks())

    def train_transform(self, size_px: int):
        from segkit.data.transforms import segmentation_train

        return segmentation_train(size_px)

    def target(self, mask: np.ndarray) -> torch.Tensor:
        from segkit.data.transforms import label_target

        return label_target(mask)

    def to_mask(self, probs: np.ndarray) -> np.ndarray:
        # torch's max over the classes gives the first maximum, as numpy's argmax does, in 3.8 ms against 8.5 ms
        # for 21 classes at 500x375 (numpy's argmax over the first axis of a C-ordered array is slow)
        import torch

        return torch.from_numpy(np.ascontiguousarray(probs)).max(0).indices.numpy().astype(np.uint8)

    def confidence(self, probs: np.ndarray) -> np.ndarray:
        return probs.max(0)

    def write_mask(self, path: Path | str, mask: np.ndarray) -> None:
        from segkit.data.voc import save_label_png

        save_label_png(path, mask)

    def foreground(self, mask: np.ndarray) -> np.ndarray:
        from segkit.conventions import IGNORE_INDEX

        return (mask > 0) & (mask != IGNORE_INDEX)  # any class but background

    def decisions(self, mask: np.ndarray) -> np.ndarray:
        return mask

    def error_maps(self, pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A wrong pixel on ground-truth background is a false positive, a wrong pixel on an object a false
        negative (missed or mislabelled); ignored pixels count as neither."""
        from segkit.conventions import IGNORE_INDEX

        wrong = (pred != gt) & (gt != IGNORE_INDEX)
        return wrong & (gt == 0), wrong & (gt != 0)

    def mask_rgb(self, mask: np.ndarray) -> np.ndarray:
        from segkit.data.voc import voc_palette

        return voc_palette()[mask]

    def overlay(self, image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        colour = self.mask_rgb(mask)  # VOC colours; background and ignored pixels left as they are
        weight = self.foreground(mask).astype(np.float32)[..., None] * alpha
        return (image * (1 - weight) + colour * weight).astype(np.uint8)

    def metrics(self, num_classes: int, **options):
        from segkit.metrics.segmentation import SegmentationMetrics

        if num_classes < 1:
            raise SegkitError("segmentation scores need the number of classes (--num-classes N, 21 for VOC)")
        return SegmentationMetrics(num_classes, **options)

    def details_table(self, scores, class_names: tuple[str, ...]) -> str | None:
        """IoU and Boundary IoU per class (classes absent from both prediction and ground truth show '-')."""
        lines = [f"{'class':<16} {'IoU':>7} {'BIoU':>7}"]
        for c, (iou, biou) in enumerate(zip(scores.per_class_iou, scores.per_class_boundary_iou, strict=True)):
            name = class_names[c] if c < len(class_names) else f"class {c}"
            shown = ["-" if v is None else f"{v:.4f}" for v in (iou, biou)]
            lines.append(f"{name:<16} {shown[0]:>7} {shown[1]:>7}")
        return "\n".join(lines)
