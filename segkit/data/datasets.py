"""Datasets for training and evaluation over files on disk or the built-in generated data.

A sample source yields ``(RGB uint8 image, uint8 mask, name)``; ``TrainDataset`` applies the augmentation and
returns tensors; evaluation reads sources directly at original size. A file that cannot be used becomes a
``{"bad": "path: problem"}`` sample, which the training loop turns into a clear error (never a traceback from a
worker process).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from segkit.data.builtin import SEGMENTATION_CLASSES, BuiltinSpec, generate_sample
from segkit.data.io import BadFileError, read_gray, read_label, read_rgb
from segkit.data.saliency import find_source, pair_files
from segkit.data.transforms import saliency_train, segmentation_train, to_tensors
from segkit.data.voc import VOC_CLASSES, voc_samples
from segkit.errors import SegkitError


class SampleSource:
    """Indexable (image, mask, name) samples."""

    task: str
    num_classes: int
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        raise NotImplementedError


@dataclass
class BuiltinSource(SampleSource):
    task: str
    split: str
    spec: BuiltinSpec = BuiltinSpec()

    def __post_init__(self) -> None:
        self.count = self.spec.count(self.split)
        self.num_classes = len(SEGMENTATION_CLASSES) if self.task == "segmentation" else 1
        self.class_names = SEGMENTATION_CLASSES if self.task == "segmentation" else ("object",)

    def __len__(self) -> int:
        return self.count

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        img, mask = generate_sample(self.task, self.split, index, self.spec)
        return img, mask, f"{self.split}_{index:05d}"


@dataclass
class FileSource(SampleSource):
    """Image/mask file pairs; masks are grey levels (saliency) or class ids (segmentation)."""

    task: str
    pairs: list[tuple[Path, Path]]
    num_classes: int = 1
    class_names: tuple[str, ...] = ("object",)

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        image_path, mask_path = self.pairs[index]
        image = read_rgb(image_path)
        mask = read_gray(mask_path) if self.task == "saliency" else read_label(mask_path)
        if image.shape[:2] != mask.shape:
            raise BadFileError(
                mask_path,
                f"mask size {mask.shape[1]}x{mask.shape[0]} differs from its image "
                f"{image_path.name} ({image.shape[1]}x{image.shape[0]})",
            )
        if self.task == "segmentation":
            bad = (mask >= self.num_classes) & (mask != 255)
            if bad.any():
                raise BadFileError(
                    mask_path,
                    f"holds class {int(mask[bad][0])}, outside 0..{self.num_classes - 1} and not 255 (ignore)",
                )
        return image, mask, image_path.stem


def build_source(
    task: str, root: str | Path | None, split: str, images: str | None = None, masks: str | None = None
) -> SampleSource:
    """The samples of ``split`` ("train" or "val") for ``task``: the built-in data when ``root`` is None.

    Saliency: ``root`` holds DUTS-TR (train) and DUTS-TE (val), or ``images``/``masks`` folders are given.
    Segmentation: ``root`` is a VOC folder; train = train_aug when SegmentationClassAug exists, else train.
    """
    if images or masks:
        if not (images and masks):
            raise SegkitError("--images and --masks go together: pass both folders")
        pairs = pair_files(Path(images), Path(masks))
        return _file_source(task, pairs.pairs, f"{images} + {masks}")
    if root is None:
        return BuiltinSource(task, split)
    if task == "saliency":
        source = find_source(root, "DUTS-TR" if split == "train" else "DUTS-TE")
        return _file_source(task, pair_files(source.image_dir, source.mask_dir).pairs, str(source.image_dir))
    elif task == "segmentation":
        voc_split = split
        if split == "train":
            try:
                return _file_source(task, voc_samples(root, "train_aug"), str(root), VOC_CLASSES)
            except SegkitError:
                voc_split = "train"
        return _file_source(task, voc_samples(root, voc_split), str(root), VOC_CLASSES)
    else:
        raise SegkitError(f"task must be saliency or segmentation, got '{task}'")


def _file_source(task: str, pairs: list, where: str, classes: tuple[str, ...] = ("object",)) -> FileSource:
    if not pairs:
        raise SegkitError(f"no image/mask pairs found in {where}")
    if task == "segmentation":
        return FileSource(task, pairs, len(classes), classes)
    return FileSource(task, pairs)


class TrainDataset(Dataset):
    """Augmented training samples: ``{"image": (3,S,S) uint8, "mask": ..., "name": str}``."""

    def __init__(self, source: SampleSource, image_size_px: int) -> None:
        self.source = source
        self.task = source.task
        if source.task == "saliency":
            self.transform = saliency_train(image_size_px)
        else:
            self.transform = segmentation_train(image_size_px)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        try:
            image, mask, name = self.source.load(index)
        except BadFileError as err:
            return {"bad": str(err)}
        out = self.transform(image=image, mask=mask)
        img_t, mask_t = to_tensors(out["image"], out["mask"], self.task)
        return {"image": img_t, "mask": mask_t, "name": name}


def collate(samples: list[dict]) -> dict:
    """Stack a batch; a batch holding bad samples becomes ``{"bad": [...]}``."""
    bad = [s["bad"] for s in samples if "bad" in s]
    if bad:
        return {"bad": bad}
    return {
        "image": torch.stack([s["image"] for s in samples]),
        "mask": torch.stack([s["mask"] for s in samples]),
        "name": [s["name"] for s in samples],
    }
