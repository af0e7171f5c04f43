"""Augmentation pipelines (albumentations), one module for both tasks.

Pipelines output uint8 images: normalisation (``normalize``, in ``segkit.data.normalize``) runs on the device,
batched, where it costs nothing and the loader workers do less per sample.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import torch

from segkit.conventions import IGNORE_INDEX
from segkit.data.normalize import IMAGENET_MEAN, normalize

__all__ = ["normalize", "segmentation_train", "saliency_train", "published_train", "image_tensor", "grey_target",
           "label_target"]  # fmt: skip
_MEAN_PIXEL = tuple(int(round(m * 255)) for m in IMAGENET_MEAN)


def segmentation_train(crop_px: int = 512, scale: tuple[float, float] = (0.5, 2.0)) -> A.Compose:
    """Random scale, pad (image with the mean pixel, mask with 255), random crop, flip, photometric jitter."""
    return A.Compose(
        [
            A.RandomScale(scale_limit=(scale[0] - 1, scale[1] - 1), p=1.0),
            A.PadIfNeeded(crop_px, crop_px, border_mode=cv2.BORDER_CONSTANT, fill=_MEAN_PIXEL, fill_mask=IGNORE_INDEX),
            A.RandomCrop(crop_px, crop_px),
            A.HorizontalFlip(),
            A.RandomBrightnessContrast(0.2, 0.2, p=0.5),
            A.HueSaturationValue(8, 15, 10, p=0.5),
        ]
    )


def saliency_train(size_px: int = 320) -> A.Compose:
    """Resize to slightly more than ``size_px``, random crop to ``size_px``, flip, light photometric jitter."""
    return A.Compose(
        [
            A.Resize(size_px + size_px // 8, size_px + size_px // 8),
            A.RandomCrop(size_px, size_px),
            A.HorizontalFlip(),
            A.RandomBrightnessContrast(0.1, 0.1, p=0.3),
        ]
    )


# data.augment: "task" (the task's own pipeline) or a published script's loader.
AUGMENTS = ("task", "resize", "flip")


def published_train(augment: str, size_px: int) -> A.Compose:
    """A published training script's loader: "resize" to ``size_px`` x ``size_px`` and nothing else (PraNet's
    ``PolypDataset``), or "flip": the image at its own size with a random horizontal flip (Res2Net-PoolNet's
    ``ImageDataTrain``, batch 1)."""
    if augment == "resize":
        return A.Compose([A.Resize(size_px, size_px)])
    if augment == "flip":
        return A.Compose([A.HorizontalFlip()])
    raise ValueError(f"unknown augmentation '{augment}'; valid: {', '.join(AUGMENTS)}")


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) uint8 (normalised later, on the device)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def grey_target(mask: np.ndarray) -> torch.Tensor:
    """A grey-level mask as a (1, H, W) float target in [0, 1] (mask / 255: grey levels are kept)."""
    return torch.from_numpy(mask.astype(np.float32) / 255.0)[None]


def label_target(mask: np.ndarray) -> torch.Tensor:
    """A class-id mask as a (H, W) int64 target (``IGNORE_INDEX`` kept)."""
    return torch.from_numpy(mask.astype(np.int64))
