"""A model folder to share without pickle, in the Hugging Face Hub's layout:

- ``model.safetensors``: the weights only (no code, nothing to unpickle);
- ``config.json``: the experiment config and what a loader needs (task, backbone, architecture, classes and their
  names, input normalisation, inference settings);
- ``README.md``: a model card (training data, validation metrics with their conventions, how to use it).

``load_folder(DIR)`` rebuilds the network from ``config.json`` and loads the weights strictly; ``hf://OWNER/NAME``
downloads such a folder from the Hub first (``huggingface_hub``, which timm brings).
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from segkit.config import ExperimentConfig
from segkit.errors import SegkitError

FOLDER_FORMAT = "segkit-model-folder/1"
WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
HUB_PREFIX = "hf://"

# What each task's validation numbers mean (the model card repeats it next to the numbers).
CONVENTIONS = {
    "saliency": (
        "ground truth binarised at > 128; predictions as 8-bit maps; F-measure with beta^2 = 0.3 over 256 "
        "thresholds (>=), max/mean/adaptive (2x mean); E-measure (Fan et al. 2018) max/mean/adaptive; S-measure "
        "with alpha = 0.5; weighted F (Margolin et al. 2014); MAE on [0, 1]; Boundary IoU (Cheng et al. 2021)"
    ),
    "segmentation": (
        "mIoU over classes present in prediction or ground truth, label 255 ignored (mmsegmentation's IoUMetric); "
        "aAcc, mAcc, FWIoU, mDice; Boundary IoU (Cheng et al. 2021)"
    ),
}


def is_model_folder(source: str | Path) -> bool:
    """Whether ``source`` names a model folder (a directory or an ``hf://`` repository) rather than a file."""
    return str(source).startswith(HUB_PREFIX) or Path(source).is_dir()


def export_folder(checkpoint: str | Path, output: str | Path) -> dict:
    """Write the model folder of ``checkpoint`` to ``output`` (a new or empty folder); returns what was written."""
    import safetensors.torch

    from segkit.inference.checkpoint import read_checkpoint
    from segkit.inference.predictor import model_from_checkpoint

    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise SegkitError(f"--output '{output}' exists and is not an empty folder; choose a new folder")
    if not output.parent.is_dir():
        raise SegkitError(f"--output '{output}': folder '{output.parent}' does not exist; create it first")
    ckpt = read_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, checkpoint)
    config = _folder_config(model, ckpt)
    tmp = output.with_name(f".{output.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        safetensors.torch.save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt", "segkit": FOLDER_FORMAT})
        (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        (tmp / CARD).write_text(model_card(config, _validation_row(Path(checkpoint), ckpt)))
        if output.exists():
            output.rmdir()  # empty, checked above
        tmp.rename(output)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SegkitError(f"could not write the model folder '{output}': {err}") from None
    return {"path": str(output), "files": [WEIGHTS, CONFIG, CARD]}


def _folder_config(model: nn.Module, ckpt: dict) -> dict:
    from segkit import __version__
    from segkit.config import to_dict
    from segkit.data.normalize import IMAGENET_MEAN, IMAGENET_STD
    from segkit.inference.pipeline import inference_settings
    from segkit.tasks import get_task

    cfg: ExperimentConfig = model.config
    settings = inference_settings(cfg.task, model, cfg)
    return {
        "format": FOLDER_FORMAT,
        "segkit_version": __version__,
        "task": cfg.task,
        "architecture": getattr(model, "arch", None) or cfg.model.arch or get_task(cfg.task).default_arch,
        "backbone": cfg.model.backbone,
        "num_classes": int(getattr(model, "num_classes", 1)),
        "class_names": list(model.class_names),
        "input": {
            "channels": "RGB",
            "pixel_range": [0, 255],
            "normalization": "(pixel / 255 - mean) / std",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        },
        "inference": {k: v for k, v in asdict(settings).items() if k not in ("tta", "device", "task")}
        | {"output_stride": int(model.output_stride)},
        "training": {
            "data": _data_description(cfg),
            "steps": int(ckpt.get("step", 0)),
            "primary_metric": get_task(cfg.task).primary_metric,
            "best": float(ckpt["best"]) if "best" in ckpt else None,
        },
        "experiment": to_dict(cfg),
    } | _published_source(ckpt.get("published"))


def _published_source(name: str | None) -> dict:
    """A released network's provenance for the model card: paper, authors, code, weights, licence terms."""
    if name is None:
        return {}
    from segkit.models.published import get_published

    net = get_published(name)
    return {"published": {"network": net.name, "paper": net.paper, "authors": net.authors, "code": net.code,
                          "weights": net.weights, "licence": net.licence, "reported": net.published,
                          "test_pipeline": net.test_script}}  # fmt: skip


def _source_lines(source: dict) -> list[str]:
    reported = "; ".join(
        f"{dataset}: " + ", ".join(f"{k} {v}" for k, v in scores.items())
        for dataset, scores in source["reported"].items()
    )
    return [
        f"The released weights of **{source['network']}**, read by segkit from the authors' file as they saved it "
        "(segkit's modules compute what the authors' code computes; tested against the authors' outputs).",
        "",
        "## Source",
        "",
        f"- Paper: {source['paper']}",
        f"- Authors: {source['authors']}",
        f"- Code: {source['code']}",
        f"- Weights: {source['weights']}",
        f"- Licence terms: {source['licence']}",
        f"- Reported in the paper (not re-measured by segkit): {reported}",
        f"- Test pipeline: {source['test_pipeline']}",
        "",
    ]


def _data_description(cfg: ExperimentConfig) -> str:
    if cfg.data.root is not None:
        return f"dataset at {cfg.data.root}"
    if cfg.data.images is not None:
        return f"image folder {cfg.data.images} with masks {cfg.data.masks}"
    return "segkit's built-in generated data (the demo run): not for real photos"


def _validation_row(checkpoint: Path, ckpt: dict) -> dict[str, str]:
    """The validation scores of the checkpoint's step from its run's metrics.csv, when it sits beside it."""
    table = checkpoint.parent / "metrics.csv"
    if not table.is_file():
        return {}
    with table.open(newline="") as f:
        rows = [row for row in csv.DictReader(f) if row.get("step") == str(ckpt.get("step"))]
    return rows[-1] if rows else {}


def model_card(config: dict, scores: dict[str, str]) -> str:
    """The folder's README.md."""
    task, arch, backbone = config["task"], config["architecture"], config["backbone"]
    training = config["training"]
    lines = [f"# segkit model: {task}, {arch} on {backbone}", ""]
    if "published" in config:
        lines += _source_lines(config["published"])
    else:
        lines += [
            f"Made with segkit {config['segkit_version']} from a checkpoint of step {training['steps']}. "
            f"Trained on {training['data']}.",
            "",
        ]
    lines += [
        "## Validation",
        "",
    ]
    shown = {k: v for k, v in scores.items() if k not in ("step", "epoch", "loss")}
    if shown:
        lines += ["| metric | value |", "| --- | ---: |", *[f"| {k} | {float(v):.4f} |" for k, v in shown.items()]]
    elif training["best"] is not None:
        lines.append(f"{training['primary_metric']}: {training['best']:.4f} (the score that picked this checkpoint)")
    else:
        lines.append("No validation scores were recorded with this checkpoint.")
    lines += [
        "",
        f"Conventions: {CONVENTIONS.get(task, 'see segkit eval --help')}.",
        "",
        "## Use",
        "",
        "```bash",
        "segkit predict --model THIS_FOLDER --input IMAGES --output MASKS",
        "segkit eval --checkpoint THIS_FOLDER --data DATASET_ROOT",
        "```",
        "",
        "```python",
        "import segkit",
        'predictor = segkit.Predictor("THIS_FOLDER")  # or "hf://OWNER/NAME"',
        "mask = predictor.predict(rgb_uint8_image)",
        "```",
        "",
        f"Input: RGB, 0-255, normalised with mean {config['input']['mean']} and std {config['input']['std']}. "
        f"Classes: {', '.join(config['class_names']) or 'one saliency map'}.",
        "",
        "## Files",
        "",
        f"- `{WEIGHTS}`: the weights (safetensors: no code runs when they are read)",
        f"- `{CONFIG}`: the experiment config and what a loader needs",
        f"- `{CARD}`: this card",
        "",
    ]
    return "\n".join(lines)


def resolve_folder(source: str | Path) -> Path:
    """The local folder for ``source``: itself, or an ``hf://OWNER/NAME`` repository downloaded from the Hub."""
    text = str(source)
    if not text.startswith(HUB_PREFIX):
        return Path(source)
    repo_id = text[len(HUB_PREFIX) :].strip("/")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise SegkitError("loading hf:// models needs huggingface_hub: pip install huggingface_hub") from None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=[WEIGHTS, CONFIG, CARD]))
    except Exception as err:  # noqa: BLE001 - offline, unknown repository, refused: one line in every case
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise SegkitError(
            f"could not download '{text}' from the Hugging Face Hub ({type(err).__name__}: {first}); check the "
            "name and the connection, or download the folder and pass its path"
        ) from None


