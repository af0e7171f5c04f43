"""``segkit export``."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (checked with onnxruntime) or to a model folder",
        description=(
            "--format onnx (default): ONNX with dynamic batch, height and width, checked against PyTorch with "
            "onnxruntime; needs onnx and onnxruntime (segkit[onnx]). --format folder: a folder to share without "
            "pickle, in the Hugging Face Hub's layout: model.safetensors (weights), config.json (experiment config, "
            "task, backbone, architecture, classes, normalisation, inference settings) and README.md (a model card "
            "with the validation scores and their conventions); load it with segkit.load_model(DIR), "
            "segkit.Predictor(DIR) or segkit predict --model DIR."
        ),
    )
    ex.add_argument(
        "--checkpoint",
        required=True,
        metavar="CKPT",
        help="a segkit checkpoint, or a published network's released .pth",
    )
    ex.add_argument("--format", default="onnx", choices=("onnx", "folder"))
    ex.add_argument("--output", required=True, metavar="FILE_OR_DIR", help="FILE.onnx, or a new folder")
    ex.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.format == "folder":
        from segkit.inference.model_folder import export_folder

        result = export_folder(args.checkpoint, args.output)
        print(f"wrote {result['path']}/: {', '.join(result['files'])}")
        return 0
    from segkit.inference.export import export_onnx

    result = export_onnx(args.checkpoint, args.output)
    print(f"wrote {result['path']}; onnxruntime vs PyTorch max abs difference {result['max_abs_diff']:.2e}")
    return 0
