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


def bce_sum(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy summed over pixels, averaged over the batch: Res2Net-PoolNet's training loss (its
    ``reduction='sum'`` divided by ``iter_size x batch``; segkit divides by ``grad_accum`` itself)."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / logits.shape[0]


def bce_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return bce(logits, target) + iou_loss(logits, target)


def structure(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PraNet's and SINet-V2's "structure loss" (after F3Net) as their training scripts compute it: weights
    ``1 + 5 |avgpool31(target) - target|`` (pixels near edges count up to 6x) in a weighted soft IoU per image,
    plus binary cross-entropy. Their call ``binary_cross_entropy_with_logits(..., reduce='none')`` passes the
    legacy ``reduce`` argument, which PyTorch reads as true: the BCE is the plain mean over the batch, unweighted
    (weighting a scalar and dividing by the weights' sum leaves it as it is). The released weights were trained
    so; segkit computes the same."""
    weight = 1 + 5 * torch.abs(F.avg_pool2d(target, kernel_size=31, stride=1, padding=15) - target)
    bce_mean = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits)
    inter = (prob * target * weight).sum((2, 3))
    union = ((prob + target) * weight).sum((2, 3))
    weighted_iou = 1 - (inter + 1) / (union - inter + 1)
    return (bce_mean + weighted_iou).mean()


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ce": cross_entropy,
    "bce": bce,
    "bce_sum": bce_sum,
    "bce_iou": bce_iou,
    "structure": structure,
}


def get_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss called ``name``; it takes logits (computed in float32 whatever the autocast) and targets. A network
    with deep supervision (PraNet, SINet-V2 in training mode) gives a tuple of logit maps: the loss is the sum over
    them, as their authors train."""
    if name not in LOSSES:
        raise unknown_name("loss", name, LOSSES)
    fn = LOSSES[name]

    def loss(logits, target: torch.Tensor) -> torch.Tensor:
        if isinstance(logits, tuple | list):
            return sum(fn(out.float(), target) for out in logits)
        return fn(logits.float(), target)

    return loss
