"""``segkit bench backbone``: what does Res2Net's hierarchy cost in speed?

In one run on one device it measures, for ResNet-50 and the paper's equal-complexity Res2Net-50 variants:
forward latency (batch 1), throughput (a larger batch), and a training step, eagerly and on the inference fast
path; and segkit's Res2Net against timm's with the same weights.

The table measures one model after another, so a ratio between two rows also holds the machine's drift between
them (on a 2-core VM, 10% and more). The latencies that issue 11's goals compare (timm's eager Res2Net-50, and
Res2Net-50 and ResNet-50 on the fast path in fp32 and bf16) are therefore timed once more interleaved: in each
round every model runs once, in turn, and each median is over the rounds (``interleaved_ms``).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from segkit.accel.decisions import cpu_model_and_flags
from segkit.accel.hardware import bf16_feature, bf16_pays, bf16_supported
from segkit.accel.precision import autocast
from segkit.accel.timing import sync, time_interleaved
from segkit.models import create_backbone, prepare_for_inference

RES2NET_VARIANTS = ("res2net50_48w_2s", "res2net50_26w_4s", "res2net50_14w_8s", "res2net50_26w_6s", "res2net50_26w_8s")
BASELINE = "resnet50"
TIMM_REFERENCE = "res2net50_26w_4s"


@dataclass(frozen=True)
class BenchSettings:
    device: str = "cpu"
    latency_size_px: int = 512  # square input side for the batch-1 latency
    throughput_batch: int = 8  # batch for the throughput measurement
    throughput_size_px: int = 256
    train_batch: int = 8  # batch of the training step
    train_size_px: int = 256
    repeats: int = 5  # timed repetitions (the median is reported)
    warmup: int = 2
    variants: tuple[str, ...] = RES2NET_VARIANTS
    compile: bool = True  # compiled columns (fp32, bf16) for Res2Net-50 26w_4s and ResNet-50
    onnx: bool = True  # ONNX Runtime and OpenVINO columns (CPU only) for the same two


@dataclass
class Row:
    model: str
    implementation: str  # "segkit" or "timm"
    latency_eager_ms: float | None = None
    latency_fast_ms: float | None = None
    latency_bf16_ms: float | None = None  # the fast path in bf16 (weights and activations), where native
    latency_compiled_ms: float | None = None  # the fp32 fast path under torch.compile (inductor, frozen weights)
    latency_bf16_compiled_ms: float | None = None  # the bf16 fast path under torch.compile
    latency_onnxruntime_ms: float | None = None  # the exported fast path in ONNX Runtime (CPU provider)
    latency_openvino_ms: float | None = None  # the same graph in OpenVINO (CPU, fp32), when installed
    latency_openvino_bf16_ms: float | None = None  # OpenVINO with bf16 inference, where bf16 is native
    compile_s: float | None = None  # first call of the fp32 compiled model (compilation included)
    throughput_eager_img_s: float | None = None
    throughput_fast_img_s: float | None = None
    train_step_default_ms: float | None = None  # NCHW, fp32: timm's default
    train_step_segkit_layout_ms: float | None = None  # channels-last + bf16 autocast where native and faster


@dataclass
class BenchResult:
    settings: BenchSettings
    machine: dict
    rows: list[Row] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)
    interleaved_ms: dict[str, float] = field(default_factory=dict)  # batch-1 latencies timed in turn, per round


def time_call(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` untimed calls."""
    return time_interleaved({"call": fn}, device, repeats, warmup)["call"]


def _goal_latencies_ms(
    timm_res2net: nn.Module, res2net: nn.Module, resnet: nn.Module, s: BenchSettings, device: torch.device
) -> dict[str, float]:
    """Batch-1 latencies (ms) of the comparisons issue 11 sets goals for, timed interleaved. timm's model runs
    as in the table's eager column: NCHW, eval mode (the training-step columns left it channels-last)."""
    models = {
        "timm_res2net_eager_fp32": timm_res2net.eval().to(memory_format=torch.contiguous_format),
        "res2net_fast_fp32": prepare_for_inference(res2net),
        "resnet_fast_fp32": prepare_for_inference(resnet),
    }
    if bf16_supported(device):
        models["res2net_fast_bf16"] = prepare_for_inference(res2net, precision="bf16")
        models["resnet_fast_bf16"] = prepare_for_inference(resnet, precision="bf16")
    x = torch.randn(1, 3, s.latency_size_px, s.latency_size_px, device=device)
    with torch.inference_mode():
        seconds = time_interleaved({k: lambda m=m: m(x) for k, m in models.items()}, device, s.repeats, s.warmup)
    return {name: 1e3 * t for name, t in seconds.items()}


