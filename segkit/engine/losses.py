"""Training losses by name; a task's ``default_loss`` names the one ``loss: auto`` uses."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from segkit.conventions import IGNORE_INDEX
from segkit.errors import unknown_name


def iou_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft IoU loss (Rahman & Wang 2016) per image, averaged: sharpens boundaries alongside BCE."""
    prob = logits.sigmoid()
    inter = (prob * target).sum((1, 2, 3))
    union = (prob + target - prob * target).sum((1, 2, 3))
    return (1 - (inter + 1) / (union + 1)).mean()


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel cross-entropy over class ids; ``IGNORE_INDEX`` pixels count for nothing."""
    return F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)


def bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy against a grey-level target in [0, 1]."""
    return F.binary_cross_entropy_with_logits(logits, target)


def bce_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return bce(logits, target) + iou_loss(logits, target)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ce": cross_entropy,
    "bce": bce,
    "bce_iou": bce_iou,
}


def get_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss called ``name``; it takes logits (computed in float32 whatever the autocast) and targets."""
    if name not in LOSSES:
        raise unknown_name("loss", name, LOSSES)
    fn = LOSSES[name]
    return lambda logits, target: fn(logits.float(), target)
