"""``create_model``: the network of a task, by architecture name.

A task says which architecture is its default (``Task.default_arch``) and whether its network outputs class logits
(``Task.labels``: any architecture of segmentation-models-pytorch on a segkit encoder) or one map (the networks
below); what each architecture is, and which settings it takes, is known here.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from segkit.errors import SegkitError
from segkit.tasks import Task, get_task

# One-map networks by ``model.arch``: segkit's own PoolNet-style design ("poolnet-style"; "poolnet", its earlier
# name, still read), and the published networks computing what their authors' code computes
# (segkit.models.published).
ONE_MAP_ARCHS = ("poolnet-style", "poolnet", "poolnet-res2net", "pranet", "sinet-v2")


def create_model(
    task: str | Task,
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
    The network carries ``size_multiple``: inference pads (or resizes) input sides to a multiple of it.
    """
    task = get_task(task)
    arch = arch or task.default_arch
    if task.labels:
        from segkit.models.segmentation import SmpSegmentation

        return SmpSegmentation(backbone, num_classes, output_stride, pretrained_backbone, decoder_channels, arch)
    return one_map_network(arch, backbone, output_stride, pretrained_backbone, decoder_channels)


def model_from_config(task: str | Task, model_config, num_classes: int) -> nn.Module:
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


def one_map_network(arch: str, backbone, output_stride, pretrained_backbone, decoder_channels) -> nn.Module:
    """The one-map network ``arch`` (a name in ``ONE_MAP_ARCHS``) on ``backbone``."""
    if arch in ("poolnet-style", "poolnet"):
        from segkit.models.poolnet import PoolNet

        return PoolNet(backbone, decoder_channels or 128, output_stride or 32, pretrained_backbone)
    if output_stride not in (None, 16 if arch == "poolnet-res2net" else 32):
        raise SegkitError(f"config key 'model.output_stride': {arch} has a fixed output stride; leave it unset")
    if arch == "poolnet-res2net":
        from segkit.models.poolnet_res2net import PoolNetRes2Net

        return PoolNetRes2Net(backbone, pretrained_backbone)
    if arch == "pranet":
        from segkit.models.pranet import PraNet

        return PraNet(backbone, decoder_channels or 32, pretrained_backbone)
    if arch == "sinet-v2":
        from segkit.models.sinet_v2 import SINetV2

        return SINetV2(backbone, decoder_channels or 32, pretrained_backbone)
    raise not_one_map(arch)


def not_one_map(arch: str) -> SegkitError:
    return SegkitError(
        f"config key 'model.arch': '{arch}' is not a one-map network; valid: poolnet-style (segkit's own "
        "PoolNet-style design), poolnet-res2net (the Res2Net paper's PoolNet), pranet, sinet-v2 (smp's "
        "architectures are for --task segmentation)"
    )


def check_network_config(task: str | Task, model_config, image_size: int) -> None:
    """What an experiment asks of its network, checked before anything is built: the architecture exists for the
    task, and ``data.image_size`` fits it; each problem names its config key."""
    task = get_task(task)
    arch = model_config.arch or task.default_arch
    if task.labels:
        from segkit.models.segmentation import arch_size_multiple

        arch = arch.lower()  # smp's names are read in any case
        multiple = arch_size_multiple(arch, model_config.output_stride)
        if image_size % multiple:
            raise SegkitError(
                f"config key 'data.image_size' must be a multiple of {multiple} for segmentation with {arch}, got "
                f"{image_size}"
            )
        return
    if arch not in ONE_MAP_ARCHS:
        raise not_one_map(arch)
    if arch in ("pranet", "sinet-v2") and image_size % 32:
        raise SegkitError(f"config key 'data.image_size' must be a multiple of 32 for {arch}, got {image_size}")
    if arch == "poolnet-res2net" and image_size < 128:
        raise SegkitError(f"config key 'data.image_size' must be at least 128 for poolnet-res2net, got {image_size}")
