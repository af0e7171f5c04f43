"""Experiment configuration: frozen dataclasses loaded from YAML, validated on load, overridable by ``--set``.

An unknown key or a value of the wrong type is an error naming the key (and the closest valid key). The resolved
configuration is saved into every run folder and checkpoint.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from segkit.data.io import write_bytes
from segkit.errors import SegkitError


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "res2net50_26w_4s"  # any name from segkit.models.backbone_names()
    # segmentation: any smp architecture (unet, fpn, ...), None: deeplabv3plus; one-map tasks: poolnet-style,
    # poolnet-res2net, pranet, sinet-v2, None: the task's (saliency poolnet-style, polyp pranet, camouflage sinet-v2)
    arch: str | None = None
    output_stride: int | None = None  # None: 16 for DeepLabv3(+) and PAN, 32 for the other networks
    pretrained_backbone: str | None = None  # checkpoint file, "timm", or None for random initialisation
    decoder_channels: int | None = None  # decoder width; None: the network's default (DeepLabv3+ 256, PoolNet 128)
    num_classes: int | None = None  # None: taken from the dataset (21 for VOC)
    freeze_bn: bool = False  # BatchNorm kept in eval mode and not trained (PoolNet-Res2Net's recipe)


@dataclass(frozen=True)
class DataConfig:
    root: str | None = None  # dataset root; None: the built-in generated dataset
    images: str | None = None  # training from any two folders: images ...
    masks: str | None = None  # ... and masks, paired by file stem
    val_images: str | None = None  # validation folders for images/masks; None: hold out val_fraction of them
    val_masks: str | None = None
    val_fraction: float = 0.1  # share of the images/masks pairs held out for validation without val folders
    mask_values: str = "standard"  # how mask values are read: standard, nonzero (saliency 0/1 masks), 255-as-class-1
    image_size: int = 128  # training crop (segmentation) / resize (saliency) side, px
    eval_size: int | None = None  # saliency: side the model sees at evaluation (None: image_size)
    # "task": the task's augmentation; "resize": resize to image_size only (PraNet's loader); "flip": each image at
    # its own size, random horizontal flip (Res2Net-PoolNet's loader; needs batch_size 1)
    augment: str = "task"
    batch_size: int = 8  # per process
    workers: int = 2  # DataLoader worker processes per training process


@dataclass(frozen=True)
class OptimConfig:
    name: str = "sgd"  # "sgd", "adamw" or "adam" (L2 weight decay, as the published PoolNet/PraNet/SINet-V2)
    lr: float = 0.007  # base learning rate (per total batch the recipe was tuned for)
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 1e-4
    backbone_lr_mult: float = 1.0  # backbone learning rate = lr x this (0.1 is common with pretrained weights)
    grad_clip: float = 0.0  # max gradient norm; 0 disables
    grad_clip_value: float = 0.0  # clamp every gradient element to +-this (PraNet's, SINet-V2's 0.5); 0 disables


@dataclass(frozen=True)
class ScheduleConfig:
    max_steps: int = 0  # optimiser steps; 0: derived from epochs
    epochs: int = 0  # passes over the training set when max_steps is 0
    warmup_steps: int = 0  # linear warm-up from 0
    policy: str = "poly"  # "poly" ((1 - t)^power), "cosine" or "step" (x step_gamma every step_epochs epochs)
    poly_power: float = 0.9
    step_epochs: int = 0  # "step": epochs between decays (PoolNet-Res2Net 15, SINet-V2 50)
    step_gamma: float = 0.1  # "step": the factor of each decay
    grad_accum: int = 1  # batches per optimiser step
    scales: tuple[float, ...] = (
        1.0,
    )  # one optimiser step per batch at each scale of image_size (PraNet: .75, 1, 1.25)


@dataclass(frozen=True)
class EvalConfig:
    interval_steps: int = 0  # evaluate every N steps (0: only at the end; every run ends with an evaluation)
    checkpoint_interval_steps: int = 100  # write last.pt every N steps
    tta: bool = False  # multi-scale + flip at evaluation
    max_images: int = 0  # evaluate on at most N validation images (0: all)


@dataclass(frozen=True)
class ExperimentConfig:
    task: str = "saliency"  # a name in segkit.tasks.TASKS: saliency, segmentation, camouflage, polyp
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    loss: str = "auto"  # "auto" (the task's), "bce", "bce_sum" (PoolNet's), "bce_iou", "ce", "structure" (PraNet's)
    amp: bool = True  # bf16 autocast where bf16 is native and faster (CUDA; CPUs where it measures faster)
    channels_last: bool = True
    sync_bn: bool = True  # SyncBatchNorm when distributed on GPUs (PyTorch has none for CPU processes)
    seed: int = 0
    out_dir: str = "runs"  # run folders are created under it
    name: str | None = None  # run folder name (default: task, backbone and time)
    log_interval: int = 20  # steps between log lines when the output is not a terminal


_YAML11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _check_type(value, annotation, key: str):
    """``value`` converted to ``annotation`` (int -> float allowed), or a SegkitError naming ``key``."""
    hint = annotation
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(o for o in options if o is not type(None))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()):
        return float(value)  # 1e-4, 5E-5: YAML 1.1 (PyYAML) reads an exponent without a dot as a string
    if typing.get_origin(hint) is tuple:
        return _check_tuple(value, typing.get_args(hint)[0], key)
    if hint in (int, float, str, bool) and (type(value) is not hint):
        raise SegkitError(f"config key '{key}' must be {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def _check_tuple(value, item, key: str) -> tuple:
    """A YAML list (or one value) as a tuple of ``item``, each converted as a scalar key would be."""
    values = value if isinstance(value, list | tuple) else [value]
    if not values:
        raise SegkitError(f"config key '{key}' must list at least one value")
    return tuple(_check_type(v, item, f"{key}[{i}]") for i, v in enumerate(values))


def from_dict(cls, data: dict, prefix: str = ""):
    """Build the dataclass ``cls`` from a nested dict, validating keys and types."""
    if not isinstance(data, dict):
        raise SegkitError(f"config section '{prefix.rstrip('.') or 'root'}' must be a mapping, got {data!r}")
    valid = {f.name: f for f in fields(cls)}
    kwargs = {}
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        full = prefix + key
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise SegkitError(f"unknown config key '{full}'{hint}; valid keys here: {', '.join(valid)}")
        if dataclasses.is_dataclass(hints[key]):
            kwargs[key] = from_dict(hints[key], value or {}, full + ".")
        else:
            kwargs[key] = _check_type(value, hints[key], full)
    return cls(**kwargs)


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=value`` overrides (values parsed as YAML scalars) to a nested dict."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SegkitError(f"--set expects key=value (e.g. optim.lr=0.01), got '{item}'")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SegkitError(f"--set {key}: '{part}' is not a section")
        node[parts[-1]] = yaml.safe_load(raw) if raw else None
    return data


def load_config(path: str | Path | None, overrides: list[str] | None = None, base: dict | None = None):
    """The ExperimentConfig in ``path`` (YAML, read with safe_load) with ``overrides`` applied."""
    data: dict = dict(base or {})
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise SegkitError(f"config file '{path}' does not exist")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise SegkitError(f"config file '{path}' is not valid YAML: {err}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise SegkitError(f"config file '{path}' must hold a mapping of keys, not {type(loaded).__name__}")
        data = _deep_merge(data, loaded or {})
    data = apply_overrides(data, overrides or [])
    config = from_dict(ExperimentConfig, data)
    validate(config)
    return config


def _deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def validate(config: ExperimentConfig) -> None:
    """Value checks beyond types, each naming its key."""
    from segkit.models.factory import check_network_config
    from segkit.models.losses import LOSSES
    from segkit.tasks import TASKS

    checks = [
        (config.task in TASKS, "task", f"must be one of {', '.join(TASKS)}"),
        (config.loss == "auto" or config.loss in LOSSES, "loss", f"must be auto or one of {', '.join(LOSSES)}"),
        (config.optim.name in ("sgd", "adamw", "adam"), "optim.name", "must be sgd, adamw or adam"),
        (config.schedule.policy in ("poly", "cosine", "step"), "schedule.policy", "must be poly, cosine or step"),
        (
            config.schedule.policy != "step" or config.schedule.step_epochs > 0,
            "schedule.step_epochs",
            "must be > 0 with schedule.policy=step",
        ),
        (all(s > 0 for s in config.schedule.scales), "schedule.scales", "must all be positive"),
        (config.optim.grad_clip_value >= 0, "optim.grad_clip_value", "must be >= 0"),
        (config.data.augment in ("task", "resize", "flip"), "data.augment", "must be task, resize or flip"),
        (
            config.data.augment != "flip" or config.data.batch_size == 1,
            "data.batch_size",
            "must be 1 with data.augment=flip (each image at its own size)",
        ),
        (config.optim.lr > 0, "optim.lr", "must be positive"),
        (config.data.batch_size >= 1, "data.batch_size", "must be >= 1"),
        (config.data.image_size >= 16, "data.image_size", "must be >= 16"),
        (config.data.workers >= 0, "data.workers", "must be >= 0"),
        (config.schedule.grad_accum >= 1, "schedule.grad_accum", "must be >= 1"),
        (config.model.output_stride in (None, 8, 16, 32), "model.output_stride", "must be 8, 16 or 32"),
        (0 < config.data.val_fraction < 1, "data.val_fraction", "must lie between 0 and 1"),
    ]
    for ok, key, problem in checks:
        if not ok:
            raise SegkitError(f"config key '{key}' {problem}")
    check_network_config(config.task, config.model, config.data.image_size)


def save_config(config: ExperimentConfig, path: Path) -> None:
    """Write ``config`` as YAML, whole or not at all (``write_bytes`` renames a finished file into place), so a
    reader such as a second run checking the folder never sees half a file."""
    write_bytes(path, yaml.safe_dump(to_dict(config), sort_keys=False).encode())


def default_config_path(task: str) -> Path:
    """The packaged default configuration of ``task`` (``segkit/configs/<file>``, also shown as configs/ in the
    repository), found with importlib.resources so an installed wheel has it too."""
    from importlib import resources

    from segkit.tasks import get_task

    name = get_task(task).default_config
    resource = resources.files("segkit") / "configs" / name
    path = Path(str(resource))
    if not path.is_file():
        raise SegkitError(f"segkit's default config '{name}' is missing from the installation at '{path}'; "
                          "reinstall segkit or pass --config FILE")  # fmt: skip
    return path
