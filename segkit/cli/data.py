"""``segkit data``: make the built-in dataset, check a dataset, prepare VOC train_aug."""

from __future__ import annotations

import argparse

from segkit.cli.common import add_task_flag, program, write_json


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
    ck.add_argument("root", metavar="ROOT")
    add_task_flag(ck)
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

    report = get_task(args.task).check_dataset(args.root)
    print(format_report(report))
    if args.json:
        write_json(args.json, report.to_json())
    return 0 if report.ok else 1


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
