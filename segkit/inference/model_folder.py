"""A model folder to share without pickle, in the Hugging Face Hub's layout:

- ``model.safetensors``: the weights only (no code, nothing to unpickle);
- ``config.json``: the experiment config and what a loader needs (task, backbone, architecture, classes and their
  names, input normalisation, inference settings);
- ``README.md``: a model card (training data, validation metrics with their conventions, how to use it).

This module writes one (``export_folder``); ``segkit.inference.loading.load_folder`` reads it. The model card is a
Hugging Face Hub card (``huggingface_hub.ModelCard``: YAML metadata, then the text), so the Hub lists and searches
the folder as a segkit image-segmentation model.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import asdict
from pathlib import Path

from torch import nn

from segkit.config import ExperimentConfig
from segkit.errors import SegkitError
from segkit.inference.checkpoint import read_checkpoint
from segkit.inference.loading import CARD, CONFIG, FOLDER_FORMAT, WEIGHTS, folder_metadata, model_from_checkpoint
from segkit.metrics.conventions import conventions
from segkit.tasks import get_task


def export_folder(checkpoint: str | Path, output: str | Path) -> dict:
    """Write the model folder of ``checkpoint`` to ``output`` (a new or empty folder); returns what was written."""
    import safetensors.torch

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
        for name in (WEIGHTS, CONFIG, CARD):
            (tmp / name).chmod(0o644)  # shared as files are (safetensors writes its file 0600)
        if output.exists():
            output.rmdir()  # empty, checked above
        tmp.rename(output)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SegkitError(f"could not write the model folder '{output}': {err}") from None
    return {"path": str(output), "files": [WEIGHTS, CONFIG, CARD]}


def _folder_config(model: nn.Module, ckpt: dict) -> dict:
    from segkit.config import to_dict
    from segkit.data.normalize import IMAGENET_MEAN, IMAGENET_STD
    from segkit.inference.pipeline import inference_settings
    from segkit.version import __version__

    cfg: ExperimentConfig = model.config
    settings = inference_settings(cfg.task, model, cfg)
    return {
        "format": FOLDER_FORMAT,
        "segkit_version": __version__,
        **folder_metadata(model, cfg),
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
    """The folder's README.md: a Hub model card (metadata: library, task, architecture and backbone tags)."""
    from huggingface_hub import ModelCard, ModelCardData

    task, arch, backbone = config["task"], config["architecture"], config["backbone"]
    metadata = ModelCardData(
        library_name="segkit",
        pipeline_tag="image-segmentation",
        tags=["segkit", task, arch, backbone],
        license="other" if "published" in config else None,
    )
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
        "Conventions (`segkit eval --card --task TASK` prints them too):",
        "",
        *[
            f"- {key.replace('_', ' ')}: {text}"
            for key, text in conventions(get_task(task).conventions, len(config["class_names"])).items()
        ],
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
    return str(ModelCard(f"---\n{metadata.to_yaml()}\n---\n\n" + "\n".join(lines)))
