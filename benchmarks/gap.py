"""Where Res2Net-50 loses throughput to ResNet-50, and what closes the gap: a research script, outside the wheel.

    python benchmarks/gap.py --device cuda --batch 32 --size 512 [--compile-modes none] [--json FILE]

Every attempt is measured for both networks in one process on one device, at one batch and input size, and
reported as img/s and as the gap: ResNet-50's throughput over Res2Net-50's (1.30: ResNet-50 runs 1.3x as many
images per second), kept or not. Attempts that would run the same code as another on the device are left out (on a
CPU: CUDA graphs and cuDNN's benchmark mode).

- the inference fast path in fp32 (TF32 as PyTorch defaults on a GPU) and in bf16, with and without cuDNN's
  benchmark mode (it times the algorithms for each shape once), and on a CPU each also without oneDNN's fused
  convolutions;
- the Res2Net splits padded with zero channels to a multiple of 8 or 16 (26/52/104/208 are not multiples of 16);
- on a GPU, cuDNN's fused convolution + bias (+ residual add) + ReLU (``prepare_for_inference(cudnn_fused=True)``)
  in fp32 and bf16, each with the padded splits;
- ``torch.compile`` (inductor, frozen weights) in its default and in its max-autotune mode, each in a
  subprocess with a time limit, since compiling is the slow part;
- a bf16 training step (channels-last, autocast), with and without benchmark mode.

And two measurements that say why: each 3x3 convolution shape of both networks timed alone (TFLOP/s), and a
profile of one forward grouped by operator (convolutions by kernel size, concatenation, the rest).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from segkit.accel.hardware import bf16_supported, resolve_precision
from segkit.accel.onednn import ConvAct, cudnn_fusion_available
from segkit.accel.precision import autocast
from segkit.bench.backbone import machine_info, randomize_batchnorm, time_call
from segkit.models import create_backbone, prepare_for_inference

MODELS = ("res2net50_26w_4s", "resnet50")


@dataclass(frozen=True)
class GapSettings:
    device: str = "cuda"
    batch: int = 32
    size_px: int = 512
    repeats: int = 20
    warmup: int = 3
    compile_modes: tuple[str, ...] = ("default", "max-autotune")
    compile_timeout_s: float = 240.0
    profile: bool = True
    profile_split_multiple: int = 1
    only_compile_and_profile: bool = False  # skip the eager attempts and the convolution table
    only: tuple[str, ...] = ()  # eager attempts whose names contain one of these (and no convolution table)


@dataclass
class Attempt:
    name: str
    img_s: dict[str, float] = field(default_factory=dict)  # model -> images per second
    note: str = ""

    @property
    def gap(self) -> float | None:
        """ResNet-50's img/s over Res2Net-50's: above 1, how many times ResNet-50's throughput is Res2Net-50's."""
        r, b = self.img_s.get(MODELS[0]), self.img_s.get(MODELS[1])
        return b / r if r and b else None


def _model(name: str, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    model = create_backbone(name)
    randomize_batchnorm(model)
    return model.to(device).eval()


def _img_s(fn: Callable[[], object], s: GapSettings, device: torch.device) -> float:
    return s.batch / time_call(fn, device, s.repeats, s.warmup)


def _inference_attempt(name: str, s: GapSettings, device: torch.device, benchmark: bool, **fast_kw) -> Attempt:
    attempt = Attempt(name)
    cudnn = False
    if fast_kw.get("cudnn_fused"):
        bf16 = resolve_precision(fast_kw.get("precision", "fp32"), device) == "bf16"  # as prepare_for_inference
        cudnn = cudnn_fusion_available(device, torch.bfloat16 if bf16 else torch.float32)
        if not cudnn:
            attempt.note = "cuDNN fusion unavailable here: ran unfused"
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = benchmark
    try:
        for model_name in MODELS:
            fast = prepare_for_inference(_model(model_name, device), **fast_kw)
            x = torch.randn(s.batch, 3, s.size_px, s.size_px, device=device)
            with torch.inference_mode():
                attempt.img_s[model_name] = _img_s(lambda f=fast, x=x: f(x), s, device)
            if cudnn:  # how many ran fused to the end (one that fails on its first call runs unfused)
                fused = [m.cudnn for m in fast.modules() if isinstance(m, ConvAct) and m.post != "none"]
                attempt.note += f"{model_name}: {sum(fused)} of {len(fused)} convolutions fused by cuDNN; "
            del fast
            _free(device)
    finally:
        torch.backends.cudnn.benchmark = old
    return attempt


def _train_attempt(name: str, s: GapSettings, device: torch.device, benchmark: bool) -> Attempt:
    attempt = Attempt(name, note=f"batch {max(1, s.batch // 2)}, SGD, channels-last, bf16 autocast")
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = benchmark
    try:
        for model_name in MODELS:
            model = _model(model_name, device).train().to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
            batch = max(1, s.batch // 2)
            x = torch.randn(batch, 3, s.size_px, s.size_px, device=device).contiguous(memory_format=torch.channels_last)

            def step(model=model, opt=opt, x=x) -> None:
                opt.zero_grad(set_to_none=True)
                with autocast(device):
                    loss = sum(f.float().square().mean() for f in model(x))
                loss.backward()
                opt.step()

            attempt.img_s[model_name] = batch / time_call(step, device, max(5, s.repeats // 2), s.warmup)
            del model, opt
            _free(device)
    finally:
        torch.backends.cudnn.benchmark = old
    return attempt


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _compile_attempt(plan: str, s: GapSettings) -> Attempt:
    """``torch.compile`` of the bf16 fast path, in a child process bounded by ``compile_timeout_s``.

    ``plan``: a torch.compile mode ("default", "max-autotune", ...), optionally with "+padN" (splits padded to N).
    """
    mode, _, pad = plan.partition("+pad")
    split_multiple = int(pad) if pad else 1
    padded = f" + splits padded to {split_multiple}" if split_multiple > 1 else ""
    attempt = Attempt(f"bf16 torch.compile mode={mode}{padded}")
    child = [sys.executable, __file__, "--compile-child", json.dumps([mode, split_multiple, _settings_dict(s)])]
    start = time.perf_counter()
    try:
        done = subprocess.run(child, capture_output=True, text=True, timeout=s.compile_timeout_s)
    except subprocess.TimeoutExpired:
        attempt.note = f"not measured: compiling both networks took over {s.compile_timeout_s:.0f} s"
        return attempt
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        attempt.note = f"failed: {last[:200]}"
        return attempt
    result = json.loads(done.stdout.strip().splitlines()[-1])
    attempt.img_s = result["img_s"]
    attempt.note = (
        "compile s: "
        + ", ".join(f"{k} {v:.0f}" for k, v in result["compile_s"].items())
        + f" (child process {time.perf_counter() - start:.0f} s)"
    )
    return attempt


def _settings_dict(s: GapSettings) -> dict:
    d = asdict(s)
    d["compile_modes"] = list(d["compile_modes"])
    return d


def compiled_img_s(mode: str, s: GapSettings, split_multiple: int = 1) -> dict:
    """Throughput of both networks' bf16 fast path compiled in ``mode`` (run in the child process)."""
    device = torch.device(s.device)
    torch.backends.cudnn.benchmark = True
    out: dict = {"img_s": {}, "compile_s": {}}
    for model_name in MODELS:
        fast = prepare_for_inference(
            _model(model_name, device), cuda_graphs=False, precision="bf16", split_multiple=split_multiple, onednn=False
        )  # plain modules: inductor does its own fusion
        compiled = torch.compile(fast, mode=None if mode == "default" else mode, options=None)
        x = torch.randn(s.batch, 3, s.size_px, s.size_px, device=device)
        with torch.inference_mode():
            start = time.perf_counter()
            compiled(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            out["compile_s"][model_name] = time.perf_counter() - start
            out["img_s"][model_name] = _img_s(lambda c=compiled, x=x: c(x), s, device)
        del fast, compiled
        torch._dynamo.reset()
    return out


def conv_table(s: GapSettings, device: torch.device, dtype: torch.dtype) -> list[dict]:
    """Each 3x3 convolution shape of the two networks at this batch and size, timed alone: ms and TFLOP/s.

    Res2Net-50 26w_4s runs its hierarchical 3x3 convolutions at 26/52/104/208 channels (three after one
    another per block), ResNet-50 one 3x3 at 64/128/256/512; the padded Res2Net widths are timed too.
    """
    rows = []
    side = s.size_px // 4
    stages = [(26, 64, side), (52, 128, side // 2), (104, 256, side // 4), (208, 512, side // 8)]
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        for width, resnet_width, hw in stages:
            for label, ch in (
                ("res2net split", width),
                ("res2net split padded to 8", -(-width // 8) * 8),
                ("res2net split padded to 16", -(-width // 16) * 16),
                ("resnet", resnet_width),
            ):
                conv = nn.Conv2d(ch, ch, 3, padding=1, bias=True).to(device, dtype)
                conv = conv.to(memory_format=torch.channels_last)
                x = torch.randn(s.batch, ch, hw, hw, device=device, dtype=dtype).contiguous(
                    memory_format=torch.channels_last
                )
                with torch.inference_mode():
                    sec = time_call(lambda c=conv, x=x: c(x), device, s.repeats, s.warmup)
                flops = 2 * s.batch * hw * hw * ch * ch * 9
                rows.append(
                    {"kind": label, "channels": ch, "side_px": hw, "ms": 1e3 * sec, "tflop_s": flops / sec / 1e12}
                )
    finally:
        torch.backends.cudnn.benchmark = old
    return rows


def profile_forward(s: GapSettings, device: torch.device, precision: str = "bf16") -> dict[str, dict[str, float]]:
    """Device time of one fast-path forward (no graph) in ``precision``, by operator group, per network, in ms."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    result = {}
    torch.backends.cudnn.benchmark = True
    for model_name in MODELS:
        fast = prepare_for_inference(
            _model(model_name, device), cuda_graphs=False, precision=precision, split_multiple=s.profile_split_multiple
        )
        x = torch.randn(s.batch, 3, s.size_px, s.size_px, device=device)
        with torch.inference_mode():
            for _ in range(3):
                fast(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            with profile(activities=activities, record_shapes=True) as prof:
                fast(x)
                if device.type == "cuda":
                    torch.cuda.synchronize()
        groups: dict[str, float] = {}
        for ev in prof.key_averages(group_by_input_shape=True):
            if not ev.key.startswith(("aten::", "mkldnn::")):  # kernels count through the operator launching them
                continue
            t = _self_time_us(ev, device)
            if t <= 0:
                continue
            key = _op_group(ev.key, ev.input_shapes)
            groups[key] = groups.get(key, 0.0) + t / 1e3
        result[model_name] = dict(sorted(groups.items(), key=lambda kv: -kv[1]))
    return result


def _self_time_us(ev, device: torch.device) -> float:
    if device.type == "cuda":
        for attr in ("self_device_time_total", "self_cuda_time_total"):
            if hasattr(ev, attr):
                return float(getattr(ev, attr))
        return 0.0
    return float(ev.self_cpu_time_total)


def _op_group(name: str, shapes) -> str:
    if "conv" in name:
        weight = shapes[1] if shapes and len(shapes) > 1 and shapes[1] else None
        if len(shapes) > 2 and shapes[2] and len(shapes[2]) == 4:  # oneDNN's conv + add: (input, other, weight, ...)
            weight = shapes[2]
        if weight and len(weight) == 4:
            k = weight[2]
            if k == 1:
                return "conv 1x1"
            grouped = " grouped" if shapes[0] and shapes[0][1] != weight[1] else ""
            return f"conv {k}x{k}{grouped} {weight[0]} out"
        return "conv"
    for word in ("cat", "add", "relu", "pool", "copy", "clone", "split", "slice"):
        if word in name:
            return word
    return "other"


def run_gap_bench(
    s: GapSettings, progress: Callable[[str], None] = print, update: Callable[[dict], None] = lambda result: None
) -> dict:
    """All attempts, in order; ``update`` gets the result so far after each step (a long run keeps what it has)."""
    device = torch.device(s.device)
    out: dict = {"settings": _settings_dict(s), "machine": machine_info(device), "attempts": []}
    bf16 = {"precision": "bf16"}
    cudnn = {"split_multiple": 16, "cudnn_fused": True}

    def infer(name: str, benchmark: bool, **kw) -> tuple[str, Callable[[], Attempt]]:
        if "cudnn_fused" not in kw:  # the separate steps unless the attempt is cuDNN's fusion (the GPU default)
            kw["cudnn_fused"] = False
            name += ", cuDNN fusion off" if gpu else ""
        return name, lambda: _inference_attempt(name, s, device, benchmark, **kw)

    def train(name: str, benchmark: bool) -> tuple[str, Callable[[], Attempt]]:
        return name, lambda: _train_attempt(name, s, device, benchmark)

    # oneDNN's fused convolutions are the CPU's default: there, the same paths without them too. CUDA graphs and
    # cuDNN's benchmark mode exist on a GPU only: on a CPU those attempts would time the same code again.
    gpu = device.type == "cuda"
    native_bf16 = bf16_supported(device)
    precisions = [("fp32", {}), *([("bf16", bf16)] if native_bf16 else [])]
    split = "bf16" if native_bf16 else "fp32"
    precision_kw = dict(precisions)[split]
    plans = [
        *[infer(f"{name} fast path", False, **kw) for name, kw in precisions],
        *[
            infer(f"{name} fast path, no oneDNN fusion", False, onednn=False, **kw)
            for name, kw in precisions
            if not gpu
        ],
        *(
            [
                infer("bf16 fast path, no CUDA graph", False, cuda_graphs=False, **bf16),
                infer("bf16 fast path + cudnn.benchmark", True, **bf16),
                infer("fp32 + benchmark + splits padded to 16", True, split_multiple=16),
                infer("fp32 + splits padded to 16 + cuDNN fused conv/bias/add/ReLU", True, **cudnn),
                infer("bf16 + splits padded to 16 + cuDNN fused conv/bias/add/ReLU", True, **cudnn, **bf16),
            ]
            if gpu and native_bf16
            else []
        ),
        *[
            infer(f"{split}{' + benchmark' * gpu} + splits padded to {m}", gpu, split_multiple=m, **precision_kw)
            for m in (8, 16)
        ],
        *([train("bf16 training step", False)] if native_bf16 else []),
        *([train("bf16 training step + benchmark", True)] if gpu and native_bf16 else []),
    ]
    if s.only:
        plans = [(label, plan) for label, plan in plans if any(o in label for o in s.only)]
    for label, plan in [] if s.only_compile_and_profile else plans:
        progress(f"measuring: {label} ...")
        out["attempts"].append(_attempt_dict(plan()))
        update(out)
    if not s.only_compile_and_profile and not s.only:
        progress("timing each 3x3 convolution shape alone ...")
        out["conv_table"] = conv_table(s, device, torch.bfloat16 if native_bf16 else torch.float32)
        update(out)
    if s.profile:
        progress(f"profiling one {split} forward of each network ...")
        out["profile_ms"] = profile_forward(s, device, split)
        update(out)
    for mode in s.compile_modes:
        progress(f"compiling ({mode}, at most {s.compile_timeout_s:.0f} s) ...")
        out["attempts"].append(_attempt_dict(_compile_attempt(mode, s)))
        update(out)
    return out


def _attempt_dict(a: Attempt) -> dict:
    return {"name": a.name, "img_s": a.img_s, "resnet_over_res2net": a.gap, "note": a.note}


def format_gap(result: dict) -> str:
    m, s = result["machine"], result["settings"]
    lines = [
        f"segkit bench gap on {m['device']} ({m.get('gpu', m.get('cpu_model'))}), {m['date']}, torch {m['torch']}; "
        f"batch {s['batch']} at {s['size_px']}px",
        f"{'attempt':<46} {MODELS[0] + ' img/s':>24} {MODELS[1] + ' img/s':>16} {'gap':>6}  note",
    ]
    for a in result["attempts"]:
        r, b = a["img_s"].get(MODELS[0]), a["img_s"].get(MODELS[1])
        ratio = a["resnet_over_res2net"]
        lines.append(
            f"{a['name']:<46} {(f'{r:.1f}' if r else '-'):>24} {(f'{b:.1f}' if b else '-'):>16} "
            f"{(f'{ratio:.3f}' if ratio else '-'):>6}  {a['note']}"
        )
    if "conv_table" in result:
        lines += [
            "",
            "3x3 convolutions alone (channels-last; bf16 where native, else fp32):",
            f"{'kind':<28} {'ch':>4} {'side':>5} {'ms':>8} {'TFLOP/s':>8}",
        ]
        for row in result["conv_table"]:
            lines.append(
                f"{row['kind']:<28} {row['channels']:>4} {row['side_px']:>5} {row['ms']:>8.3f} {row['tflop_s']:>8.1f}"
            )
    for model_name, groups in result.get("profile_ms", {}).items():
        total = sum(groups.values())
        pad = result["settings"].get("profile_split_multiple", 1)
        padded = f", splits padded to {pad}" if pad > 1 else ""
        lines += ["", f"profile of one forward{padded}, {model_name}: {total:.2f} ms of device time"]
        lines += [f"  {k:<24} {v:8.3f} ms  {100 * v / total:5.1f}%" for k, v in groups.items()]
    return "\n".join(lines)


def write_gap_json(result: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(result, indent=2))


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda or cpu (default: cuda)")
    parser.add_argument("--batch", type=int, default=32, help="batch size (default: 32)")
    parser.add_argument("--size", type=int, default=512, help="input side in px (default: 512)")
    parser.add_argument("--repeats", type=int, default=20, help="timed repetitions per measurement (median)")
    parser.add_argument(
        "--compile-modes", nargs="*", default=["default", "max-autotune"], metavar="MODE",
        help="torch.compile modes to try, each optionally with +padN (splits padded to N), e.g. default+pad16; "
        "none: no compilation",
    )  # fmt: skip
    parser.add_argument("--compile-timeout", type=float, default=240, help="seconds per compile attempt")
    parser.add_argument("--no-profile", action="store_true", help="skip the profile of one forward")
    parser.add_argument("--profile-split-multiple", type=int, default=1, metavar="N", help="profile, splits padded")
    parser.add_argument("--only-compile-and-profile", action="store_true", help="skip the eager attempts")
    parser.add_argument(
        "--only", nargs="+", metavar="TEXT", help="only the eager attempts whose names contain a TEXT (no conv table)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON (after every step)")
    parser.add_argument("--compile-child", help=argparse.SUPPRESS)  # the child process of one compile attempt
    args = parser.parse_args(argv)
    if args.compile_child:
        mode, split_multiple, settings = json.loads(args.compile_child)
        settings["compile_modes"] = tuple(settings["compile_modes"])
        print(json.dumps(compiled_img_s(mode, GapSettings(**settings), split_multiple)))
        return 0
    if min(args.batch, args.size, args.repeats) < 1:
        parser.error("--batch, --size and --repeats must be positive integers")
    settings = GapSettings(
        device=args.device,
        batch=args.batch,
        size_px=args.size,
        repeats=args.repeats,
        compile_modes=tuple(m for m in args.compile_modes if m != "none"),
        compile_timeout_s=args.compile_timeout,
        profile=not args.no_profile,
        profile_split_multiple=args.profile_split_multiple,
        only_compile_and_profile=args.only_compile_and_profile,
        only=tuple(args.only or ()),
    )
    update = (lambda result: write_gap_json(result, args.json)) if args.json else (lambda result: None)
    result = run_gap_bench(settings, progress=lambda m: print(m, file=sys.stderr, flush=True), update=update)
    print(format_gap(result))
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
