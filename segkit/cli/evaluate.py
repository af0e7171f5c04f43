"""``segkit eval``: saved masks against ground truth (--pred/--gt), or a checkpoint on a dataset split."""

from __future__ import annotations

import argparse
import sys

from segkit.cli.common import (
    add_precision_flags,
    add_task_flag,
    check_writable_parent,
    named_paths,
    refuse_flags,
    say,
    write_json,
)
from segkit.errors import SegkitError

# flags of one mode that the other would silently ignore
CHECKPOINT_ONLY = {
    "data": "--data",
    "split": "--split",
    "tta": "--tta",
    "output_stride": "--output-stride",
    "precision": "--precision",
    "compile": "--compile",
}
FOLDERS_ONLY = {"gt": "--gt", "strict_size": "--strict-size", "workers": "--workers", "num_classes": "--num-classes"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "eval",
        help="score saved masks (--pred/--gt) or a checkpoint",
        description=(
            "Score folders of saved masks against ground truth, paired by file stem (a prediction may carry a "
            "suffix such as _sal_fuse), or a checkpoint (--checkpoint) on a dataset split at each image's size. "
            "Saliency: MAE, S-measure, weighted F, F- and E-measure (adaptive, mean, max), Boundary IoU, with the "
            "MATLAB toolbox's conventions. Segmentation: mIoU, aAcc, mAcc, FWIoU, mDice, per-class IoU, Boundary "
            "IoU. Flags that belong to the other mode are refused."
        ),
    )
    add_task_flag(ev, required=False, help="required with --pred; with --checkpoint it must agree with the checkpoint")
    ev.add_argument(
        "--pred",
        action="append",
        metavar="[NAME=]DIR",
        help="folder of predictions; repeat (as NAME=DIR) to compare several methods in one table",
    )
    ev.add_argument("--gt", metavar="DIR", help="folder of ground-truth masks (with --pred)")
    ev.add_argument("--checkpoint", metavar="CKPT", help="score a trained model instead of saved masks")
    ev.add_argument("--data", metavar="ROOT", help="dataset root for --checkpoint (default: the built-in data)")
    ev.add_argument("--split", help="split to score with --checkpoint (default: val)")
    ev.add_argument("--tta", action="store_true", help="multi-scale (0.5-1.75) + flip test-time augmentation")
    ev.add_argument("--output-stride", type=int, choices=(8, 16, 32), help="evaluate at another output stride")
    ev.add_argument("--num-classes", type=int, help="number of classes (segmentation, with --pred)")
    ev.add_argument("--json", metavar="FILE", help="write the scores as JSON")
    ev.add_argument("--curves", metavar="FILE.png", help="draw PR and F-measure curves (saliency)")
    ev.add_argument("--format", default="text", choices=("text", "md", "csv", "latex"), help="table format")
    ev.add_argument(
        "--strict-size",
        action="store_true",
        help="a prediction of another size than its ground truth is an error (default: resized)",
    )
    ev.add_argument("--workers", type=int, help="processes reading and scoring (default: CPUs)")
    add_precision_flags(ev, default=None)
    ev.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_writable_parent(args.json, "--json")
    check_writable_parent(args.curves, "--curves")
    if args.checkpoint:
        if args.pred:
            raise SegkitError("give either --checkpoint or --pred/--gt, not both")
        refuse_flags(args, FOLDERS_ONLY, "to --checkpoint (they belong to scoring saved masks with --pred/--gt)")
        return run_checkpoint(args)
    if not (args.pred and args.gt and args.task):
        raise SegkitError("segkit eval needs --task with --pred DIR --gt DIR, or --checkpoint CKPT")
    refuse_flags(args, CHECKPOINT_ONLY, "to --pred/--gt (they belong to scoring a model with --checkpoint)")
    if args.workers is not None and args.workers < 1:
        raise SegkitError(f"--workers must be a positive number of processes, got {args.workers}")
    return run_folders(args)


def run_folders(args: argparse.Namespace) -> int:
    from segkit.metrics.folders import Unscored, evaluate_methods, format_table
    from segkit.tasks import get_task

    task = get_task(args.task)
    methods = named_paths(args.pred, "--pred", allow_unnamed=True)
    found = evaluate_methods(task.name, methods, args.gt, args.num_classes or 0, args.strict_size, args.workers)
    for name, result in found.items():
        if isinstance(result, Unscored):
            raise SegkitError(f"{result.reason} (method '{name}')" if len(found) > 1 else result.reason)
    results = {}
    for name, result in found.items():
        report_problems(name, result)
        results[name] = result
    rows = {name: r.scores.scalars() for name, r in results.items()}
    print(format_table(rows, task.metric_keys, args.format, {name: r.count for name, r in results.items()}))
    if args.json:
        payload = {name: r.to_json() for name, r in results.items()}
        write_json(args.json, payload if len(payload) > 1 else next(iter(payload.values())))
        say(f"wrote {args.json}")
    if args.curves:
        draw_curves({name: r.scores for name, r in results.items()}, args.curves)
    skipped = sum(len(r.bad) for r in results.values())
    if skipped:
        say(f"{skipped} files could not be scored (listed above); the scores leave them out")
    return 1 if skipped else 0


def run_checkpoint(args: argparse.Namespace) -> int:
    from pathlib import Path

    from segkit.engine.evaluate import evaluate_checkpoint
    from segkit.metrics.folders import format_table
    from segkit.tasks import get_task

    result = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        args.split or "val",
        args.tta,
        args.output_stride,
        task=args.task,
        precision=args.precision or "auto",
        compile=args.compile or "auto",
    )
    say(f"{Path(args.checkpoint).name}: {result.how}")
    task = get_task(result.task)
    if result.notice:
        say(result.notice)
    scalars = result.scores.scalars()
    name = Path(args.checkpoint).stem
    print(format_table({name: scalars}, task.metric_keys, args.format, {name: result.scores.count}))
    details = task.details_table(result.scores, result.class_names)
    if details:
        print(details)
    if args.json:
        write_json(args.json, result.scores.to_json())
    if args.curves:
        draw_curves({Path(args.checkpoint).stem: result.scores}, args.curves)
    return 0


def draw_curves(scores: dict, path: str) -> None:
    from segkit.metrics.folders import plot_curves

    if not all(hasattr(s, "curves") for s in scores.values()):
        raise SegkitError("--curves draws saliency PR/F-measure curves; these are not saliency scores")
    plot_curves(scores, path)
    say(f"wrote {path}")


def report_problems(name: str, found) -> None:
    for note in found.notes:
        say(f"[{name}] {note}")
    if found.missing:
        shown = ", ".join(found.missing[:20]) + (" ..." if len(found.missing) > 20 else "")
        say(f"[{name}] {len(found.missing)} ground-truth files have no prediction: {shown}")
    if found.resized:
        say(
            f"[{name}] {len(found.resized)} predictions differ in size from their ground truth and were "
            "resized to it (bilinear; nearest for labels); pass --strict-size to make this an error"
        )
    for bad in found.bad:
        print(f"[{name}] skipped {bad['path']}: {bad['problem']}", file=sys.stderr)
