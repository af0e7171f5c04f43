"""The bf16 fast path against the fp32 one, for both task networks (and DeepLabv3, whose dense atrous
convolutions oneDNN's bf16 kernels handle worst) at several input sizes, side by side in one run: a research
script, outside the wheel.

    python benchmarks/precision_sweep.py [--device cpu] [--sizes HxW ...] [--repeats N] [--json FILE]

One size is not enough: a weight prepacked for oneDNN without the input's shape once made the bf16 PoolNet at
320 px three times slower than fp32 while every size the other benchmarks time was fine (benchmarks/RESULTS.md,
"bf16 against fp32"). So this times each network at five sizes and names any size where bf16 is the slower one.
Needs native bf16 (exit 2 without it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from segkit.accel.hardware import bf16_feature, bf16_supported
from segkit.bench.backbone import machine_info, randomize_batchnorm, time_call
from segkit.errors import SegkitError

BACKBONE = "res2net50_26w_4s"
# network -> (task, what create_model takes beyond the backbone, input sizes (H, W)): sides around the saliency
# model's 320 px; VOC-like shapes for the 21-class segmentation networks (DeepLabv3+, the default, and DeepLabv3)
VOC_LIKE = ((256, 256), (320, 480), (384, 512), (512, 512), (480, 640))
NETWORKS: dict[str, tuple[str, dict, tuple[tuple[int, int], ...]]] = {
    "saliency": ("saliency", {}, ((224, 224), (288, 288), (320, 320), (352, 352), (384, 384))),
    "segmentation": ("segmentation", {"num_classes": 21}, VOC_LIKE),
    "deeplabv3": ("segmentation", {"num_classes": 21, "arch": "deeplabv3"}, VOC_LIKE),
}


def run_precision_bench(
    device: str = "cpu",
    repeats: int = 3,
    sizes: tuple[tuple[int, int], ...] | None = None,
    progress: Callable[[str], None] = print,
) -> dict:
    """Median ms of one batch-1 forward on the fp32 and the bf16 fast path, per network and size (``sizes``
    replaces every network's defaults)."""
    from segkit.models import create_model, prepare_for_inference

    dev = torch.device(device)
    if not bf16_supported(dev):
        raise SegkitError(f"this device has no native bf16 ({bf16_feature(dev)}): there is no bf16 path to compare")
    rows = []
    for network, (task, extra, task_sizes) in NETWORKS.items():
        torch.manual_seed(0)
        model = create_model(task, backbone=BACKBONE, **extra).to(dev).eval()
        randomize_batchnorm(model)
        paths = {p: prepare_for_inference(model, precision=p) for p in ("fp32", "bf16")}
        for h, w in sizes or task_sizes:
            progress(f"timing the {network} network at {h}x{w} ...")
            x = torch.randn(1, 3, h, w, device=dev)
            with torch.inference_mode():
                ms = {p: 1e3 * time_call(lambda f=f, x=x: f(x), dev, repeats, 2) for p, f in paths.items()}
            rows.append({"network": network, "task": task, "size": f"{h}x{w}", "fp32_ms": ms["fp32"],
                         "bf16_ms": ms["bf16"], "bf16_speedup": ms["fp32"] / ms["bf16"]})  # fmt: skip
    return {
        "machine": machine_info(dev),
        "backbone": BACKBONE,
        "repeats": repeats,
        "rows": rows,
        "bf16_slower": [f"{r['network']} {r['size']}" for r in rows if r["bf16_speedup"] < 1.0],
    }


def format_precision(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"segkit bench precision on {m['device']} ({m.get('gpu', m.get('cpu_model'))}; {m['bf16_feature']}), "
        f"{m['date']}, torch {m['torch']}; {result['backbone']}, batch 1, medians of {result['repeats']}",
        f"{'network':<14} {'size':>9} {'fp32 ms':>9} {'bf16 ms':>9} {'bf16 speed-up':>14}",
    ]
    for r in result["rows"]:
        lines.append(
            f"{r['network']:<14} {r['size']:>9} {r['fp32_ms']:>9.1f} {r['bf16_ms']:>9.1f} {r['bf16_speedup']:>13.2f}x"
        )
    slower = result["bf16_slower"]
    lines.append("bf16 slower than fp32 at: " + ", ".join(slower) if slower else "bf16 faster at every size")
    return "\n".join(lines)


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` (or one number for a square) -> (H, W), positive."""
    parts = text.lower().split("x")
    try:
        h, w = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except (ValueError, IndexError):
        raise SegkitError(f"--sizes takes HxW or one side in px, e.g. 320x480 or 320; got '{text}'") from None
    if len(parts) > 2 or h < 32 or w < 32:
        raise SegkitError(f"--sizes: '{text}' is not HxW with both sides at least 32 px")
    return h, w


def write_precision_json(result: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(result, indent=2))


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per measurement (median)")
    parser.add_argument("--sizes", nargs="+", metavar="HxW", help="input sizes for every network instead of theirs")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    try:
        if args.repeats < 1:
            raise SegkitError("--repeats must be a positive integer")
        sizes = tuple(parse_size(s) for s in args.sizes) if args.sizes else None
        result = run_precision_bench(args.device, args.repeats, sizes, lambda m: print(m, file=sys.stderr, flush=True))
    except SegkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_precision(result))
    if args.json:
        write_precision_json(result, args.json)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
