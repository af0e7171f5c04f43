"""bf16 autocast for training (and evaluation during training) where the hardware runs bf16 natively and faster.

On a CPU, native is not enough: with AVX512-BF16 but no AMX the default run trained slower in bf16 than in fp32,
with AMX much faster, at equal quality either way (benchmarks/RESULTS.md, "bf16 against fp32"). So a CPU trains in
bf16 only where ``segkit.accel.hardware.bf16_pays`` measures bf16 faster; CUDA GPUs with bf16 always do.
"""

from __future__ import annotations

import contextlib

import torch

from segkit.accel.hardware import bf16_feature, bf16_pays


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled`` and bf16 is native and faster there; else full precision."""
    if enabled and bf16_pays(device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def training_precision(device: torch.device, amp: bool) -> str:
    """What ``autocast(device, amp)`` runs, and why, for the training log."""
    if not amp:
        return "fp32 (amp: false)"
    return "bf16 autocast" if bf16_pays(device) else f"fp32 ({bf16_feature(device)})"
