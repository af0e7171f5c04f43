"""One way to build a backbone from its name: segkit's Res2Net family and the timm ResNet baselines.

Every backbone's ``forward(x)`` returns the four stage outputs (after layer1..layer4) as a list, and it carries
``out_channels`` and ``strides`` (the reduction of each map relative to the input).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from segkit.errors import SegkitError, unknown_name
from segkit.models.checkpoint import load_backbone_weights
from segkit.models.res2net import RES2NET_ALIASES, RES2NET_SPECS, Res2Net

# Baselines for every comparison: not rewritten, taken from timm.
BASELINES: tuple[str, ...] = ("resnet50", "resnet50d", "resnet101")


class TimmFeatures(nn.Module):
    """A timm network as a feature extractor with segkit's backbone contract (layer1..layer4 outputs)."""

    def __init__(self, name: str, output_stride: int = 32, pretrained: bool = False) -> None:
        super().__init__()
        import timm

        kwargs = {} if output_stride == 32 else {"output_stride": output_stride}
        self.body = timm.create_model(
            name, pretrained=pretrained, features_only=True, out_indices=(0, 1, 2, 3, 4), **kwargs
        )
        self.name = name
        channels = self.body.feature_info.channels()
        self.stem_channels = channels[0]
        self.out_channels: tuple[int, ...] = tuple(channels[1:])
        self.strides: tuple[int, ...] = tuple(min(s, output_stride) for s in self.body.feature_info.reduction()[1:])
        self.output_stride = output_stride

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))[1:]

    def forward_pyramid(self, x: torch.Tensor, depth: int = 5) -> list[torch.Tensor]:
        """The stride-2 stem output, then layer1..layer4: the first ``depth`` of these five maps."""
        return list(self.body(x))[:depth]


def _build_res2net(name: str) -> Callable[[int], nn.Module]:
    return lambda output_stride: Res2Net(RES2NET_SPECS[name], output_stride=output_stride)


def _build_timm(name: str) -> Callable[[int], nn.Module]:
    return lambda output_stride: TimmFeatures(name, output_stride=output_stride)


BACKBONES: dict[str, Callable[[int], nn.Module]] = {
    **{name: _build_res2net(name) for name in RES2NET_SPECS},
    **{alias: _build_res2net(target) for alias, target in RES2NET_ALIASES.items()},
    **{name: _build_timm(name) for name in BASELINES},
}


def backbone_names() -> list[str]:
    """All names ``create_backbone`` accepts (official Res2Net names, timm aliases, ResNet baselines)."""
    return sorted(BACKBONES)


def create_backbone(name: str, *, output_stride: int = 32, pretrained: str | Path | None = None) -> nn.Module:
    """Build a backbone by name.

    Args:
        name: a Res2Net variant under its official name (``res2net50_26w_4s``, ...), a timm alias
            (``res2net50d``, ``res2net101d``) or a timm ResNet baseline (``resnet50``, ``resnet50d``).
        output_stride: 8, 16 or 32; the strides past it become dilations.
        pretrained: ``None`` (random weights), a local checkpoint file (official .pth, timm, or nested under
            'state_dict'/'model', with or without a 'module.' prefix), or ``"timm"`` to fetch timm's weights.

    Returns:
        A module whose ``forward(x)`` returns the list of the four stage outputs, with ``out_channels`` and
        ``strides`` attributes.
    """
    if name not in BACKBONES:
        raise unknown_name("backbone", name, BACKBONES)
    if output_stride not in (8, 16, 32):
        raise SegkitError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    model = BACKBONES[name](output_stride)
    if pretrained is None:
        return model
    if str(pretrained) == "timm":
        _load_timm_weights(model, name)
    else:
        load_backbone_weights(model, pretrained)
    return model


def _load_timm_weights(model: nn.Module, name: str) -> None:
    import timm

    canonical = RES2NET_ALIASES.get(name, name)
    timm_name = {target: alias for alias, target in RES2NET_ALIASES.items()}.get(canonical, canonical)
    unreachable = _hub_unreachable(timm_name)
    if unreachable:
        raise SegkitError(_no_timm_weights(timm_name, unreachable))
    try:
        source = timm.create_model(timm_name, pretrained=True)
    except Exception as err:  # hub refused, no weights for the name, damaged download
        raise SegkitError(_no_timm_weights(timm_name, f"{type(err).__name__}: {str(err)[:200]}")) from None
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    target = model.body if isinstance(model, TimmFeatures) else model
    target.load_state_dict(state, strict=True)


def _no_timm_weights(timm_name: str, why: str) -> str:
    return (
        f"model.pretrained_backbone=timm needs timm's ImageNet weights for '{timm_name}', which could not be "
        f"fetched ({why}). Pass a local checkpoint file instead (the official .pth or timm's): "
        "--set model.pretrained_backbone=/path/to/weights.pth (Python: pretrained='/path/to/weights.pth'), "
        "or train from scratch: --set model.pretrained_backbone=null"
    )


def _hub_unreachable(timm_name: str) -> str | None:
    """Why timm's weights cannot come from the Hugging Face Hub right now, or None: a second's check, so that an
    offline machine fails at once instead of after the hub client's retries."""
    import os
    import socket

    try:
        import timm
        from huggingface_hub import constants, try_to_load_from_cache

        hub_id = timm.models.get_pretrained_cfg(timm_name).hf_hub_id
    except Exception:  # noqa: BLE001 - no pretrained config to check: let timm itself say what is wrong
        return None
    if hub_id and any(
        isinstance(try_to_load_from_cache(hub_id, f), str) for f in ("model.safetensors", "pytorch_model.bin")
    ):
        return None  # cached: no network needed
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE") == "1":
        return "HF_HUB_OFFLINE is set and the weights are not in the local cache"
    host = constants.ENDPOINT.split("://")[-1].split("/")[0]
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as err:
        return f"{host} is unreachable from this machine: {err.strerror or err}; nothing in the local cache"
    return None
