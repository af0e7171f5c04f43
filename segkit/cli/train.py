"""``segkit train``."""

from __future__ import annotations

import argparse
from pathlib import Path

from segkit.cli.common import add_task_flag, program


def add_parser(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser(
        "train",
        help="train a saliency or segmentation model (the main job)",
        description=(
            "Train on the built-in dataset (default) or your data. Without --config it uses the task's default "
            "configuration (segkit's configs/demo_<task>.yaml). Writes a run folder with config.yaml, last.pt, "
            "best.pt, metrics.csv and train.log. With --images/--masks and no --val-images/--val-masks, "
            "data.val_fraction (10%) of the pairs is held out for validation. Scale out with "
            "`torchrun --nproc_per_node=N -m segkit train ...`."
        ),
    )
    add_task_flag(tr)
    tr.add_argument("--config", metavar="FILE", help="experiment YAML (see configs/)")
    tr.add_argument("--data", metavar="ROOT", help="dataset root (DUTS for saliency, VOCdevkit for segmentation)")
    tr.add_argument("--images", metavar="DIR", help="train on any image folder ...")
    tr.add_argument("--masks", metavar="DIR", help="... and its mask folder, paired by file stem")
    tr.add_argument("--val-images", metavar="DIR", help="validation images for --images/--masks ...")
    tr.add_argument("--val-masks", metavar="DIR", help="... and their masks (default: hold out 10%% of --images)")
    tr.add_argument("--out", metavar="DIR", help="run folder (default: runs/<task>_<backbone>_<time>)")
    tr.add_argument("--epochs", type=int, help="passes over the training set (replaces schedule.max_steps)")
    tr.add_argument("--max-steps", type=int, help="optimiser steps")
    tr.add_argument("--batch-size", type=int, help="batch size per process")
    tr.add_argument("--image-size", type=int, help="training crop / resize side in px")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    tr.set_defaults(run=run)


FLAG_KEYS = (
    ("data", "data.root"),
    ("images", "data.images"),
    ("masks", "data.masks"),
    ("val_images", "data.val_images"),
    ("val_masks", "data.val_masks"),
    ("batch_size", "data.batch_size"),
    ("image_size", "data.image_size"),
    ("max_steps", "schedule.max_steps"),
)


def overrides(args: argparse.Namespace) -> list[str]:
    """The flags as ``--set`` overrides (flags win over --set, the task flag over everything)."""
    out = list(args.set)
    out += [f"{key}={getattr(args, flag)}" for flag, key in FLAG_KEYS if getattr(args, flag) is not None]
    if args.epochs is not None:
        out += [f"schedule.epochs={args.epochs}", "schedule.max_steps=0"]
    return [*out, f"task={args.task}"]


def run(args: argparse.Namespace) -> int:
    from segkit.config import default_config_path, load_config
    from segkit.errors import SegkitError
    from segkit.training.distributed import init_distributed, shutdown_distributed
    from segkit.training.runfolder import exit_code
    from segkit.training.train import train

    if args.resume and not args.out:
        raise SegkitError("--resume needs --out RUN_DIR (the run folder holding last.pt)")
    if args.resume and args.config:
        raise SegkitError("--resume continues with the run's own config (in last.pt); leave out --config")
    try:
        if args.resume:  # the run's own config; --set and the flags change what may change on resume
            result = train(None, Path(args.out), resume_run=True, resume_set=overrides(args))
        else:
            config = load_config(args.config or default_config_path(args.task), overrides(args))
            result = train(config, Path(args.out) if args.out else None)
    except KeyboardInterrupt as stop:
        return exit_code(stop)
    if init_distributed().is_main:
        print_next_steps(result)
    shutdown_distributed()  # only after a run that ended well: a failed rank's peers may still be in a collective
    return 0


def print_next_steps(result) -> None:
    """The headline scores and the commands to run next, spelled as this shell can run them."""
    from segkit.tasks import get_task

    task = get_task(result.task)
    run_dir, best_pt, seg = result.run_dir, result.run_dir / "best.pt", program()
    print(f"\nfinished: {task.summary(result.scores)} on the validation split (best {result.best:.4f})")
    print(f"run folder: {run_dir}")
    print("next:")
    print(f"  {seg} eval --checkpoint {best_pt}")
    print(f"  {seg} predict --checkpoint {best_pt} --input YOUR_IMAGES --output predictions/")
    print(f"  {seg} export --checkpoint {best_pt} --output {run_dir / 'model.onnx'}")
    print(
        f"  {seg} render --task {task.name} --images YOUR_IMAGES --gt YOUR_MASKS "
        f"--checkpoint 'this run={best_pt}' --output comparison.png"
    )
