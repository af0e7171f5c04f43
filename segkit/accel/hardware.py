"""What the hardware runs natively, detected (never guessed from the vendor): bf16 matrix math on a CUDA GPU, or
on a CPU with AVX512-BF16 or AMX (through oneDNN); and, on a CPU, whether bf16 is actually the faster choice.

Native is not always faster: on one CPU with AVX512-BF16 and no AMX oneDNN's bf16 convolution ran at about 0.6x
its fp32 speed, while others with the same flag run bf16 several times faster (benchmarks/RESULTS.md, the machine
table). So ``auto`` times one convolution in both precisions on first use (about 0.2 s) instead of trusting flags.
"""

from __future__ import annotations

import functools
import statistics
import time

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
    if not flags:
        return "CPU without native bf16 (no AVX512-BF16, no AMX)"
    measured = f"bf16 convolution measured {cpu_bf16_speedup():.2f}x the fp32 speed here"
    return "CPU with " + " and ".join(flags) + f"; {measured}"


@functools.cache
def cpu_bf16_speedup() -> float:
    """fp32 time / bf16 time of a representative convolution (64 -> 64 channels, 3x3, 96x96, channels-last) on
    this CPU, medians of 5; above 1 means bf16 is faster. Measured once per process."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval().to(memory_format=torch.channels_last)
    x = torch.randn(1, 64, 96, 96).contiguous(memory_format=torch.channels_last)

    def median_ms(module, inp) -> float:
        with torch.inference_mode():
            for _ in range(2):
                module(inp)
            times = []
            for _ in range(5):
                start = time.perf_counter()
                module(inp)
                times.append(time.perf_counter() - start)
        return statistics.median(times)

    fp32 = median_ms(conv, x)
    bf16 = median_ms(conv.to(torch.bfloat16), x.to(torch.bfloat16))
    return fp32 / bf16


def bf16_pays(device: torch.device | str) -> bool:
    """Native bf16 that is also faster: any CUDA GPU with bf16 (tensor cores); a CPU where it measures faster."""
    device = torch.device(device)
    if not bf16_supported(device):
        return False
    # 1.1: a margin over the timing's noise on a busy machine; the CPUs measured so far sit far from it on either
    # side (benchmarks/RESULTS.md, the machine table)
    return device.type != "cpu" or cpu_bf16_speedup() > 1.1


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"auto"`` -> ``"bf16"`` where the device runs it natively and faster (``bf16_pays``), else ``"fp32"``;
    ``"bf16"`` on hardware without native bf16 is an error (it would run slower than fp32, not faster)."""
    from segkit.errors import SegkitError, unknown_name

    if precision == "auto":
        return "bf16" if bf16_pays(device) else "fp32"
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
