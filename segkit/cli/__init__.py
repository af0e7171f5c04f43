"""The ``segkit`` command line: flags in, typed calls out. One module per command, each with ``add_parser`` and
``run`` side by side; heavy modules are imported inside ``run``, so ``segkit --help`` starts fast."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from segkit.cli import bench, data, evaluate, export, predict, render, train
from segkit.errors import SegkitError

COMMANDS = (train, evaluate, predict, export, data, render, bench)


def build_parser() -> argparse.ArgumentParser:
    from segkit.version import __version__

    parser = argparse.ArgumentParser(
        prog="segkit",
        description="Semantic segmentation and salient object detection on the Res2Net backbone.",
    )
    parser.add_argument("--version", action="version", version=f"segkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except SegkitError as err:
        print(f"segkit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        from segkit.training.runfolder import exit_code

        print("segkit: interrupted", file=sys.stderr)
        return exit_code(stop)


if __name__ == "__main__":
    sys.exit(main())
