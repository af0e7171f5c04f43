"""What the hardware runs natively, detected (never guessed from the vendor): bf16 matrix math on a CUDA GPU, or
on a CPU with AVX512-BF16 or AMX (through oneDNN); and, on a CPU, whether bf16 is actually the faster choice.

Native is not always faster: on one CPU with AVX512-BF16 and no AMX oneDNN's bf16 convolution ran at about 0.6x
its fp32 speed, while others with the same flag run bf16 several times faster (benchmarks/RESULTS.md, the machine
table). So ``auto`` times one convolution in both precisions (about 0.2 s) instead of trusting flags, the first
time on a machine, and keeps the result (``segkit.accel.decisions``).
"""

from __future__ import annotations

import functools
import os
import statistics
import time

import torch

from segkit.accel.decisions import AUTO_PRECISION_ENV, measured


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
    forced = os.environ.get(AUTO_PRECISION_ENV)
    if forced in ("fp32", "bf16"):
        return "CPU with " + " and ".join(flags) + f"; auto set to {forced} by {AUTO_PRECISION_ENV}"
    speedup = cpu_bf16_speedup()
    how = _cpu_bf16_measurement()[1] if _cpu_bf16_measurement.cache_info().currsize else "measured"
    return "CPU with " + " and ".join(flags) + f"; bf16 convolution {speedup:.2f}x the fp32 speed here ({how})"


@functools.cache
def _cpu_bf16_measurement() -> tuple[float, str]:
    """(fp32 time / bf16 time, how it was obtained) of a representative convolution on this CPU, measured once per
    machine and kept (``segkit.accel.decisions``)."""
    value, how = measured("cpu_bf16_speedup", _time_bf16_convolution)
    return float(value), how


def cpu_bf16_speedup() -> float:
    """fp32 time / bf16 time of a representative convolution (64 -> 64 channels, 3x3, 96x96, channels-last) on
    this CPU; above 1 means bf16 is faster. Measured once per machine (``segkit.accel.decisions``)."""
    return _cpu_bf16_measurement()[0]


def _time_bf16_convolution() -> float:
    """The measurement itself: medians of 5 timed calls in each precision, after 2 untimed ones."""
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
    """Native bf16 that is also faster: any CUDA GPU with bf16 (tensor cores); a CPU where it measures faster
    (measured once per machine), or where ``SEGKIT_AUTO_PRECISION=bf16`` says so."""
    device = torch.device(device)
    if not bf16_supported(device):
        return False
    forced = os.environ.get(AUTO_PRECISION_ENV)
    if forced in ("fp32", "bf16"):
        return forced == "bf16"
    # 1.1: a margin over the timing's noise on a busy machine; the CPUs measured so far sit far from it on either
    # side (benchmarks/RESULTS.md, the machine table)
    return device.type != "cpu" or cpu_bf16_speedup() > 1.1


def check_device(device: str) -> None:
    """A ``--device`` value: cpu, cuda or cuda:N, and a CUDA device only where one is visible."""
    from segkit.errors import SegkitError

    if device != "cpu" and not device.startswith("cuda"):
        raise SegkitError(f"--device must be cpu, cuda or cuda:N, got '{device}'")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SegkitError(f"--device {device} was given but no CUDA device is visible; use --device cpu")


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"auto"`` -> ``"bf16"`` where the device runs it natively and faster (``bf16_pays``), else ``"fp32"``;
    ``"bf16"`` on hardware without native bf16 is an error (it would run slower than fp32, not faster)."""
    from segkit.errors import SegkitError, unknown_name

    if precision == "auto":
        forced = os.environ.get(AUTO_PRECISION_ENV)
        if forced is None or forced == "":
            return "bf16" if bf16_pays(device) else "fp32"
        if forced not in ("fp32", "bf16"):
            raise SegkitError(f"{AUTO_PRECISION_ENV} must be fp32 or bf16, got '{forced}'")
        return resolve_precision(forced, device)
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
