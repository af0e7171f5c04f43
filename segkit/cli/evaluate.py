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
    "split": "--split",
    "tta": "--tta",
    "output_stride": "--output-stride",
    "precision": "--precision",
    "compile": "--compile",
    "engine": "--engine",
    "device": "--device",
}
FOLDERS_ONLY = {"gt": "--gt", "strict_size": "--strict-size", "workers": "--workers", "num_classes": "--num-classes",
                "allow_missing": "--allow-missing"}  # fmt: skip
# flags of scoring every test set under --data
TEST_SETS_ONLY = {"save_preds": "--save-preds"}


def _paragraphs(*texts: str) -> str:
    """Help text of several paragraphs, each wrapped (argparse would join them into one)."""
    import textwrap

    return "\n\n".join(textwrap.fill(t, 100) for t in texts)


def add_parser(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "eval",
        help="score saved masks (--pred/--gt) or a checkpoint",
        description=_paragraphs(
            "Score folders of saved masks against ground truth, paired by file stem (a prediction may carry a "
            "suffix such as _sal_fuse), or a checkpoint (--checkpoint) on a dataset split at each image's size. "
            "Saliency: MAE, S-measure, weighted F, F- and E-measure (adaptive, mean, max), Boundary IoU, with the "
            "MATLAB toolbox's conventions. Segmentation: mIoU, aAcc, mAcc, FWIoU, mDice, per-class IoU, Boundary "
            "IoU. Flags that belong to the other mode are refused.",
            "Methods x datasets, as papers report it: --task saliency --data ROOT --pred NAME=DIR [...] scores every "
            "test set under ROOT (ECSSD, HKU-IS, PASCAL-S, DUT-OMRON, DUTS-TE in their layouts, or NAME/images + "
            "NAME/masks; DUTS-TR is skipped) against each method's sub-folder of the same name (DIR/ECSSD/*.png); "
            "a method lacking a dataset leaves an empty cell. --checkpoint CKPT --data ROOT does the same for a "
            "model (--save-preds DIR writes its maps in that layout). The table marks the best value of each "
            "column in bold and the second underlined (lowest MAE; highest otherwise). Every JSON carries a "
            "'metric_card' with the conventions; --card prints it. Exit 1 when a file could not be scored or "
            "nothing could; missing datasets and resized maps are said, not errors.",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_task_flag(ev, required=False, help="required with --pred; with --checkpoint it must agree with the checkpoint")
    ev.add_argument(
        "--pred",
        action="append",
        metavar="[NAME=]DIR",
        help="folder of predictions; repeat (as NAME=DIR) to compare several methods in one table",
    )
    ev.add_argument("--gt", metavar="DIR", help="folder of ground-truth masks (with --pred)")
    ev.add_argument(
        "--checkpoint",
        metavar="CKPT",
        help="score a trained model instead of saved masks"
        "; or a published network's released .pth (PoolNet-Res2Net, PraNet, SINet-V2),"
        " its network found from its keys",
    )
    ev.add_argument(
        "--data",
        metavar="ROOT",
        help="with --pred: score every test set under ROOT; with --checkpoint: the dataset root (default: the "
        "built-in data), every test set under it for saliency unless --split is given",
    )
    ev.add_argument("--split", help="split to score with --checkpoint (default: val)")
    ev.add_argument("--tta", action="store_true", help="multi-scale (0.5-1.75) + flip test-time augmentation")
    ev.add_argument("--output-stride", type=int, choices=(8, 16, 32), help="evaluate at another output stride")
    ev.add_argument("--num-classes", type=int, help="number of classes (segmentation, with --pred)")
    ev.add_argument("--json", metavar="FILE", help="write the scores as JSON, with the metric card")
    ev.add_argument(
        "--curves",
        metavar="PATH",
        help="draw PR and F-measure curves (saliency): FILE.png for one ground-truth folder; with --data a "
        "folder, written with one figure per dataset (DATASET.pdf and .png, every method)",
    )
    ev.add_argument(
        "--curves-data",
        metavar="FILE",
        help="save precision, recall, F and E per threshold for every method and dataset (.json or .npz; layout "
        "in segkit.evaluation.curves) to re-plot without the maps",
    )
    ev.add_argument("--format", default="text", choices=("text", "md", "csv", "latex"), help="table format")
    ev.add_argument(
        "--metrics",
        metavar="KEYS",
        help="comma-separated table columns (default: every score; with --data: max_fm,mae,sm,mean_em); any "
        "score key segkit computes, e.g. wfm, adp_fm, max_em, boundary_iou",
    )
    ev.add_argument("--digits", type=int, default=None, help="decimals in tables (default 4; 3 with --data)")
    ev.add_argument(
        "--card",
        nargs="?",
        const="",
        metavar="RESULT.json",
        help="print the metric card (the conventions behind the numbers) of --task, or the one inside a JSON "
        "that segkit eval wrote, and exit",
    )
    ev.add_argument("--save-preds", metavar="DIR", help="with --checkpoint --data: write the maps as DIR/DATASET/*.png")
    ev.add_argument(
        "--strict-size",
        action="store_true",
        help="a prediction of another size than its ground truth is an error (default: resized)",
    )
    ev.add_argument("--workers", type=int, help="processes reading and scoring (default: CPUs)")
    ev.add_argument(
        "--allow-missing",
        action="store_true",
        help="--pred/--gt: a ground truth without a prediction is not an error (exit 0); the table marks such a "
        "method with * and says how many it scored",
    )
    add_precision_flags(ev, default=None)
    ev.add_argument(
        "--device", metavar="DEV", help="--checkpoint: cpu, cuda or cuda:N (default: a CUDA GPU when there is one)"
    )
    ev.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.card is not None:
        return print_card(args)
    check_writable_parent(args.json, "--json")
    check_writable_parent(args.curves, "--curves")
    check_writable_parent(args.curves_data, "--curves-data")
    if args.digits is not None and not 0 <= args.digits <= 10:
        raise SegkitError(f"--digits must be 0..10, got {args.digits}")
    if args.checkpoint:
        if args.pred:
            raise SegkitError("give either --checkpoint or --pred/--gt, not both")
        refuse_flags(args, FOLDERS_ONLY, "to --checkpoint (they belong to scoring saved masks with --pred/--gt)")
        if not args.data or args.split:
            refuse_flags(args, TEST_SETS_ONLY, "to one split (it belongs to scoring every test set under --data)")
            return run_checkpoint(args)
        from segkit.tasks import get_task

        loaded = load_checkpoint(args)  # read once: its task decides between every test set and one split
        if get_task(loaded.task).scores_test_sets:
            return run_checkpoint_test_sets(args, loaded)
        refuse_flags(args, TEST_SETS_ONLY, f"to a {loaded.task} model (it scores every saliency test set)")
        return run_checkpoint(args, loaded)
    refuse_flags(args, TEST_SETS_ONLY, "to saved masks (it belongs to --checkpoint --data)")
    if args.pred and args.data and not args.gt:
        return run_test_sets(args)
    if not (args.pred and args.gt and args.task):
        raise SegkitError(
            "segkit eval needs --task with --pred DIR --gt DIR, --task saliency --data ROOT --pred NAME=DIR, "
            "or --checkpoint CKPT"
        )
    refuse_flags(
        args,
        {"data": "--data", **CHECKPOINT_ONLY},
        "to --pred/--gt (--data ROOT replaces --gt to score every test set; the others belong to --checkpoint)",
    )
    if args.workers is not None and args.workers < 1:
        raise SegkitError(f"--workers must be a positive number of processes, got {args.workers}")
    return run_folders(args)


def load_checkpoint(args: argparse.Namespace):
    from segkit.evaluation.evaluate import load_for_evaluation

    precision = args.precision or "auto"
    return load_for_evaluation(
        args.checkpoint, args.tta, args.output_stride, args.task, precision, args.device, args.engine or "auto"
    )


def print_card(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from segkit.evaluation.card import card_text, metric_card

    if args.card:
        path = Path(args.card)
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise SegkitError(f"--card {path}: cannot read it as JSON ({err})") from None
        card = payload.get("metric_card") if isinstance(payload, dict) else None
        if not isinstance(card, dict):
            raise SegkitError(f"--card {path}: no 'metric_card' in it (a JSON written by segkit eval has one)")
    else:
        card = metric_card(args.task or "saliency", args.strict_size, args.num_classes or 21)
    print(card_text(card))
    return 0


def chosen_metrics(args: argparse.Namespace, task, default: tuple[str, ...]) -> tuple[str, ...]:
    """--metrics as score keys (labels such as maxF and MAE are taken too); unknown names are refused."""
    from segkit.evaluation.tables import score_key

    if not args.metrics:
        return default
    keys = tuple(score_key(task, n.strip(), "--metrics") for n in args.metrics.split(",") if n.strip())
    if not keys:
        raise SegkitError("--metrics is empty; give score keys such as max_fm,mae")
    return keys


def run_folders(args: argparse.Namespace) -> int:

    from segkit.evaluation.folders import Unscored, evaluate_methods
    from segkit.evaluation.tables import format_table
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
    missing = {name: len(r.missing) for name, r in results.items() if r.missing}
    marked = {name: f"{name}*" if name in missing else name for name in results}  # --allow-missing: partial rows
    rows = {marked[name]: r.scores.scalars() for name, r in results.items()}
    keys = chosen_metrics(args, task, task.metric_keys)
    counts = {marked[name]: r.count for name, r in results.items()}
    print(format_table(rows, keys, args.format, counts, 4 if args.digits is None else args.digits))
    for name, n in missing.items():
        hint = "" if args.allow_missing else "; pass --allow-missing to accept a partial score"
        say(f"* {name}: {results[name].count} of {results[name].count + n} ground truths scored, {n} without a "
            f"prediction{hint}")  # fmt: skip
    card = folder_card(task.name, args, results)
    if args.json:
        payload = {name: r.to_json() for name, r in results.items()}
        payload = payload if len(payload) > 1 else next(iter(payload.values()))
        write_json(args.json, {**payload, "metric_card": card})
        say(f"wrote {args.json}")
    from segkit.evaluation.paper import dataset_name

    curves = {dataset_name(args.gt): {name: r.scores for name, r in results.items()}}
    if args.curves:
        draw_curves(curves[dataset_name(args.gt)], args.curves)
    if args.curves_data:
        save_curves_data(curves, card, args.curves_data)
    skipped = sum(len(r.bad) for r in results.values())
    if skipped:
        say(f"{skipped} files could not be scored (listed above); the scores leave them out")
    return 1 if skipped or (missing and not args.allow_missing) else 0


def run_checkpoint(args: argparse.Namespace, loaded=None) -> int:
    from pathlib import Path

    from segkit.evaluation.card import metric_card
    from segkit.evaluation.evaluate import evaluate_checkpoint
    from segkit.evaluation.tables import format_table
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
        predictor=loaded or load_checkpoint(args),
    )
    say(f"{Path(args.checkpoint).name}: {result.how}")
    task = get_task(result.task)
    if result.notice:
        say(result.notice)
    scalars = result.scores.scalars()
    name = Path(args.checkpoint).stem
    keys = chosen_metrics(args, task, task.metric_keys)
    digits = 4 if args.digits is None else args.digits
    print(format_table({name: scalars}, keys, args.format, {name: result.scores.count}, digits))
    details = task.details_table(result.scores, result.class_names)
    if details:
        print(details)
    card = metric_card(task.name, num_classes=len(result.class_names)) | {
        "model": {"checkpoint": str(args.checkpoint), "run_as": result.how, "tta": args.tta},
        "data": {"root": args.data or "built-in", "split": args.split or "val", "images": result.scores.count},
    }
    if args.json:
        write_json(args.json, {**result.scores.to_json(), "metric_card": card})
    if args.curves:
        draw_curves({name: result.scores}, args.curves)
    if args.curves_data:
        if not hasattr(result.scores, "curves"):
            raise SegkitError("--curves-data saves saliency curves; these are not saliency scores")
        save_curves_data({args.split or "val": {name: result.scores}}, card, args.curves_data)
    return 0


def folder_card(task: str, args: argparse.Namespace, results: dict) -> dict:
    """The metric card of one ground-truth folder scored against ``results`` (method -> FolderScores)."""
    from segkit.evaluation.card import metric_card
    from segkit.evaluation.paper import dataset_facts, dataset_name

    card = metric_card(task, args.strict_size, args.num_classes or 0)
    card["datasets"] = {dataset_name(args.gt): dataset_facts(args.gt, results)}
    return card


def save_curves_data(curves: dict, card: dict, path: str) -> None:
    from segkit.evaluation.curves import write_curves_data

    write_curves_data(curves, card, path)
    say(f"wrote {path}")


def draw_curves(scores: dict, path: str) -> None:
    from segkit.evaluation.curves import plot_curves

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
    if getattr(found, "extra", None):
        shown = ", ".join(found.extra[:20]) + (" ..." if len(found.extra) > 20 else "")
        say(f"[{name}] {len(found.extra)} predictions have no ground truth and were not scored: {shown}")
    if found.resized:
        shown = ", ".join(found.resized[:20]) + (" ..." if len(found.resized) > 20 else "")
        say(
            f"[{name}] {len(found.resized)} predictions differ in size (width x height) from their ground truth and "
            f"were resized to it (bilinear; nearest for labels; --strict-size makes this an error): {shown}"
        )
    for bad in found.bad:
        print(f"[{name}] skipped {bad['path']}: {bad['problem']}", file=sys.stderr)


def progress_bar(unit: str):
    """A progress bar with ETA on a terminal (silent otherwise): ``start(total)`` returns ``tick(label, n)``."""
    import sys

    from tqdm import tqdm

    def start(total: int):
        bar = tqdm(total=total, unit=unit, disable=not sys.stderr.isatty(), dynamic_ncols=True, leave=False)

        def tick(label: str, n: int) -> None:
            bar.set_postfix_str(label, refresh=False)
            bar.update(n)
            if bar.n >= total:
                bar.close()

        return tick

    return start


def run_test_sets(args: argparse.Namespace) -> int:
    """Methods x datasets from saved maps (--data ROOT --pred NAME=DIR ...)."""
    from segkit.evaluation.paper import evaluate_benchmark
    from segkit.tasks import get_task

    task = get_task(args.task)
    if not task.scores_test_sets:
        raise SegkitError(f"--data with --pred scores saliency test sets, not {task.name}; use --pred DIR --gt DIR")
    refuse_flags(
        args,
        {**CHECKPOINT_ONLY, "num_classes": "--num-classes", "allow_missing": "--allow-missing"},
        "to scoring saved saliency maps on every test set (each cell scores what its method has and lists the rest)",
    )
    if args.workers is not None and args.workers < 1:
        raise SegkitError(f"--workers must be a positive number of processes, got {args.workers}")
    methods = named_paths(args.pred, "--pred", allow_unnamed=True)
    metrics = chosen_metrics(args, task, task.table_metrics)
    results = evaluate_benchmark(
        task.name, args.data, methods, args.strict_size, args.workers, progress_bar("map"), task.datasets
    )
    return report_results(results, metrics, args)


def run_checkpoint_test_sets(args: argparse.Namespace, loaded) -> int:
    """A saliency model (loaded by ``load_checkpoint``) on every test set under --data."""
    from segkit.evaluation.evaluate import evaluate_test_sets
    from segkit.tasks import get_task

    metrics = chosen_metrics(args, get_task(loaded.task), get_task(loaded.task).table_metrics)
    if args.save_preds:
        check_writable_parent(args.save_preds, "--save-preds")  # DIR itself is created
    results = evaluate_test_sets(
        loaded, args.checkpoint, args.data, args.save_preds, args.compile or "auto", progress_bar("img")
    )
    say(f"{args.checkpoint}: {loaded.describe()}")
    if loaded.notice:
        say(loaded.notice)
    if args.save_preds:
        say(f"wrote the maps under {args.save_preds}/<dataset>/")
    return report_results(results, metrics, args)


def report_results(results, metrics: tuple[str, ...], args: argparse.Namespace) -> int:
    """Print the notes and the table; write JSON, curves and curve data; the exit status."""
    from segkit.evaluation.folders import FolderScores, Unscored
    from segkit.evaluation.tables import format_results

    for note in results.notes:
        say(note)
    for dataset, cells in results.cells.items():
        for method, cell in cells.items():
            if isinstance(cell, Unscored):
                say(f"[{method} on {dataset}] not scored: {cell.reason}")
            elif isinstance(cell, FolderScores):
                report_problems(f"{method} on {dataset}", cell)
    if not results.scored():
        say("segkit: nothing could be scored (see above)")
        return 1
    print(format_results(results, metrics, args.format, 3 if args.digits is None else args.digits))
    if args.json:
        write_json(args.json, results.to_json())
        say(f"wrote {args.json}")
    curves = results.curves()
    if args.curves:
        from segkit.evaluation.curves import plot_dataset_curves

        written = plot_dataset_curves(curves, args.curves)
        say(f"wrote {len(written)} curve figures (PDF and PNG) under {args.curves}")
    if args.curves_data:
        save_curves_data(curves, results.card, args.curves_data)
    bad = results.bad_files()
    if bad:
        say(f"{bad} files could not be scored (listed above); the scores leave them out")
    return 1 if bad else 0
