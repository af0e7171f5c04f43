"""The bodies of ``segkit train``, ``segkit eval --checkpoint`` and ``segkit predict`` (argparse in cli.py)."""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from segkit.data.io import IMAGE_SUFFIXES, BadFileError, read_rgb
from segkit.errors import SegkitError

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def default_config_path(task: str) -> Path:
    path = REPO_CONFIGS / f"demo_{task}.yaml"
    if not path.is_file():
        raise SegkitError(f"no default config at '{path}'; pass --config FILE (see the configs/ folder of segkit)")
    return path


def train_command(args: argparse.Namespace) -> int:
    from segkit.engine.config import load_config
    from segkit.engine.train import train

    overrides = list(args.set)
    for flag, key in (
        ("data", "data.root"),
        ("images", "data.images"),
        ("masks", "data.masks"),
        ("batch_size", "data.batch_size"),
        ("image_size", "data.image_size"),
        ("max_steps", "schedule.max_steps"),
    ):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    if args.epochs is not None:
        overrides += [f"schedule.epochs={args.epochs}", "schedule.max_steps=0"]
    overrides.append(f"task={args.task}")
    config = load_config(args.config or default_config_path(args.task), overrides)
    if args.resume and not args.out:
        raise SegkitError("--resume needs --out RUN_DIR (the run folder holding last.pt)")
    try:
        scores = train(config, Path(args.out) if args.out else None, resume_run=args.resume)
    except KeyboardInterrupt:
        return 130
    _print_next_steps(config, scores, args)
    return 0


def _print_next_steps(config, scores: dict, args: argparse.Namespace) -> None:
    from segkit.engine.evaluate import PRIMARY_METRIC
    from segkit.engine.train import default_run_dir, init_distributed

    if not init_distributed().is_main:
        return
    out = Path(args.out) if args.out else _latest_run(config) or default_run_dir(config)
    key = PRIMARY_METRIC[config.task]
    extra = f", MAE {scores['mae']:.4f}" if config.task == "saliency" else ""
    print(f"\nfinished: {key} {scores[key]:.4f}{extra} on the validation split (best {scores['best_' + key]:.4f})")
    print(f"run folder: {out}")
    print("next:")
    print(f"  segkit eval --checkpoint {out / 'best.pt'}")
    print(f"  segkit predict --checkpoint {out / 'best.pt'} --input YOUR_IMAGES --output predictions/")
    print(f"  segkit export --checkpoint {out / 'best.pt'} --output {out / 'model.onnx'}")
    print(
        f"  segkit render --task {config.task} --images YOUR_IMAGES --gt YOUR_MASKS "
        f"--checkpoint 'this run={out / 'best.pt'}' --output comparison.png"
    )


