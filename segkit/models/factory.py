"""``create_model``: the network of a task, by name (the task table in ``segkit.tasks`` says which network)."""

from __future__ import annotations

from pathlib import Path

from torch import nn


def create_model(
    task: str,
    *,
    backbone: str = "res2net50_26w_4s",
    num_classes: int = 21,
    output_stride: int | None = None,
    pretrained_backbone: str | Path | None = None,
    decoder_channels: int | None = None,
    arch: str | None = None,
) -> nn.Module:
    """Build the network for ``task``.

    - ``"segmentation"``: an smp architecture (``arch``: ``deeplabv3plus`` by default, or any name in
      ``segkit.models.smp_architectures()`` that takes a CNN encoder) with ``num_classes`` outputs;
      ``output_stride`` 16 (default) or 8 for DeepLabv3(+), 16 or 32 for PAN, 32 for the others.
    - ``"saliency"``, ``"camouflage"``, ``"polyp"``: a one-map network (``arch``: segkit's ``poolnet-style``, the
      default for saliency, ``output_stride`` 32, 16 or 8; or a published network computing what its authors'
      code computes: ``poolnet-res2net``, ``pranet`` (polyp's default), ``sinet-v2`` (camouflage's default)).
    ``backbone`` is any name from ``segkit.models.backbone_names()``; ``pretrained_backbone`` a checkpoint
    path or ``"timm"``; ``decoder_channels`` None keeps each decoder's default (DeepLabv3+ 256, PoolNet 128).
    """
    from segkit.tasks import get_task  # the task table is a thin layer of names over these networks

    return get_task(task).build_network(
        backbone, num_classes, output_stride, pretrained_backbone, decoder_channels, arch
    )


def model_from_config(task: str, model_config, num_classes: int) -> nn.Module:
    """The network an experiment's ``model`` section describes (``num_classes`` from the data unless set)."""
    return create_model(
        task,
        backbone=model_config.backbone,
        num_classes=model_config.num_classes or num_classes,
        output_stride=model_config.output_stride,
        pretrained_backbone=model_config.pretrained_backbone,
        decoder_channels=model_config.decoder_channels,
        arch=model_config.arch,
    )
