"""``segkit render``: a qualitative comparison that shows boundary detail."""

from __future__ import annotations

import argparse

from segkit.cli.common import add_precision_flags, add_task_flag, named_paths, predictor, say
from segkit.errors import SegkitError


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    add_task_flag(rd)
    rd.add_argument("--images", required=True, metavar="DIR")
    rd.add_argument("--gt", metavar="DIR", help="ground-truth masks (without: no error panels or scores)")
    rd.add_argument("--pred", action="append", default=[], metavar="NAME=DIR", help="a method's saved masks")
    rd.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="NAME=CKPT",
        help="a model to run"
        "; or a published network's released .pth (PoolNet-Res2Net, PraNet, SINet-V2),"
        " its network found from its keys",
    )
    rd.add_argument("--output", required=True, metavar="FILE", help="figure: .png, .pdf or .svg")
    rd.add_argument(
        "--html",
        metavar="DIR",
        help="also write DIR/index.html, a page of every image that opens from the file system in any browser "
        "(no server, no network): error overlay, boundary band and zoomed inset switch on and off, and rows sort "
        "by any per-panel score or by disagreement",
    )
    rd.add_argument("--sort", action="store_true", help="rows ordered by how much the methods differ")
    rd.add_argument(
        "--worst",
        type=int,
        metavar="K",
        help="show only the K images that fail most, worst first: with one method where it scores worst on --by, "
        "with two where they differ most, with more where their mean is worst (needs --gt)",
    )
    rd.add_argument(
        "--by",
        metavar="METRIC",
        help="the score --worst ranks by: a score key (mae, sm, wfm, max_fm, ..., miou, boundary_iou) or a caption "
        "label (MAE, maxF, IoU, BIoU); default MAE for saliency, IoU for segmentation",
    )
    rd.add_argument("--max-rows", type=int, default=0, help="at most N rows in the figure (the page keeps them all)")
    rd.add_argument("--num-classes", type=int, default=21, help="segmentation classes (default 21, VOC)")
    add_precision_flags(rd)
    rd.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from segkit.viz import build_comparison, render_figure, render_html, select_worst

    if args.max_rows < 0:
        raise SegkitError(f"--max-rows must be 0 (every row) or more, got {args.max_rows}")
    if args.by and args.worst is None:
        raise SegkitError("--by chooses the score of --worst K; add --worst")
    if args.worst is not None and args.sort:
        raise SegkitError("--worst orders the rows itself (worst first); drop --sort")
    methods: dict = dict(named_paths(args.pred, "--pred"))
    class_names: tuple[str, ...] = ()
    notices: list[str] = []
    checkpoints = named_paths(args.checkpoint, "--checkpoint")
    job_images = _count_images(args.images) if checkpoints else None
    for name, ckpt in checkpoints.items():
        if name in methods:
            raise SegkitError(f"method name '{name}' is given twice")
        from segkit.tasks import require_task

        model = predictor(ckpt, args, job_images=job_images)
        require_task(args.task, model.task, f"checkpoint '{ckpt}'")
        if model.notice and model.notice not in notices:
            notices.append(model.notice)
        methods[name] = model.predict
        class_names = class_names or model.class_names
    if not class_names and args.num_classes == 21:
        from segkit.data.voc import VOC_CLASSES

        class_names = VOC_CLASSES  # 21 classes without a checkpoint to name them: PASCAL VOC's
    comp = build_comparison(args.task, args.images, methods, args.gt, args.num_classes, class_names, sort=args.sort)
    if args.worst is not None:
        say(f"rows: {select_worst(comp, args.worst, args.by)}")
    for method, missing in comp.skipped.items():
        say(f"skipped {len(missing)} rows: {method} lacks {', '.join(missing[:10])}")
    if comp.resized:
        say(f"resized {len(comp.resized)} masks to their image's size: {', '.join(comp.resized[:5])}")
    for notice in notices:
        say(notice)
    if len(comp.methods) == 1:
        say("one method only: the inset shows where it errs most along the boundary")
    figure = render_figure(comp, args.output, max_rows=args.max_rows)
    shown = min(len(comp.rows), args.max_rows) if args.max_rows > 0 else len(comp.rows)
    print(
        f"wrote {figure} ({shown} of {len(comp.rows)} rows)"
        if shown < len(comp.rows)
        else f"wrote {figure} ({shown} rows)"
    )
    if args.html:
        print(f"wrote {render_html(comp, args.html)} (all {len(comp.rows)} rows)")
    return 0


def _count_images(folder: str) -> int | None:
    """How many images a render will run each checkpoint on (for --compile auto); None when unknown."""
    from segkit.inference.predict import expand_inputs

    try:
        return len(expand_inputs([folder]))
    except SegkitError:
        return None  # build_comparison says what is wrong with the folder
