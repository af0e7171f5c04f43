"""``segkit data``: make the built-in dataset, check a dataset, prepare VOC train_aug."""

from __future__ import annotations

import argparse

from segkit.cli.common import add_task_flag, program, write_json
from segkit.errors import SegkitError


def add_parser(sub: argparse._SubParsersAction) -> None:
    da = sub.add_parser("data", help="make the demo dataset, check a dataset, prepare VOC train_aug")
    cmds = da.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    mk = cmds.add_parser(
        "make-demo", help="write the built-in dataset in its task's layout (DUTS, VOC, SINet-V2's, PraNet's)"
    )
    add_task_flag(mk)
    mk.add_argument("out", metavar="OUT")
    mk.set_defaults(run=run_make_demo)
    ck = cmds.add_parser(
        "check",
        help="read every file and report problems (exit 1 if any)",
        description="Reports samples per split, unpaired files, unreadable/truncated files, size mismatches, "
        "out-of-range mask values and the conversions reading applies. Never changes a file.",
    )
    ck.add_argument("root", metavar="ROOT", nargs="?", help="a dataset root in its standard layout")
    add_task_flag(ck)
    ck.add_argument("--images", metavar="DIR", help="instead of ROOT: image folder ...")
    ck.add_argument("--masks", metavar="DIR", help="... and its mask folder, paired by stem (as segkit train takes)")
    ck.add_argument("--val-images", metavar="DIR", help="validation image folder ...")
    ck.add_argument("--val-masks", metavar="DIR", help="... and its masks")
    ck.add_argument("--num-classes", type=int, metavar="N", help="segmentation folders: class ids 0..N-1")
    ck.add_argument("--json", metavar="FILE", help="write {ok, samples, problems, conversions} as JSON")
    ck.set_defaults(run=run_check)
    va = cmds.add_parser("prepare-voc-aug", help="build SegmentationClassAug + train_aug.txt from SBD")
    va.add_argument("--voc", required=True, metavar="ROOT", help="VOCdevkit or VOC2012 folder")
    va.add_argument("--sbd", required=True, metavar="SBD_ROOT", help="benchmark_RELEASE (or its dataset/)")
    va.add_argument("--overwrite", action="store_true", help="rewrite existing SegmentationClassAug PNGs")
    va.set_defaults(run=run_voc_aug)


def run_make_demo(args: argparse.Namespace) -> int:
    from segkit.tasks import get_task

    out = get_task(args.task).make_demo(args.out)
    print(f"wrote the built-in {args.task} dataset to {out}; try: {program()} data check {out} --task {args.task}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from segkit.data.check import format_report
    from segkit.tasks import get_task

    task = get_task(args.task)
    if args.root and (args.images or args.masks):
        raise SegkitError("give either ROOT or --images/--masks, not both")
    if args.root:
        report = task.check_dataset(args.root)
    else:
        report = check_folder_pairs(task, args)
    print(format_report(report))
    if args.json:
        write_json(args.json, report.to_json())
    return 0 if report.ok else 1


def check_folder_pairs(task, args: argparse.Namespace):
    """``data check --images/--masks [--val-images/--val-masks]``: the pairs, read as ``segkit train`` reads them."""
    from pathlib import Path

    from segkit.data.check import CheckReport, check_folder_pair

    folders = [("train", args.images, args.masks, "--images/--masks")]
    if args.val_images or args.val_masks:
        folders.append(("val", args.val_images, args.val_masks, "--val-images/--val-masks"))
    report = CheckReport()
    if task.labels and not args.num_classes:
        raise SegkitError("checking segmentation folders needs the number of classes: --num-classes N")
    classes = task.folder_classes(args.num_classes)
    for name, images, masks, flags in folders:
        if not (images and masks):
            raise SegkitError(f"data check needs ROOT, or {flags} with both folders")
        for folder in (images, masks):
            if not Path(folder).is_dir():
                raise SegkitError(f"'{folder}' is not a folder")
        check_folder_pair(report, name, images, masks, task.read_mask, task.mask_checks(), len(classes))
    return report


def run_voc_aug(args: argparse.Namespace) -> int:
    from segkit.data.voc import prepare_voc_aug

    result = prepare_voc_aug(args.voc, args.sbd, args.overwrite)
    print(
        f"train_aug: {result['train_aug']} ids ({result['from_voc']} from VOC, {result['from_sbd']} converted "
        f"from SBD, {result['kept']} kept)"
    )
    if result["missing"]:
        print(f"{len(result['missing'])} ids had no annotation and were left out: {result['missing'][:10]}")
    return 0
