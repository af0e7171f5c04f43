"""Datasets for training and evaluation over files on disk or the built-in generated data.

A sample source yields ``(RGB uint8 image, uint8 mask, name)``; ``TrainDataset`` applies the augmentation and
returns tensors; evaluation reads sources directly at original size. What differs between tasks (how a mask is
read and checked, which generator makes built-in samples, the augmentation, the target tensor) is passed in by the
task (``segkit.tasks``). A file that cannot be used becomes a ``{"bad": "path: problem"}`` sample, which the
training loop turns into a clear error (never a traceback from a worker process).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from segkit.conventions import size_mismatch
from segkit.data.builtin import BuiltinSpec
from segkit.data.io import BadFileError, read_rgb
from segkit.data.transforms import image_tensor

MaskReader = Callable[[Path], np.ndarray]
MaskCheck = Callable[[np.ndarray, int, Path], "str | None"]  # (mask, num_classes, path) -> problem or None


class SampleSource:
    """Indexable (image, mask, name) samples with their class names (one name, "object", for saliency)."""

    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        raise NotImplementedError


@dataclass
class BuiltinSource(SampleSource):
    """The built-in generated samples of one split; ``generate(split, index, spec)`` makes one."""

    generate: Callable[[str, int, BuiltinSpec], tuple[np.ndarray, np.ndarray]]
    split: str
    class_names: tuple[str, ...]
    spec: BuiltinSpec = BuiltinSpec()

    def __len__(self) -> int:
        return self.spec.count(self.split)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        img, mask = self.generate(self.split, index, self.spec)
        return img, mask, f"{self.split}_{index:05d}"


@dataclass
class FileSource(SampleSource):
    """Image/mask file pairs; ``read_mask`` reads a mask file, ``check_mask`` (optional) says what is wrong with
    its values."""

    pairs: list[tuple[Path, Path]]
    read_mask: MaskReader
    class_names: tuple[str, ...] = ("object",)
    check_mask: MaskCheck | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        image_path, mask_path = self.pairs[index]
        image = read_rgb(image_path)
        mask = self.read_mask(mask_path)
        problem = size_mismatch(mask.shape, image.shape, image_path.name)
        if problem is None and self.check_mask is not None:
            problem = self.check_mask(mask, self.num_classes, mask_path)
        if problem:
            raise BadFileError(mask_path, problem)
        return image, mask, image_path.stem


class TrainDataset(Dataset):
    """Augmented training samples: ``{"image": (3,S,S) uint8, "mask": target tensor, "name": str}``.

    ``transform`` is an albumentations pipeline; ``to_target`` turns its mask into the loss's target tensor."""

    def __init__(self, source: SampleSource, transform, to_target: Callable[[np.ndarray], torch.Tensor]) -> None:
        self.source = source
        self.transform = transform
        self.to_target = to_target

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        try:
            image, mask, name = self.source.load(index)
        except BadFileError as err:
            return {"bad": str(err)}
        out = self.transform(image=image, mask=mask)
        return {"image": image_tensor(out["image"]), "mask": self.to_target(out["mask"]), "name": name}


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
