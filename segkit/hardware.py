"""What the hardware runs natively, detected (never guessed from the vendor): bf16 matrix math on a CUDA GPU, or
on a CPU with AVX512-BF16 or AMX (through oneDNN)."""

from __future__ import annotations

import torch


def bf16_supported(device: torch.device | str) -> bool:
    """Whether bf16 matrix math runs natively on ``device``."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def bf16_feature(device: torch.device | str) -> str:
    """The feature that makes bf16 native on ``device`` (for the line that says which precision runs), or why not."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return f"{name}, bf16" if torch.cuda.is_bf16_supported() else f"{name}, no bf16"
    flags = []
    for flag, probe in (("amx_bf16", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported")):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            flags.append(flag)
    return "CPU with " + " and ".join(flags) if flags else "CPU without native bf16 (no AVX512-BF16, no AMX)"


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"auto"`` -> ``"bf16"`` where the device runs it natively, else ``"fp32"``; ``"bf16"`` on hardware without
    native bf16 is an error (it would run slower than fp32, not faster)."""
    from segkit.errors import SegkitError, unknown_name

    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    if precision == "fp32":
        return "fp32"
    if precision == "bf16":
        if not bf16_supported(device):
            raise SegkitError(
                f"--precision bf16 asked, but this device has no native bf16 ({bf16_feature(device)}): it would "
                "run slower than fp32. Use --precision fp32 (or auto, which picks fp32 here)"
            )
        return "bf16"
    raise unknown_name("precision", precision, ("auto", "fp32", "bf16"))
