"""``segkit export``."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX, checked with onnxruntime",
        description="ONNX with dynamic batch, height and width; needs onnx and onnxruntime (segkit[onnx]).",
    )
    ex.add_argument("--checkpoint", required=True, metavar="CKPT")
    ex.add_argument("--format", default="onnx", choices=("onnx",))
    ex.add_argument("--output", required=True, metavar="FILE")
    ex.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from segkit.engine.export import export_onnx

    result = export_onnx(args.checkpoint, args.output)
    print(f"wrote {result['path']}; onnxruntime vs PyTorch max abs difference {result['max_abs_diff']:.2e}")
    return 0
