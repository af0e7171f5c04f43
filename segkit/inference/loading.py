"""Loading a trained network from any of the forms segkit reads: a checkpoint (segkit's own, or a published
network's file as its authors released it, ``segkit.inference.checkpoint``), a model folder (``segkit export
--format folder``: ``model.safetensors`` + ``config.json`` + ``README.md``, the Hugging Face Hub's layout) or
``hf://OWNER/NAME``, a model folder on the Hub, downloaded with ``huggingface_hub``.

Both the predictor and the model folder's writer build on this module; it imports neither.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from segkit.config import ExperimentConfig, from_dict
from segkit.errors import SegkitError
from segkit.inference.checkpoint import read_checkpoint
from segkit.models import model_from_config

FOLDER_FORMAT = "segkit-model-folder/1"
WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
HUB_PREFIX = "hf://"


def load_model(checkpoint: str | Path, output_stride: int | None = None, device: str = "cpu") -> nn.Module:
    """Rebuild the network of a segkit checkpoint (its config is inside), a model folder (``segkit export
    --format folder``) or ``hf://OWNER/NAME`` and load its weights; eval mode.

    ``output_stride`` may differ from training (a DeepLab model trained at 16 evaluated at 8). The model carries
    ``config`` (its ExperimentConfig) and ``class_names``.
    """
    if is_model_folder(checkpoint):
        return load_folder(checkpoint, output_stride=output_stride, device=device)
    return model_from_checkpoint(read_checkpoint(checkpoint), checkpoint, output_stride, device)


def model_from_checkpoint(
    ckpt: dict, checkpoint: str | Path, output_stride: int | None = None, device: str = "cpu"
) -> nn.Module:
    """``load_model`` for a checkpoint already read (``checkpoint`` names it in messages)."""
    config, model = network_from_config(ckpt["config"], int(ckpt.get("num_classes", 1)), output_stride)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise SegkitError(f"checkpoint '{checkpoint}' does not match its own config: {str(err)[:500]}") from None
    model.config = config
    model.class_names = tuple(ckpt.get("class_names", ()))
    return model.to(device).eval()


def network_from_config(
    raw: dict, num_classes: int, output_stride: int | None = None
) -> tuple[ExperimentConfig, nn.Module]:
    """The experiment config of a saved model (``output_stride`` replacing its own when given) and the network
    it describes, with fresh weights."""
    if output_stride is not None:
        raw = {**raw, "model": {**raw["model"], "output_stride": output_stride}}
    config = from_dict(ExperimentConfig, raw)
    return config, model_from_config(config.task, config.model, num_classes)


def is_model_folder(source: str | Path) -> bool:
    """Whether ``source`` names a model folder (a directory or an ``hf://`` repository) rather than a file."""
    return str(source).startswith(HUB_PREFIX) or Path(source).is_dir()


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
    folder = resolve_folder(source)
    config = read_folder_config(folder)
    try:
        experiment, model = network_from_config(config["experiment"], int(config.get("num_classes", 1)), output_stride)
    except SegkitError as err:
        raise SegkitError(f"'{folder / CONFIG}': {err}") from None
    _check_metadata(folder / CONFIG, config, experiment, model)
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


def folder_metadata(model: nn.Module, experiment: ExperimentConfig) -> dict:
    """config.json's top-level facts, derived from the network and its experiment config (written so, and checked
    against them when read)."""
    from segkit.tasks import get_task

    return {
        "task": experiment.task,
        "architecture": getattr(model, "arch", None) or experiment.model.arch or get_task(experiment.task).default_arch,
        "backbone": experiment.model.backbone,
        "num_classes": int(getattr(model, "num_classes", 1)),
    }


def _check_metadata(path: Path, config: dict, experiment: ExperimentConfig, model: nn.Module) -> None:
    """The top-level facts of config.json (what the Hub and a reader see) against the experiment config the network
    is built from: a folder whose metadata says something else is refused, naming the key."""
    built = folder_metadata(model, experiment)
    for key, value in built.items():
        if key in config and config[key] != value:
            raise SegkitError(
                f"'{path}': \"{key}\" is {config[key]!r} but the experiment config inside it builds {value!r}; "
                f'the file was edited or damaged: set "{key}" back to {value!r}, or change the experiment config '
                '("experiment") and export the folder again'
            )
    names = config.get("class_names")
    if names is not None and len(names) != built["num_classes"]:
        raise SegkitError(f"'{path}': {len(names)} class_names for a network of {built['num_classes']} classes")


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
