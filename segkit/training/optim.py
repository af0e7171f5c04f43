"""The optimiser (SGD or AdamW, backbone at its own learning rate) and the schedule (warm-up, poly or cosine)."""

from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(model: nn.Module, lr: float, backbone_lr_mult: float) -> list[dict]:
    """Two groups: the backbone's parameters at ``lr * backbone_lr_mult``, everything else at ``lr``."""
    backbone = [p for n, p in model.named_parameters() if ".backbone." in f".{n}" and p.requires_grad]
    ids = {id(p) for p in backbone}
    rest = [p for p in model.parameters() if id(p) not in ids and p.requires_grad]
    return [{"params": backbone, "lr": lr * backbone_lr_mult}, {"params": rest, "lr": lr}]


def build_optimizer(model: nn.Module, optim) -> torch.optim.Optimizer:
    """The optimiser an ``OptimConfig`` describes."""
    groups = param_groups(model, optim.lr, optim.backbone_lr_mult)
    if optim.name == "sgd":
        return torch.optim.SGD(groups, momentum=optim.momentum, weight_decay=optim.weight_decay)
    elif optim.name == "adamw":
        return torch.optim.AdamW(groups, weight_decay=optim.weight_decay)
    elif optim.name == "adam":  # weight decay as an L2 term in the gradient (the published recipes' Adam)
        return torch.optim.Adam(groups, weight_decay=optim.weight_decay)
    else:
        raise ValueError(f"unknown optimiser '{optim.name}'")  # validated when the config is loaded


def lr_factor(step: int, total: int, schedule, steps_per_epoch: int = 1) -> float:
    """Linear warm-up, then poly ((1 - t)^power) or cosine decay to 0 at ``total``, or a step decay by
    ``step_gamma`` every ``step_epochs`` epochs (a ``ScheduleConfig``)."""
    if schedule.warmup_steps and step < schedule.warmup_steps:
        return (step + 1) / schedule.warmup_steps
    if schedule.policy == "step":
        return schedule.step_gamma ** (step // (schedule.step_epochs * steps_per_epoch))
    t = min(1.0, (step - schedule.warmup_steps) / max(1, total - schedule.warmup_steps))
    if schedule.policy == "poly":
        return (1 - t) ** schedule.poly_power
    return 0.5 * (1 + math.cos(math.pi * t))


def build_scheduler(
    optimizer: torch.optim.Optimizer, total: int, schedule, steps_per_epoch: int = 1
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, schedule, steps_per_epoch))
