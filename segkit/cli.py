"""The ``segkit`` command line (argparse). Each subcommand validates its flags and imports its heavy modules lazily,
so ``segkit --help`` starts fast."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from segkit.errors import SegkitError


def _add_bench(sub: argparse._SubParsersAction) -> None:
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
    bb.set_defaults(func=_run_bench_backbone)
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
    bm.set_defaults(func=_run_bench_metrics)
    bd = targets.add_parser("data", help="training pipeline samples/s per loader worker")
    bd.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bd.set_defaults(func=_run_bench_data)


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


def _add_eval(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "eval",
        help="score saved masks (--pred/--gt) or a checkpoint",
        description=(
            "Score folders of saved masks against ground truth, paired by file stem (a prediction may carry a "
            "suffix such as _sal_fuse). Saliency: MAE, S-measure, weighted F, F- and E-measure (adaptive, mean, "
            "max), Boundary IoU, with the MATLAB toolbox's conventions. Segmentation: mIoU, aAcc, mAcc, FWIoU, "
            "mDice, per-class IoU, Boundary IoU."
        ),
    )
    ev.add_argument(
        "--task",
        choices=("saliency", "segmentation"),
        help="required with --pred; with --checkpoint it must agree with the checkpoint's task",
    )
    ev.add_argument(
        "--pred",
        action="append",
        metavar="[NAME=]DIR",
        help="folder of predictions; repeat (as NAME=DIR) to compare several methods in one table",
    )
    ev.add_argument("--gt", metavar="DIR", help="folder of ground-truth masks (with --pred)")
    ev.add_argument("--checkpoint", metavar="CKPT", help="score a trained model instead of saved masks")
    ev.add_argument("--data", metavar="ROOT", help="dataset root for --checkpoint (default: the built-in data)")
    ev.add_argument("--split", default="val", help="split to score with --checkpoint (default: val)")
    ev.add_argument("--tta", action="store_true", help="multi-scale (0.5-1.75) + flip test-time augmentation")
    ev.add_argument("--output-stride", type=int, choices=(8, 16, 32), help="evaluate at another output stride")
    ev.add_argument("--num-classes", type=int, default=0, help="number of classes (segmentation)")
    ev.add_argument("--json", metavar="FILE", help="write the scores as JSON")
    ev.add_argument("--curves", metavar="FILE.png", help="draw PR and F-measure curves (saliency)")
    ev.add_argument("--format", default="text", choices=("text", "md", "csv", "latex"), help="table format")
    ev.add_argument(
        "--strict-size",
        action="store_true",
        help="a prediction of another size than its ground truth is an error (default: resized)",
    )
    ev.add_argument("--workers", type=int, default=None, help="processes reading and scoring (default: CPUs)")
    ev.set_defaults(func=_run_eval)


def _parse_methods(values: list[str]) -> dict[str, str]:
    methods: dict[str, str] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep:
            name, folder = Path(value).name or value, value
        if name in methods:
            raise SegkitError(f"--pred name '{name}' is given twice; name each method: --pred NAME=DIR")
        methods[name] = folder
    return methods


def _run_eval(args: argparse.Namespace) -> int:
    import json

    if args.checkpoint:
        if args.pred or args.gt:
            raise SegkitError("give either --checkpoint or --pred/--gt, not both")
        from segkit.engine.commands import eval_checkpoint

        return eval_checkpoint(args)
    if not (args.pred and args.gt and args.task):
        raise SegkitError("segkit eval needs --task with --pred DIR --gt DIR, or --checkpoint CKPT")

    from segkit.metrics.folders import (
        SALIENCY_KEYS,
        SEGMENTATION_KEYS,
        evaluate_folders,
        format_table,
        plot_curves,
    )

    methods = _parse_methods(args.pred)
    results = {}
    for name, folder in methods.items():
        scores = evaluate_folders(args.task, folder, args.gt, args.num_classes, args.strict_size, args.workers)
        _report_eval_problems(name, scores)
        results[name] = scores
    keys = SALIENCY_KEYS if args.task == "saliency" else SEGMENTATION_KEYS
    print(format_table(results, keys, args.format))
    if args.json:
        payload = {name: _jsonable(s, keys) for name, s in results.items()}
        Path(args.json).write_text(json.dumps(payload if len(payload) > 1 else next(iter(payload.values())), indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    if args.curves:
        if args.task != "saliency":
            raise SegkitError("--curves draws saliency PR/F-measure curves; it needs --task saliency")
        plot_curves(results, args.curves)
        print(f"wrote {args.curves}", file=sys.stderr)
    return 0


def _report_eval_problems(name: str, scores: dict) -> None:
    if scores["missing"]:
        shown = ", ".join(scores["missing"][:20]) + (" ..." if len(scores["missing"]) > 20 else "")
        print(f"[{name}] {len(scores['missing'])} ground-truth files have no prediction: {shown}", file=sys.stderr)
    if scores["resized"]:
        print(
            f"[{name}] {len(scores['resized'])} predictions differ in size from their ground truth and were "
            "resized to it (bilinear; nearest for labels); pass --strict-size to make this an error",
            file=sys.stderr,
        )
    for bad in scores["bad"]:
        print(f"[{name}] skipped {bad['path']}: {bad['problem']}", file=sys.stderr)


def _jsonable(scores: dict, keys: tuple[str, ...]) -> dict:
    out = {k: scores[k] for k in keys}
    extra = ("per_class_iou", "per_class_boundary_iou", "trimap_miou", "count", "missing", "resized", "bad")
    out.update({k: scores[k] for k in extra if k in scores})
    return out


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


def _add_train(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser(
        "train",
        help="train a saliency or segmentation model (the main job)",
        description=(
            "Train on the built-in dataset (default) or your data. Without --config it uses "
            "configs/demo_<task>.yaml. Writes a run folder with config.yaml, last.pt, best.pt, metrics.csv and "
            "train.log. Scale out with `torchrun --nproc_per_node=N -m segkit train ...`."
        ),
    )
    tr.add_argument("--task", choices=("saliency", "segmentation"), required=True)
    tr.add_argument("--config", metavar="FILE", help="experiment YAML (see configs/)")
    tr.add_argument("--data", metavar="ROOT", help="dataset root (DUTS for saliency, VOCdevkit for segmentation)")
    tr.add_argument("--images", metavar="DIR", help="saliency: train on any image folder ... ")
    tr.add_argument("--masks", metavar="DIR", help="... and its mask folder, paired by file stem")
    tr.add_argument("--out", metavar="DIR", help="run folder (default: runs/<task>_<backbone>_<time>)")
    tr.add_argument("--epochs", type=int, help="passes over the training set (replaces schedule.max_steps)")
    tr.add_argument("--max-steps", type=int, help="optimiser steps")
    tr.add_argument("--batch-size", type=int, help="batch size per process")
    tr.add_argument("--image-size", type=int, help="training crop / resize side in px")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    tr.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from segkit.engine.commands import train_command

    return train_command(args)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    pr = sub.add_parser(
        "predict",
        help="write mask predictions for images",
        description=(
            "One PNG per input, named by its stem, at the input's size: an 8-bit grey map (saliency) or a palette "
            "PNG whose indices are class ids (segmentation). Unreadable inputs are reported and skipped (exit 1)."
        ),
    )
    src = pr.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="CKPT", help="a segkit checkpoint")
    src.add_argument("--model", metavar="FILE.onnx", help="an exported ONNX model (run with onnxruntime)")
    pr.add_argument("--input", nargs="+", required=True, metavar="PATH", help="files, folders or globs")
    pr.add_argument("--output", required=True, metavar="DIR")
    pr.add_argument("--probs", action="store_true", help="also write probabilities (saliency map / max prob)")
    pr.add_argument("--overlay", action="store_true", help="also write the mask blended over the image")
    pr.add_argument("--tta", action="store_true", help="multi-scale + flip test-time augmentation")
    pr.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    pr.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    from segkit.engine.commands import predict_command

    return predict_command(args)


def _add_export(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser("export", help="export a checkpoint to ONNX, checked with onnxruntime")
    ex.add_argument("--checkpoint", required=True, metavar="CKPT")
    ex.add_argument("--format", default="onnx", choices=("onnx",))
    ex.add_argument("--output", required=True, metavar="FILE")
    ex.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from segkit.engine.export import export_onnx

    result = export_onnx(args.checkpoint, args.output)
    print(f"wrote {result['path']}; onnxruntime vs PyTorch max abs difference {result['max_abs_diff']:.2e}")
    return 0


def _run_bench_data(args: argparse.Namespace) -> int:
    from segkit.bench.data import run_data_bench

    _print_results(run_data_bench(), args.json)
    return 0


def _add_data(sub: argparse._SubParsersAction) -> None:
    da = sub.add_parser("data", help="make the demo dataset, check a dataset, prepare VOC train_aug")
    cmds = da.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    mk = cmds.add_parser("make-demo", help="write the built-in dataset (DUTS or VOC layout)")
    mk.add_argument("--task", choices=("saliency", "segmentation"), required=True)
    mk.add_argument("out", metavar="OUT")
    mk.set_defaults(func=_run_make_demo)
    ck = cmds.add_parser(
        "check",
        help="read every file and report problems (exit 1 if any)",
        description="Reports samples per split, unpaired files, unreadable/truncated files, size mismatches, "
        "out-of-range mask values and the conversions reading applies. Never changes a file.",
    )
    ck.add_argument("root", metavar="ROOT")
    ck.add_argument("--task", choices=("saliency", "segmentation"), required=True)
    ck.add_argument("--json", metavar="FILE", help="write {ok, samples, problems, conversions} as JSON")
    ck.set_defaults(func=_run_check)
    va = cmds.add_parser("prepare-voc-aug", help="build SegmentationClassAug + train_aug.txt from SBD")
    va.add_argument("--voc", required=True, metavar="ROOT", help="VOCdevkit or VOC2012 folder")
    va.add_argument("--sbd", required=True, metavar="SBD_ROOT", help="benchmark_RELEASE (or its dataset/)")
    va.add_argument("--overwrite", action="store_true", help="rewrite existing SegmentationClassAug PNGs")
    va.set_defaults(func=_run_voc_aug)


def _run_make_demo(args: argparse.Namespace) -> int:
    from segkit.data.builtin import make_demo

    out = make_demo(args.task, args.out)
    print(f"wrote the built-in {args.task} dataset to {out}; try: segkit data check {out} --task {args.task}")
    return 0


def _run_check(args: argparse.Namespace) -> int:
    import json

    from segkit.data.check import check_dataset, format_report

    report = check_dataset(args.root, args.task)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_json(), indent=2))
    return 0 if report.ok else 1


def _run_voc_aug(args: argparse.Namespace) -> int:
    from segkit.data.voc import prepare_voc_aug

    result = prepare_voc_aug(args.voc, args.sbd, args.overwrite)
    print(
        f"train_aug: {result['train_aug']} ids ({result['from_voc']} from VOC, {result['from_sbd']} converted "
        f"from SBD, {result['kept']} kept)"
    )
    if result["missing"]:
        print(f"{len(result['missing'])} ids had no annotation and were left out: {result['missing'][:10]}")
    return 0


def _add_render(sub: argparse._SubParsersAction) -> None:
    rd = sub.add_parser(
        "render",
        help="render a qualitative comparison that shows boundary detail",
        description=(
            "One row per image: image | ground truth | each method. Method panels show false positives and "
            "false negatives in two colour-blind-safe colours over the shaded ground-truth boundary band, a zoomed "
            "inset where the methods disagree most along the boundary, and per-image scores (IoU and Boundary IoU "
            "for segmentation, MAE and max F for saliency)."
        ),
    )
    rd.add_argument("--task", choices=("saliency", "segmentation"), required=True)
    rd.add_argument("--images", required=True, metavar="DIR")
    rd.add_argument("--gt", metavar="DIR", help="ground-truth masks (without: no error panels or scores)")
    rd.add_argument("--pred", action="append", default=[], metavar="NAME=DIR", help="a method's saved masks")
    rd.add_argument("--checkpoint", action="append", default=[], metavar="NAME=CKPT", help="a model to run")
    rd.add_argument("--output", required=True, metavar="FILE", help="figure: .png, .pdf or .svg")
    rd.add_argument("--html", metavar="DIR", help="also write a browsable page of every image")
    rd.add_argument("--sort", action="store_true", help="rows ordered by how much the methods differ")
    rd.add_argument("--max-rows", type=int, default=0, help="at most N rows in the figure")
    rd.add_argument("--num-classes", type=int, default=21, help="segmentation classes (default 21, VOC)")
    rd.set_defaults(func=_run_render)


def _named(values: list[str], flag: str) -> dict[str, str]:
    named: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise SegkitError(f"{flag} expects NAME=PATH, got '{value}'")
        if name in named:
            raise SegkitError(f"method name '{name}' is given twice")
        named[name] = path
    return named


def _run_render(args: argparse.Namespace) -> int:
    from segkit.viz import build_comparison, render_figure, render_html

    methods: dict = dict(_named(args.pred, "--pred"))
    class_names: tuple[str, ...] = ()
    for name, ckpt in _named(args.checkpoint, "--checkpoint").items():
        if name in methods:
            raise SegkitError(f"method name '{name}' is given twice")
        from segkit.engine.predictor import Predictor

        predictor = Predictor(ckpt)
        if predictor.task != args.task:
            raise SegkitError(f"checkpoint '{ckpt}' is a {predictor.task} model, not {args.task}")
        methods[name] = predictor.predict
        class_names = class_names or predictor.class_names
    if args.task == "segmentation" and not class_names and args.num_classes == 21:
        from segkit.data.voc import VOC_CLASSES

        class_names = VOC_CLASSES
    comp = build_comparison(
        args.task, args.images, methods, args.gt, args.num_classes, class_names, sort=args.sort, max_rows=args.max_rows
    )
    for method, missing in comp.skipped.items():
        print(f"skipped {len(missing)} rows: {method} lacks {', '.join(missing[:10])}", file=sys.stderr)
    if comp.resized:
        print(
            f"resized {len(comp.resized)} masks to their image's size: {', '.join(comp.resized[:5])}", file=sys.stderr
        )
    if len(comp.methods) == 1:
        print("one method only: the inset shows where it errs most along the boundary", file=sys.stderr)
    print(f"wrote {render_figure(comp, args.output)} ({len(comp.rows)} rows)")
    if args.html:
        print(f"wrote {render_html(comp, args.html)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segkit",
        description="Semantic segmentation and salient object detection on the Res2Net backbone.",
    )
    from segkit import __version__

    parser.add_argument("--version", action="version", version=f"segkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_eval(sub)
    _add_predict(sub)
    _add_export(sub)
    _add_data(sub)
    _add_render(sub)
    _add_bench(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SegkitError as err:
        print(f"segkit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("segkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
