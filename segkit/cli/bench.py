"""``segkit bench``: speed measurements, side by side in one run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from segkit.errors import SegkitError


def add_parser(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser(
        "bench", help="measure speed (backbone, metrics, data)", description="Speed benchmarks, side by side."
    )
    targets = bench.add_subparsers(dest="target", required=True, metavar="TARGET")
    bb = targets.add_parser(
        "backbone",
        help="Res2Net vs ResNet-50 and vs timm: latency, throughput, training step",
        description=(
            "Answers the paper's open question (does the hierarchy cost speed?): forward latency at batch 1, "
            "throughput at a larger batch and a training step, for ResNet-50 and the Res2Net-50 variants, eager "
            "and on the inference fast path, and segkit's Res2Net vs timm's with the same weights."
        ),
    )
    bb.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    bb.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bb.add_argument("--repeats", type=int, default=5, help="timed repetitions per measurement (median reported)")
    bb.add_argument("--latency-size", type=int, default=512, help="input side in px for batch-1 latency")
    bb.add_argument("--throughput-batch", type=int, default=8, help="batch size for throughput")
    bb.add_argument("--throughput-size", type=int, default=256, help="input side in px for throughput")
    bb.add_argument("--train-batch", type=int, default=8, help="batch size of the training step")
    bb.add_argument("--train-size", type=int, default=256, help="input side in px of the training step")
    bb.add_argument("--variants", nargs="+", metavar="NAME", help="Res2Net variants (default: the paper's five)")
    bb.set_defaults(run=_run_bench_backbone)
    bm = targets.add_parser(
        "metrics",
        help="segkit eval vs a plain PySODMetrics loop on the same files",
        description=(
            "Writes N synthetic 400x300 prediction/mask PNG pairs, then times two whole processes on them: "
            "'segkit eval --task saliency' and a plain Python loop over PySODMetrics' Fmeasure, WeightedFmeasure, "
            "Smeasure, Emeasure and MAE; reports the speed-up and the largest difference between their numbers."
        ),
    )
    bm.add_argument("--pairs", type=int, default=1000, help="number of image pairs (default: 1000)")
    bm.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bm.set_defaults(run=_run_bench_metrics)
    bd = targets.add_parser("data", help="training pipeline samples/s per loader worker")
    bd.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bd.set_defaults(run=_run_bench_data)


def _run_bench_backbone(args: argparse.Namespace) -> int:
    import torch

    from segkit.bench.backbone import (
        RES2NET_VARIANTS,
        BenchSettings,
        format_table,
        run_backbone_bench,
        write_json,
    )
    from segkit.models.backbones import BACKBONES

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SegkitError("--device cuda was given but no CUDA device is visible; use --device cpu")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        raise SegkitError(f"--device must be cpu or cuda, got '{args.device}'")
    variants = tuple(args.variants or RES2NET_VARIANTS)
    for name in variants:
        if name not in BACKBONES:
            from segkit.errors import unknown_name

            raise unknown_name("backbone", name, BACKBONES)
    if "res2net50_26w_4s" not in variants:
        variants = ("res2net50_26w_4s", *variants)  # the timm comparison needs it
    for flag in ("repeats", "latency_size", "throughput_batch", "throughput_size", "train_batch", "train_size"):
        if getattr(args, flag) < 1:
            raise SegkitError(f"--{flag.replace('_', '-')} must be a positive integer")
    settings = BenchSettings(
        device=args.device,
        latency_size_px=args.latency_size,
        throughput_batch=args.throughput_batch,
        throughput_size_px=args.throughput_size,
        train_batch=args.train_batch,
        train_size_px=args.train_size,
        repeats=args.repeats,
        variants=variants,
    )
    result = run_backbone_bench(settings, progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    return 0


def _run_bench_metrics(args: argparse.Namespace) -> int:

    from segkit.bench.metrics import run_metrics_bench

    if args.pairs < 1:
        raise SegkitError("--pairs must be a positive integer")
    print(f"writing {args.pairs} pairs and timing both evaluators ...", file=sys.stderr)
    result = run_metrics_bench(args.pairs)
    _print_results(result, args.json)
    return 0 if result["same_numbers"] else 1


def _print_results(result: dict, json_path: str | None) -> None:
    """A benchmark's flat results, one per line, and optionally as JSON."""
    import json

    for key, value in result.items():
        print(f"{key:<36} {value:.6g}" if isinstance(value, float) else f"{key:<36} {value}")
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))


def _run_bench_data(args: argparse.Namespace) -> int:
    from segkit.bench.data import run_data_bench

    _print_results(run_data_bench(), args.json)
    return 0
