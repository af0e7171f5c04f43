"""``segkit bench``: speed measurements, side by side in one run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from segkit.errors import SegkitError


def add_parser(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser(
        "bench",
        help="measure speed on this machine (backbone, predict, metrics, data)",
        description=(
            "How fast segkit runs on this machine, side by side with what you would otherwise run (timm, a plain "
            "timm + smp loop, PySODMetrics), in one run. Research measurements (Res2Net's GPU gap, bf16 sweeps) are "
            "scripts under benchmarks/ in the repository."
        ),
    )
    targets = bench.add_subparsers(dest="target", required=True, metavar="TARGET")
    bb = targets.add_parser(
        "backbone",
        help="Res2Net vs ResNet-50 and vs timm: latency, throughput, training step",
        description=(
            "Answers the paper's open question (does the hierarchy cost speed?): forward latency at batch 1, "
            "throughput at a larger batch and a training step, for ResNet-50 and the Res2Net-50 variants, eager "
            "and on the inference fast path (fp32, bf16 where native, each also compiled; ONNX Runtime on the "
            "CPU), and segkit's Res2Net vs timm's with the same weights."
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
    bb.add_argument(
        "--no-compile", action="store_true", help="skip the torch.compile columns (each compile takes 5-60 s)"
    )
    bb.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime and OpenVINO columns (CPU only)")
    bb.set_defaults(run=_run_bench_backbone)
    bm = targets.add_parser(
        "metrics",
        help="segkit eval vs a plain PySODMetrics loop on the same files",
        description=(
            "Writes N synthetic 400x300 prediction/mask PNG pairs, then times two whole processes on them: "
            "'segkit eval --task saliency' and a plain Python loop over PySODMetrics' Fmeasure, WeightedFmeasure, "
            "Smeasure, Emeasure and MAE; reports the speed-up and the largest difference between their numbers. "
            "With --datasets/--methods above 1: a results table instead, 'segkit eval --data ROOT --pred ...' "
            "against the same loop over every method and dataset (e.g. --datasets 3 --methods 3 --pairs 300)."
        ),
    )
    bm.add_argument("--pairs", type=int, default=1000, help="image pairs (per dataset) (default: 1000)")
    bm.add_argument("--datasets", type=int, default=1, help="test sets in the table case (default 1: one folder)")
    bm.add_argument("--methods", type=int, default=1, help="methods in the table case (default 1)")
    bm.add_argument(
        "--toolkit",
        metavar="DIR",
        help="the table case: time PySODEvalToolkit's own eval.py from this checkout (default: $PYSODEVALTOOLKIT) "
        "instead of the plain PySODMetrics loop; it needs tabulate and openpyxl",
    )
    bm.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the runs in turn (segkit on every core, segkit in one process, the reference) this many times: "
        "medians reported, with each round's times and speed-up (default: 1)",
    )
    bm.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bm.set_defaults(run=_run_bench_metrics)
    bp = targets.add_parser(
        "predict",
        help="segkit predict vs a plain timm + smp loop over the same images",
        description=(
            "Writes N synthetic 500x375 JPEGs (or of mixed sizes) and a DeepLabv3+ Res2Net-50 checkpoint (random "
            "weights), then times "
            "two whole processes over them: 'segkit predict' and the plain loop a user writes with timm + "
            "segmentation-models-pytorch (fp32, eager, one image at a time, same weights). Reports images/s, the "
            "speed-up, the share of mask pixels on which the two agree, and what segkit predict said of the engine "
            "and precision it ran (and why)."
        ),
    )
    bp.add_argument("--count", type=int, default=200, help="number of images (default: 200)")
    bp.add_argument(
        "--predict-args",
        default="",
        metavar="ARGS",
        help="extra flags for segkit predict, quoted, e.g. --predict-args='--compile' (default: none)",
    )
    bp.add_argument(
        "--mixed-sizes",
        action="store_true",
        help="images of 16 sizes in the manner of a photo collection such as VOC (500 px on the long side; 15 "
        "shapes once padded), drawn with a fixed seed, instead of all 500x375",
    )
    bp.add_argument(
        "--networks",
        nargs="*",
        metavar="NAME",
        help="instead: every network segkit ships (or those whose names contain a NAME: PraNet, SINet, PoolNet, "
        "DeepLab, saliency) at its own input size, batch 1, on every engine: PyTorch eager, segkit's own path "
        "(fp32, bf16 where native), ONNX Runtime, OpenVINO (fp32, bf16 where native; when installed), each "
        "checked against PyTorch and timed interleaved; then segkit's fastest over the fastest other engine, and (on a "
        "CPU) the engine --engine auto picks, with --precision auto and fp32, and its time over the fastest",
    )
    bp.add_argument("--rounds", type=int, default=5, help="--networks: interleaved timing rounds (default: 5)")
    bp.add_argument(
        "--device",
        default="cpu",
        help="--networks: cpu (every engine) or cuda (PyTorch eager fp32 and bf16 autocast against segkit's "
        "fast path: cuDNN's fused convolutions where they pay, CUDA graphs; no other engine runs on a GPU here) "
        "(default: cpu)",
    )
    bp.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bp.set_defaults(run=_run_bench_predict)
    bd = targets.add_parser("data", help="training pipeline samples/s per loader worker")
    bd.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bd.set_defaults(run=_run_bench_data)


def _run_bench_backbone(args: argparse.Namespace) -> int:
    from segkit.accel.hardware import check_device
    from segkit.bench.backbone import (
        RES2NET_VARIANTS,
        BenchSettings,
        format_table,
        run_backbone_bench,
        write_json,
    )
    from segkit.models.backbones import BACKBONES

    check_device(args.device)
    variants = tuple(args.variants or RES2NET_VARIANTS)
    for name in variants:
        if name not in BACKBONES:
            from segkit.errors import unknown_name

            raise unknown_name("backbone", name, BACKBONES)
    if "res2net50_26w_4s" not in variants:
        variants = ("res2net50_26w_4s", *variants)  # the timm comparison needs it
    _require_positive(
        args, "repeats", "latency_size", "throughput_batch", "throughput_size", "train_batch", "train_size"
    )
    settings = BenchSettings(
        device=args.device,
        latency_size_px=args.latency_size,
        throughput_batch=args.throughput_batch,
        throughput_size_px=args.throughput_size,
        train_batch=args.train_batch,
        train_size_px=args.train_size,
        repeats=args.repeats,
        variants=variants,
        compile=not args.no_compile,
        onnx=not args.no_onnx,
    )
    result = run_backbone_bench(settings, progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    return 0


def _run_bench_predict(args: argparse.Namespace) -> int:
    import shlex

    from segkit.bench.predict import format_predict, run_predict_bench, write_predict_json

    if args.networks is not None:
        from segkit.accel.hardware import check_device
        from segkit.bench.engines import format_networks, run_networks_bench

        _require_positive(args, "rounds")
        check_device(args.device)
        result = run_networks_bench(
            args.rounds, args.networks, lambda m: print(m, file=sys.stderr, flush=True), args.device
        )
        if not result["rows"]:
            raise SegkitError(f"--networks {' '.join(args.networks)} names none of segkit's networks")
        print(format_networks(result))
        if args.json:
            write_predict_json(result, args.json)
            print(f"wrote {args.json}")
        return 0
    if args.device != "cpu":
        raise SegkitError("--device applies to --networks only (segkit predict runs on a CUDA GPU when there is one)")
    _require_positive(args, "count")
    print(f"writing {args.count} images and timing both predictors ...", file=sys.stderr, flush=True)
    result = run_predict_bench(args.count, shlex.split(args.predict_args), mixed_sizes=args.mixed_sizes)
    print(format_predict(result))
    if args.json:
        write_predict_json(result, args.json)
        print(f"wrote {args.json}")
    return 0


def _require_positive(args: argparse.Namespace, *flags: str) -> None:
    for flag in flags:
        if getattr(args, flag) < 1:
            raise SegkitError(f"--{flag.replace('_', '-')} must be a positive integer")


def _run_bench_metrics(args: argparse.Namespace) -> int:

    from segkit.bench.metrics import run_metrics_bench, run_table_bench, toolkit_dir

    if min(args.pairs, args.datasets, args.methods, args.rounds) < 1:
        raise SegkitError("--pairs, --datasets, --methods and --rounds must be positive integers")
    if args.datasets == args.methods == 1:
        if args.toolkit:
            raise SegkitError(
                "--toolkit times PySODEvalToolkit on a results table: give --datasets or --methods above 1"
            )
        print(f"writing {args.pairs} pairs and timing both evaluators ...", file=sys.stderr)
        result = run_metrics_bench(args.pairs, rounds=args.rounds)
    else:
        total = args.pairs * args.datasets * args.methods
        print(f"writing {args.methods} methods x {args.datasets} datasets x {args.pairs} pairs ({total} scores) and "
              "timing both evaluators ...", file=sys.stderr)  # fmt: skip
        toolkit = toolkit_dir(args.toolkit)
        result = run_table_bench(args.datasets, args.methods, args.pairs, toolkit=toolkit, rounds=args.rounds)
    _print_results(result, args.json)
    return 0 if result["same_numbers"] else 1


def _print_results(result: dict, json_path: str | None) -> None:
    """A benchmark's flat results, one per line, and optionally as JSON."""
    import json

    for key, value in result.items():
        if isinstance(value, list) and all(isinstance(v, float) for v in value):
            value = " ".join(f"{v:.4g}" for v in value)
        print(f"{key:<36} {value:.6g}" if isinstance(value, float) else f"{key:<36} {value}")
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))


def _run_bench_data(args: argparse.Namespace) -> int:
    from segkit.bench.data import run_data_bench

    _print_results(run_data_bench(), args.json)
    return 0
