"""bf16 autocast where the hardware runs bf16 natively (training, and evaluation during training)."""

from __future__ import annotations

import contextlib

import torch

from segkit.hardware import bf16_supported


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled`` and natively supported; otherwise full precision."""
    if enabled and bf16_supported(device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