def _latest_run(config) -> Path | None:
    runs = sorted(Path(config.out_dir).glob(f"{config.name or config.task + '_*'}"), key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def eval_checkpoint(args: argparse.Namespace) -> int:
    from segkit.data.datasets import build_source
    from segkit.engine.checkpoint import read_checkpoint
    from segkit.engine.evaluate import evaluate, make_net
    from segkit.engine.inference import InferenceSettings
    from segkit.engine.predictor import load_model
    from segkit.metrics.folders import SALIENCY_KEYS, SEGMENTATION_KEYS, format_table
    from segkit.models import prepare_for_inference

    task = read_checkpoint(args.checkpoint)["task"]
    if args.task and args.task != task:
        raise SegkitError(f"--task {args.task} disagrees with the checkpoint, which was trained for {task}")
    model = load_model(args.checkpoint, output_stride=args.output_stride)
    cfg = model.config
    source = build_source(task, args.data, args.split)
    settings = InferenceSettings(
        task=task,
        size_multiple=max(16, model.output_stride) if task == "segmentation" else 32,
        saliency_size_px=cfg.data.eval_size or cfg.data.image_size,
        tta=args.tta,
    )
    scores = evaluate(make_net(prepare_for_inference(model), "cpu"), source, settings, model.num_classes)
    keys = SALIENCY_KEYS if task == "saliency" else SEGMENTATION_KEYS
    print(format_table({Path(args.checkpoint).stem: scores}, keys, args.format))
    if task == "segmentation":
        print(per_class_table(scores, model.class_names))
    if args.json:
        extra = ("per_class_iou", "per_class_boundary_iou", "trimap_miou", "count")
        Path(args.json).write_text(json.dumps({k: scores[k] for k in (*keys, *extra) if k in scores}, indent=2))
    return 0


def per_class_table(scores: dict, class_names: tuple[str, ...]) -> str:
    """IoU and Boundary IoU per class (classes absent from both prediction and ground truth show '-')."""
    lines = [f"{'class':<16} {'IoU':>7} {'BIoU':>7}"]
    for c, (iou, biou) in enumerate(zip(scores["per_class_iou"], scores["per_class_boundary_iou"], strict=True)):
        name = class_names[c] if c < len(class_names) else f"class {c}"
        lines.append(
            f"{name:<16} {'-' if iou is None else f'{iou:.4f}':>7} {'-' if biou is None else f'{biou:.4f}':>7}"
        )
    return "\n".join(lines)


def expand_inputs(patterns: list[str]) -> list[Path]:
    """Files, folders (their images) and globs, in order, without duplicates."""
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.exists():
            found.append(path)
        else:
            matches = sorted(Path(m) for m in glob.glob(pattern))
            if not matches:
                raise SegkitError(f"input '{pattern}' matches no file")
            found += [m for m in matches if m.is_file()]
    return list(dict.fromkeys(found))


def predict_command(args: argparse.Namespace) -> int:
    from segkit.engine.predictor import Predictor

    inputs = expand_inputs(args.input)
    predictor = Predictor(args.checkpoint or args.model, tta=args.tta)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    targets = {p: out / f"{p.stem}.png" for p in inputs}
    existing = [t for t in targets.values() if t.exists()]
    if existing and not args.overwrite:
        raise SegkitError(
            f"{len(existing)} outputs already exist (e.g. {existing[0]}); nothing was written. "
            "Pass --overwrite to replace them or choose another --output"
        )
    failures = _predict_all(predictor, targets, args)
    for path, problem in failures:
        print(f"skipped {path}: {problem}", file=sys.stderr)
    print(
        f"wrote {len(inputs) - len(failures)} predictions to {out}"
        + (f"; {len(failures)} inputs failed" if failures else "")
    )
    return 1 if failures else 0


def _predict_all(predictor, targets: dict[Path, Path], args: argparse.Namespace) -> list[tuple[Path, str]]:
    from tqdm import tqdm

    failures = []
    for path, target in tqdm(targets.items(), desc="predict", unit="img", disable=not sys.stderr.isatty()):
        try:
            image = read_rgb(path)
        except BadFileError as err:
            failures.append((path, err.problem))
            continue
        probs = predictor.predict_probs(image)
        mask = _save_prediction(predictor.task, probs, target)
        if args.probs:
            prob_map = probs if predictor.task == "saliency" else probs.max(0)
            cv2.imwrite(str(target.with_name(f"{target.stem}_prob.png")), np.round(prob_map * 255).astype(np.uint8))
        if args.overlay:
            cv2.imwrite(
                str(target.with_name(f"{target.stem}_overlay.jpg")), overlay(image, mask, predictor.task)[..., ::-1]
            )
    return failures


def _save_prediction(task: str, probs: np.ndarray, target: Path) -> np.ndarray:
    from segkit.engine.inference import to_mask

    mask = to_mask(probs, task)
    if task == "saliency":
        cv2.imwrite(str(target), mask)
    else:
        from segkit.data.voc import save_label_png

        save_label_png(target, mask)
    return mask


def overlay(image: np.ndarray, mask: np.ndarray, task: str, alpha: float = 0.5) -> np.ndarray:
    """The mask blended over the RGB image (saliency in red; segmentation in VOC colours, background left)."""
    from segkit.data.voc import voc_palette

    if task == "saliency":
        colour = np.zeros_like(image)
        colour[..., 0] = 255
        weight = (mask.astype(np.float32) / 255 * alpha)[..., None]
    else:
        colour = voc_palette()[mask]
        weight = ((mask > 0) & (mask < 255)).astype(np.float32)[..., None] * alpha
    return (image * (1 - weight) + colour * weight).astype(np.uint8)
