"""``create_model``: one entry point for both networks."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from segkit.errors import unknown_name
from segkit.models.deeplabv3plus import DeepLabV3Plus
from segkit.models.poolnet import PoolNet

TASKS = ("segmentation", "saliency")


def create_model(
    task: str,
    *,
    backbone: str = "res2net50_26w_4s",
    num_classes: int = 21,
    output_stride: int | None = None,
    pretrained_backbone: str | Path | None = None,
    decoder_channels: int | None = None,
) -> nn.Module:
    """Build the network for ``task``.

    - ``"segmentation"``: DeepLabv3+ (smp) with ``num_classes`` outputs; ``output_stride`` 16 (default) or 8.
    - ``"saliency"``: PoolNet-style network with one logit map; ``output_stride`` 32 (default), 16 or 8.
    ``backbone`` is any name from ``segkit.models.backbone_names()``; ``pretrained_backbone`` a checkpoint
    path or ``"timm"``; ``decoder_channels`` None keeps each decoder's default (DeepLabv3+ 256, PoolNet 128).
    """
    if task == "segmentation":
        return DeepLabV3Plus(backbone, num_classes, output_stride or 16, pretrained_backbone, decoder_channels or 256)
    elif task == "saliency":
        return PoolNet(backbone, decoder_channels or 128, output_stride or 32, pretrained_backbone)
    else:
        raise unknown_name("task", task, TASKS)
