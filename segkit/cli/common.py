"""Small helpers the commands share: task choices, NAME=PATH lists, flags that do not apply, JSON output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from segkit.errors import SegkitError
from segkit.tasks import task_names


def add_task_flag(parser, required: bool = True, help: str | None = None) -> None:
    parser.add_argument("--task", choices=task_names(), required=required, help=help)


def named_paths(values: list[str], flag: str, allow_unnamed: bool = False) -> dict[str, str]:
    """``NAME=PATH`` values as a dict (``PATH`` alone is named by its folder name when ``allow_unnamed``)."""
    named: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep and allow_unnamed:
            name, path = Path(value).name or value, value
        elif not sep or not name or not path:
            raise SegkitError(f"{flag} expects NAME=PATH, got '{value}'")
        if name in named:
            raise SegkitError(f"{flag} name '{name}' is given twice; name each one: {flag} NAME=PATH")
        named[name] = path
    return named


def refuse_flags(args, flags: dict[str, str], why: str) -> None:
    """Stop when any of ``flags`` (attribute -> flag as typed) was given: it would be silently ignored."""
    given = [flag for attr, flag in flags.items() if getattr(args, attr) not in (None, False, [])]
    if given:
        raise SegkitError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply {why}")


def write_json(path: str | Path, payload) -> None:
    """Write ``payload`` as JSON; a missing folder or a failed write is an error naming the file."""
    from segkit.data.io import write_bytes

    path = Path(path)
    if not path.parent.is_dir():
        raise SegkitError(f"cannot write '{path}': folder '{path.parent}' does not exist")
    write_bytes(path, json.dumps(payload, indent=2).encode())


def check_writable_parent(path: str | Path | None, flag: str) -> None:
    """Fail before any work when ``path``'s folder does not exist (so scoring is not wasted)."""
    if path is not None and not Path(path).parent.is_dir():
        raise SegkitError(f"{flag} {path}: folder '{Path(path).parent}' does not exist; create it first")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def program() -> str:
    """How to run segkit again from this shell: ``segkit`` when that name is on PATH and is this program, else
    the path that was used (``.venv/bin/segkit``), else ``python -m segkit`` with this interpreter."""
    import os
    import shutil

    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "segkit" and argv0.exists():
        on_path = shutil.which("segkit")
        if on_path and Path(on_path).resolve() == argv0.resolve():
            return "segkit"
        return _shortest(argv0, os)
    return f"{_shortest(Path(sys.executable), os)} -m segkit"


def _shortest(path: Path, os) -> str:
    absolute = str(path.absolute())
    try:
        relative = os.path.relpath(absolute)
    except ValueError:  # another drive (Windows)
        return absolute
    return relative if len(relative) < len(absolute) and not relative.startswith("../..") else absolute


def add_precision_flags(parser, default: str | None = "auto") -> None:
    """--precision, --compile and --engine, the same for every command that runs a model (None as default:
    auto)."""
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default=default,
        help="auto (default): bf16 where the hardware runs it natively and faster (a CUDA GPU with bf16; a CPU "
        "with AVX512-BF16 or AMX where one convolution timed in both precisions shows bf16 faster), fp32 "
        "elsewhere; bf16 on hardware without native bf16 is refused (exit 2: it would be slower)",
    )
    parser.add_argument(
        "--compile",
        nargs="?",
        choices=("auto", "on", "off"),
        const="on",
        default=default,
        help="torch.compile the network: auto (default) compiles CPU jobs of many images (see COMPILE_MIN_IMAGES "
        "in segkit/inference/predictor.py) where the CPU lacks oneDNN's fused convolutions; never on a GPU, nor where "
        "they run, since the uncompiled fast path measured as fast there; on (also plain --compile), off. "
        "Compiling costs tens of seconds once; "
        "inductor's cache (TORCHINDUCTOR_CACHE_DIR, default ~/.cache/segkit/inductor) makes later runs cheaper",
    )

    parser.add_argument(
        "--engine",
        choices=("auto", "torch", "onnxruntime", "openvino"),
        default=default,
        help="what runs the network: auto (default) the fastest engine whose outputs were checked against PyTorch "
        "for this network, timed once per machine, network and precision and kept (segkit/inference/engines.py); "
        "torch (segkit's own path), onnxruntime, openvino (pip install 'segkit[openvino]'). The ONNX graph is "
        "exported once and kept beside the model in .segkit-engines/. SEGKIT_ENGINE=NAME sets what auto means",
    )


def predictor(path: str, args, job_images: int | None = None, **kwargs):
    """A Predictor with the command's --precision/--compile/--engine (``job_images``: how many images the job runs,
    for --compile auto), its choice said once, with the engines auto left out."""
    from segkit.inference.predictor import Predictor

    loaded = Predictor(
        path,
        precision=args.precision or "auto",
        compile=args.compile,
        job_images=job_images,
        engine=args.engine or "auto",
        **kwargs,
    )
    say(f"{Path(path).name}: {loaded.describe()}")
    for note in loaded.engine_notes():
        say(f"  {note}")
    return loaded