def load_folder(source: str | Path, output_stride: int | None = None, device: str = "cpu") -> nn.Module:
    """The network of a model folder (or ``hf://OWNER/NAME``), weights loaded strictly, in eval mode; it carries
    ``config`` and ``class_names`` as ``load_model`` gives them."""
    from segkit.inference.predictor import network_from_config

    folder = resolve_folder(source)
    config = read_folder_config(folder)
    experiment, model = network_from_config(config["experiment"], int(config.get("num_classes", 1)), output_stride)
    state = _read_weights(folder / WEIGHTS)
    _check_match(folder, model, state)
    model.load_state_dict(state)
    model.config = experiment
    model.class_names = tuple(config.get("class_names", ()))
    return model.to(device).eval()


def read_folder_config(folder: Path) -> dict:
    """A model folder's config.json, checked to be one."""
    path = folder / CONFIG
    if not path.is_file():
        raise SegkitError(f"'{folder}' is not a segkit model folder: it has no {CONFIG}")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SegkitError(f"cannot read '{path}': {err}") from None
    if not isinstance(config, dict) or config.get("format") != FOLDER_FORMAT or "experiment" not in config:
        raise SegkitError(f'\'{path}\' is not a segkit model config (expected "format": "{FOLDER_FORMAT}")')
    return config


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    import safetensors.torch

    if not path.is_file():
        raise SegkitError(f"model folder '{path.parent}' has no {WEIGHTS}")
    try:
        return safetensors.torch.load_file(str(path))
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        raise SegkitError(f"cannot read '{path}' ({type(err).__name__}: {str(err)[:200]})") from None


def _check_match(folder: Path, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Refuse weights that do not fit the network config.json describes, naming the keys."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    if not (missing or unexpected or shapes):
        return
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes)):
        if keys:
            shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
            parts.append(f"{len(keys)} {label}: {shown}")
    raise SegkitError(
        f"model folder '{folder}': {CONFIG} describes a network whose weights do not match {WEIGHTS} ("
        + "; ".join(parts)
        + ")"
    )
