"""Reading checkpoints with ``weights_only=True`` (nothing in a file is ever executed): segkit's own, and the
published networks' files as their authors released them."""

from __future__ import annotations

from pathlib import Path

import torch

from segkit.errors import SegkitError
from segkit.models.checkpoint import read_checkpoint as read_weights_file


def read_checkpoint(path: str | Path) -> dict:
    """A segkit checkpoint, read with ``weights_only=True``; a pickled payload is refused, nothing in it runs.

    A published network's file as its authors released it (a bare state dict, possibly saved through DataParallel
    with a ``module.`` prefix: PoolNet-Res2Net, PraNet, SINet-V2) is read as a segkit checkpoint of that network:
    the network is found from the keys (``segkit.models.published.identify``), every entry is mapped onto segkit's
    modules, and the checkpoint gets the experiment config that describes it (``released_checkpoint``)."""
    ckpt = read_weights_file(path)
    if "model" in ckpt and "config" in ckpt:
        return ckpt
    if any(isinstance(v, torch.Tensor) for v in ckpt.values()) or "state_dict" in ckpt:
        return released_checkpoint(ckpt, f"checkpoint '{path}'")
    raise SegkitError(
        f"checkpoint '{path}' is not a segkit checkpoint (no 'model' and 'config' entries) nor a state dict; "
        "for backbone weights use create_backbone(pretrained=...)"
    )


def released_checkpoint(obj: dict, source: str) -> dict:
    """A released state dict (``obj``) as the segkit checkpoint of the published network it fits."""
    from segkit.models.checkpoint import extract_state_dict
    from segkit.models.published import identify

    fitted = identify(extract_state_dict(obj, source), source)
    return {"model": fitted.state, "config": released_config(fitted.network), "num_classes": 1,
            "class_names": ("object",), "published": fitted.network.name}  # fmt: skip


def released_config(network) -> dict:
    """The experiment config of a published network's released weights: its task, architecture and backbone, and
    its authors' test size (``data.image_size``). ``data.root`` says where the weights come from (no segkit run
    trained them, so it names no dataset folder)."""
    from segkit.config import ExperimentConfig, to_dict

    config = to_dict(ExperimentConfig(task=network.task))
    config["model"].update(arch=network.arch, backbone=network.backbone)
    config["data"].update(root=f"released:{network.name}", image_size=RELEASED_TEST_SIZE_PX)
    return config


RELEASED_TEST_SIZE_PX = 352  # PraNet's and SINet-V2's test size (PoolNet-Res2Net runs each image at its own size)