def _interleaved_ratios(ms: dict[str, float]) -> dict[str, float]:
    eager = ms["timm_res2net_eager_fp32"]
    out = {
        "interleaved_fast_vs_timm_eager_speedup": eager / ms["res2net_fast_fp32"],
        "interleaved_res2net_over_resnet_latency_fast": ms["res2net_fast_fp32"] / ms["resnet_fast_fp32"],
    }
    if "res2net_fast_bf16" in ms:
        out["interleaved_bf16_fast_vs_timm_eager_fp32_speedup"] = eager / ms["res2net_fast_bf16"]
        out["interleaved_res2net_over_resnet_latency_bf16"] = ms["res2net_fast_bf16"] / ms["resnet_fast_bf16"]
    return out


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)


def _forward_ms(model: nn.Module, x: torch.Tensor, s: BenchSettings, device: torch.device) -> float:
    with torch.inference_mode():
        return 1e3 * time_call(lambda: model(x), device, s.repeats, s.warmup)


def _train_step_ms(model: nn.Module, s: BenchSettings, device: torch.device, segkit_layout: bool) -> float:
    """One SGD step (forward, a loss over all four maps, backward, update).

    ``segkit_layout``: channels-last and bf16 autocast where bf16 is native and faster (the layout
    ``segkit train`` uses); otherwise NCHW in fp32, timm's default.
    """
    model = model.train().to(device)
    fmt = torch.channels_last if segkit_layout else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(s.train_batch, 3, s.train_size_px, s.train_size_px, device=device).contiguous(memory_format=fmt)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(device, enabled=segkit_layout):
            loss = sum(f.float().square().mean() for f in model(x))
        loss.backward()
        opt.step()

    return 1e3 * time_call(step, device, s.repeats, s.warmup)


def _measure(
    model: nn.Module, row: Row, s: BenchSettings, device: torch.device, train: bool = True, extra: bool = False
) -> None:
    """Fills ``row``; ``extra``: also the compiled and ONNX Runtime columns (where the settings ask for them)."""
    model = model.to(device).eval()
    randomize_batchnorm(model)
    x1 = torch.randn(1, 3, s.latency_size_px, s.latency_size_px, device=device)
    xb = torch.randn(s.throughput_batch, 3, s.throughput_size_px, s.throughput_size_px, device=device)
    fast = prepare_for_inference(model)
    row.latency_eager_ms = _forward_ms(model, x1, s, device)
    row.latency_fast_ms = _forward_ms(fast, x1, s, device)
    bf16 = bf16_supported(device)
    if bf16:
        row.latency_bf16_ms = _forward_ms(prepare_for_inference(model, precision="bf16"), x1, s, device)
    if extra and s.compile:
        row.compile_s, row.latency_compiled_ms = _compiled_ms(model, x1, s, device, "fp32")
        if bf16:
            row.latency_bf16_compiled_ms = _compiled_ms(model, x1, s, device, "bf16")[1]
    if extra and s.onnx and device.type == "cpu":
        peers = _engines_ms(model, x1, s)
        row.latency_onnxruntime_ms = peers.get("onnxruntime")
        row.latency_openvino_ms = peers.get("openvino")
        row.latency_openvino_bf16_ms = peers.get("openvino_bf16")
    row.throughput_eager_img_s = s.throughput_batch * 1e3 / _forward_ms(model, xb, s, device)
    row.throughput_fast_img_s = s.throughput_batch * 1e3 / _forward_ms(fast, xb, s, device)
    if train:
        row.train_step_default_ms = _train_step_ms(model, s, device, segkit_layout=False)
        row.train_step_segkit_layout_ms = _train_step_ms(model, s, device, segkit_layout=True)


def _compiled_ms(
    model: nn.Module, x: torch.Tensor, s: BenchSettings, device: torch.device, precision: str
) -> tuple[float | None, float | None]:
    """(seconds of the first call, compilation included; median ms after it) of the compiled fast path; (None,
    None) when compilation failed (CompiledModel has said so in one line and ran eagerly)."""
    compiled = prepare_for_inference(model, precision=precision, compile=True, cuda_graphs=False)
    start = time.perf_counter()
    with torch.inference_mode():
        compiled(x)
    sync(device)
    first_s = time.perf_counter() - start
    ms = _forward_ms(compiled, x, s, device)
    torch._dynamo.reset()
    if getattr(compiled, "failed", None):
        return None, None
    return first_s, ms


