"""``segkit predict``."""

from __future__ import annotations

import argparse

from segkit.cli.common import add_precision_flags, predictor, say


def add_parser(sub: argparse._SubParsersAction) -> None:
    pr = sub.add_parser(
        "predict",
        help="write mask predictions for images",
        description=(
            "One PNG per input, named by its stem, at the input's size: an 8-bit grey map (saliency) or a palette "
            "PNG whose indices are class ids (segmentation). Unreadable inputs are reported and skipped (exit 1); "
            "outputs that would collide or replace an input stop the command before anything is written; a failed "
            "write stops it with the path."
        ),
    )
    src = pr.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--checkpoint",
        metavar="CKPT",
        help="a segkit checkpoint"
        "; or a published network's released .pth (PoolNet-Res2Net, PraNet, SINet-V2),"
        " its network found from its keys",
    )
    src.add_argument(
        "--model",
        metavar="MODEL",
        help="an exported ONNX model (FILE.onnx, run with onnxruntime), a model folder (segkit export --format "
        "folder) or hf://OWNER/NAME",
    )
    pr.add_argument("--input", nargs="+", required=True, metavar="PATH", help="files, folders or globs")
    pr.add_argument(
        "--recursive", action="store_true", help="also predict the images in sub-folders of an --input folder, "
        "keeping the sub-folders in --output"
    )  # fmt: skip
    pr.add_argument("--output", required=True, metavar="DIR")
    pr.add_argument("--probs", action="store_true", help="also write probabilities (saliency map / max prob)")
    pr.add_argument("--overlay", action="store_true", help="also write the mask blended over the image")
    pr.add_argument("--tta", action="store_true", help="multi-scale + flip test-time augmentation")
    pr.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_precision_flags(pr)
    pr.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from segkit.inference.predict import PredictOptions, find_inputs, output_names, predict_files

    inputs = find_inputs(args.input, args.recursive)
    for path, why in inputs.skipped:
        say(f"not predicted: {path}: {why}")
    options = PredictOptions(probs=args.probs, overlay=args.overlay, overwrite=args.overwrite)
    output_names(inputs, Path(args.output), options)  # refuse collisions before loading the model
    model = predictor(args.checkpoint or args.model, args, job_images=len(inputs), tta=args.tta)
    if model.notice:
        say(model.notice)
    report = predict_files(model, inputs, args.output, options)
    for path, problem in report.failed:
        say(f"skipped {path}: {problem}")
    failed = f"; {len(report.failed)} inputs failed" if report.failed else ""
    passed = f"; {len(inputs.skipped)} entries not predicted (listed above)" if inputs.skipped else ""
    print(f"wrote {report.written} predictions to {args.output}{failed}{passed}")
    return 1 if report.failed else 0