def _engines_ms(model: nn.Module, x: torch.Tensor, s: BenchSettings) -> dict[str, float]:
    """Median ms of the exported fast path in ONNX Runtime (fp32) and OpenVINO (fp32; bf16 where native), those
    installed, timed interleaved on the same graph."""
    import tempfile

    from segkit.inference import engines

    body = engines.exportable(model)
    with tempfile.TemporaryDirectory() as tmp:
        graph = Path(tmp) / "backbone.onnx"
        engines.export_onnx_graph(body, x.cpu(), graph, "the backbone")
        nets = {}
        if engines.installed("onnxruntime"):
            nets["onnxruntime"] = engines.engine_net("onnxruntime", graph, "fp32")
        if engines.installed("openvino"):
            nets["openvino"] = engines.engine_net("openvino", graph, "fp32")
            if bf16_supported("cpu"):
                nets["openvino_bf16"] = engines.engine_net("openvino", graph, "bf16")
        return engines.time_nets(nets, x.cpu(), s.repeats) if nets else {}


def timm_reference(name: str, weights_from: nn.Module) -> nn.Module:
    """timm's implementation of ``name`` holding the same weights as ``weights_from`` (a segkit backbone)."""
    import timm

    ref = timm.create_model(name, features_only=True, out_indices=(1, 2, 3, 4))
    ref.load_state_dict(weights_from.state_dict(), strict=True)
    return ref


def machine_info(device: torch.device) -> dict:
    info = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "bf16": bf16_supported(device),
        "bf16_pays": bf16_pays(device),  # what training's autocast and --precision auto go by
        "bf16_feature": bf16_feature(device),
        "cpu_model": cpu_model_and_flags()[0],
        "cpu_line": cpu_line(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_line() -> str:
    """The CPU's model and the vector features that decide kernel speed here, e.g. 'AMD EPYC (avx2 fma avx512f
    avx512_bf16), 2 cores': the header of every speed figure."""
    model, flags = cpu_model_and_flags()
    present = set(flags.split())
    vector = " ".join(f for f in VECTOR_FLAGS if f in present) or "flags unknown"
    return f"{model} ({vector}), {os.cpu_count()} cores"


def run_backbone_bench(s: BenchSettings, progress: Callable[[str], None] = print) -> BenchResult:
    device = torch.device(s.device)
    torch.manual_seed(0)
    result = BenchResult(settings=s, machine=machine_info(device))
    progress(f"timing timm {TIMM_REFERENCE} (same weights as segkit's) ...")
    ours_ref = create_backbone(TIMM_REFERENCE)
    randomize_batchnorm(ours_ref)
    timm_row = Row(TIMM_REFERENCE, "timm")
    timm_model = timm_reference(TIMM_REFERENCE, ours_ref)
    _measure(timm_model, timm_row, s, device)
    result.rows.append(timm_row)
    baseline = create_backbone(BASELINE)
    for name in (BASELINE, *s.variants):
        extra = name in (BASELINE, TIMM_REFERENCE)
        progress(f"timing {name}" + (" (compiled and ONNX Runtime too)" if extra else "") + " ...")
        row = Row(name, "timm" if name == BASELINE else "segkit")
        model = {TIMM_REFERENCE: ours_ref, BASELINE: baseline}.get(name) or create_backbone(name)
        _measure(model, row, s, device, extra=extra)
        result.rows.append(row)
    result.ratios = _ratios(result.rows)
    progress(f"timing the goals' comparisons interleaved ({s.repeats} rounds) ...")
    result.interleaved_ms = _goal_latencies_ms(timm_model, ours_ref, baseline, s, device)
    result.ratios |= _interleaved_ratios(result.interleaved_ms)
    return result


def _ratios(rows: list[Row]) -> dict[str, float]:
    by = {(r.model, r.implementation): r for r in rows}
    timm_r = by[(TIMM_REFERENCE, "timm")]
    ours = by[(TIMM_REFERENCE, "segkit")]
    base = by[(BASELINE, "timm")]
    bf16 = {}
    if ours.latency_bf16_ms and base.latency_bf16_ms:
        bf16 = {
            "bf16_fast_vs_timm_eager_fp32_speedup": timm_r.latency_eager_ms / ours.latency_bf16_ms,
            "res2net_over_resnet_latency_bf16": ours.latency_bf16_ms / base.latency_bf16_ms,
        }
    extra = {}
    for column, label in (
        ("latency_compiled_ms", "compiled"),
        ("latency_bf16_compiled_ms", "bf16_compiled"),
        ("latency_onnxruntime_ms", "onnxruntime"),
        ("latency_openvino_ms", "openvino"),
        ("latency_openvino_bf16_ms", "openvino_bf16"),
    ):
        ours_ms, base_ms = getattr(ours, column), getattr(base, column)
        if ours_ms and base_ms:
            extra[f"{label}_vs_timm_eager_fp32_speedup"] = timm_r.latency_eager_ms / ours_ms
            extra[f"res2net_over_resnet_latency_{label}"] = ours_ms / base_ms
    return (
        bf16
        | extra
        | {
            "fast_vs_timm_eager_speedup": timm_r.latency_eager_ms / ours.latency_fast_ms,
            "segkit_eager_vs_timm_eager_speedup": timm_r.latency_eager_ms / ours.latency_eager_ms,
            "train_segkit_layout_vs_timm_default_speedup": timm_r.train_step_default_ms
            / ours.train_step_segkit_layout_ms,
            "train_same_layout_vs_timm_speedup": timm_r.train_step_default_ms / ours.train_step_default_ms,
            "res2net_over_resnet_latency_fast": ours.latency_fast_ms / base.latency_fast_ms,
            "res2net_over_resnet_latency_eager": ours.latency_eager_ms / base.latency_eager_ms,
            "res2net_over_resnet_throughput_fast": base.throughput_fast_img_s / ours.throughput_fast_img_s,
            "res2net_over_resnet_train_step": ours.train_step_segkit_layout_ms / base.train_step_segkit_layout_ms,
        }
    )


def _cell(value: float | None, width: int) -> str:
    return f"{value:>{width}.1f}" if value else f"{'-':>{width}}"


def format_table(result: BenchResult) -> str:
    s = result.settings
    head = (
        f"{'model':<20} {'impl':<7} {'lat eager ms':>12} {'lat fast ms':>11} {'lat compiled':>12} "
        f"{'lat bf16 ms':>11} {'bf16 compiled':>13} {'onnxruntime':>11} {'openvino':>9} {'ov bf16':>8} "
        f"{'thr eager/s':>11} {'thr fast/s':>10} {'train default ms':>16} {'train segkit ms':>15}"
    )
    lines = [
        f"segkit bench backbone on {result.machine['device']} "
        f"({result.machine.get('gpu', result.machine.get('cpu_model', result.machine['cpu']))}; "
        f"{result.machine.get('bf16_feature', '')}), "
        f"{result.machine['date']}, torch {result.machine['torch']}, {result.machine['threads']} threads",
        f"latency: batch 1 at {s.latency_size_px}px; throughput: batch {s.throughput_batch} at "
        f"{s.throughput_size_px}px; train step: batch {s.train_batch} at {s.train_size_px}px, default = NCHW fp32, "
        "segkit = channels-last"
        + (" + bf16 autocast" if result.machine.get("bf16_pays") else " fp32 (bf16 not native or not faster)"),
        head,
        "-" * len(head),
    ]
    for r in result.rows:
        lines.append(
            f"{r.model:<20} {r.implementation:<7} {r.latency_eager_ms:>12.1f} {r.latency_fast_ms:>11.1f} "
            f"{_cell(r.latency_compiled_ms, 12)} {_cell(r.latency_bf16_ms, 11)} "
            f"{_cell(r.latency_bf16_compiled_ms, 13)} {_cell(r.latency_onnxruntime_ms, 11)} "
            f"{_cell(r.latency_openvino_ms, 9)} {_cell(r.latency_openvino_bf16_ms, 8)} "
            f"{r.throughput_eager_img_s:>11.1f} {r.throughput_fast_img_s:>10.1f} "
            f"{r.train_step_default_ms:>16.1f} {r.train_step_segkit_layout_ms:>15.1f}"
        )
    compile_s = [f"{r.model} {r.compile_s:.0f} s" for r in result.rows if r.compile_s]
    if compile_s:
        lines.append("first compiled call (compilation included): " + ", ".join(compile_s))
    if result.interleaved_ms:
        lines.append(
            "interleaved, batch 1 (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in result.interleaved_ms.items())
        )
    lines.append("")
    lines.extend(f"{k:<48} {v:6.3f}" for k, v in result.ratios.items())
    return "\n".join(lines)


def write_json(result: BenchResult, path: str | Path) -> None:
    payload = {
        "settings": asdict(result.settings),
        "machine": result.machine,
        "rows": [asdict(r) for r in result.rows],
        "ratios": result.ratios,
        "interleaved_ms": result.interleaved_ms,
    }
    Path(path).write_text(json.dumps(payload, indent=2))
