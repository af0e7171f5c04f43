"""segkit's backbones as segmentation-models-pytorch encoders, and a segmentation network of any smp architecture
on them (DeepLabv3+ by default: Chen et al., ECCV 2018).

Every segkit backbone is registered with smp as ``segkit-<name>`` (smp's documented extension point: an entry in
``segmentation_models_pytorch.encoders.encoders``), with smp's whole encoder contract: the input, the stem's
stride-2 map and the four stage outputs, any depth from 1 to 5, dilation for output stride 8 or 16. So a user's
own ``smp.Unet(encoder_name="segkit-res2net50_26w_4s", encoder_weights=None, classes=2)`` works, and segkit's
segmentation network is any of smp's architectures (``model.arch``) with smp's own decoders and heads.
"""

from __future__ import annotations

from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from segmentation_models_pytorch.encoders import encoders as smp_encoders
from segmentation_models_pytorch.encoders._base import EncoderMixin
from torch import nn

from segkit.errors import SegkitError, unknown_name
from segkit.models.backbones import backbone_names, create_backbone

SMP_PREFIX = "segkit-"
DEFAULT_ARCH = "deeplabv3plus"
# ASPP atrous rates that keep the same field of view at each output stride (the DeepLabv3 paper).
ATROUS_RATES: dict[int, tuple[int, int, int]] = {16: (6, 12, 18), 8: (12, 24, 36)}


class SmpBackboneEncoder(nn.Module, EncoderMixin):
    """smp's encoder interface over a segkit backbone: ``forward(x)`` returns ``[x, stride 2, stride 4, stride 8,
    stride 16, stride 32][: depth + 1]`` (strides past the output stride become dilation)."""

    def __init__(self, backbone_name: str, depth: int = 5, output_stride: int = 32, **_: object) -> None:
        nn.Module.__init__(self)
        if not 1 <= depth <= 5:
            raise ValueError(f"encoder {SMP_PREFIX}{backbone_name}: depth must be 1 to 5, got {depth}")
        self.backbone = create_backbone(backbone_name, output_stride=output_stride)
        self.backbone_name = backbone_name
        self._depth = depth
        self._in_channels = 3
        self._output_stride = output_stride
        self._out_channels = [3, self.backbone.stem_channels, *self.backbone.out_channels]

    def make_dilated(self, output_stride: int) -> None:
        # Dilation is built in by create_backbone (smp's generic rewrite would break Res2Net's pools).
        if output_stride != self._output_stride:
            raise ValueError(f"encoder was built for output stride {self._output_stride}, not {output_stride}")

    def load_backbone_weights(self, path: str | Path) -> None:
        """Load an official Res2Net .pth or a timm checkpoint (ImageNet head ignored) into the backbone."""
        from segkit.models.checkpoint import load_backbone_weights

        load_backbone_weights(self.backbone, path)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x, *self.backbone.forward_pyramid(x, self._depth)]


def register_smp_encoder(backbone_name: str) -> str:
    """Register ``backbone_name`` with smp (idempotent) and return the encoder name smp knows it by."""
    smp_name = SMP_PREFIX + backbone_name
    if smp_name not in smp_encoders:
        smp_encoders[smp_name] = {
            "encoder": SmpBackboneEncoder,
            "pretrained_settings": {},
            "params": {"backbone_name": backbone_name},
        }
    return smp_name


def register_smp_encoders() -> list[str]:
    """Register every segkit backbone with smp as ``segkit-<name>``; returns the names (run once on import, below;
    registering again changes nothing)."""
    return [register_smp_encoder(name) for name in backbone_names()]


def smp_architectures() -> list[str]:
    """The architecture names smp offers (lower case), e.g. ``unet``, ``fpn``, ``deeplabv3plus``."""
    return sorted(smp.MODEL_ARCHITECTURES_MAPPING)


def _arch_kwargs(arch: str, output_stride: int, decoder_channels: int | None) -> dict:
    """smp keyword arguments for ``arch`` from segkit's two settings (the others keep smp's defaults)."""
    if arch == "deeplabv3plus":
        if output_stride not in ATROUS_RATES:
            raise SegkitError(f"config key 'model.output_stride': DeepLabv3+ takes 8 or 16, got {output_stride}")
        return {
            "encoder_output_stride": output_stride,
            "decoder_atrous_rates": ATROUS_RATES[output_stride],
            "decoder_channels": decoder_channels or 256,
        }
    if arch == "deeplabv3":
        if output_stride not in ATROUS_RATES:
            raise SegkitError(f"config key 'model.output_stride': DeepLabV3 takes 8 or 16, got {output_stride}")
        return {"encoder_output_stride": output_stride, "decoder_channels": decoder_channels or 256}
    if arch == "pan":
        if output_stride not in (16, 32):
            raise SegkitError(f"config key 'model.output_stride': PAN takes 16 or 32, got {output_stride}")
        return {"encoder_output_stride": output_stride, "decoder_channels": decoder_channels or 32}
    if output_stride != 32:
        raise SegkitError(
            f"config key 'model.output_stride': smp's {arch} runs its encoder at output stride 32, got "
            f"{output_stride}; set model.output_stride=null (or 32)"
        )
    if arch == "upernet":
        return {"decoder_channels": decoder_channels or 256}
    if decoder_channels is not None:
        raise SegkitError(
            f"config key 'model.decoder_channels' applies to deeplabv3plus, deeplabv3, pan and upernet, not {arch}; "
            "leave it unset"
        )
    return {}


def default_output_stride(arch: str) -> int:
    return 16 if arch in ("deeplabv3plus", "deeplabv3", "pan") else 32


class SmpSegmentation(nn.Module):
    """A segmentation network of smp architecture ``arch`` on a segkit backbone: returns logits
    (B, num_classes, H, W) at input resolution. ``size_multiple``: input sides must be multiples of it."""

    task = "segmentation"

    def __init__(
        self,
        backbone: str = "res2net50_26w_4s",
        num_classes: int = 21,
        output_stride: int | None = None,
        pretrained_backbone: str | Path | None = None,
        decoder_channels: int | None = None,
        arch: str = DEFAULT_ARCH,
    ) -> None:
        super().__init__()
        arch = arch.lower()
        if arch not in smp.MODEL_ARCHITECTURES_MAPPING:
            raise unknown_name("model.arch", arch, smp_architectures())
        output_stride = output_stride or default_output_stride(arch)
        self.arch = arch
        self.num_classes = num_classes
        self.output_stride = output_stride
        self.size_multiple = arch_size_multiple(arch, output_stride)
        try:
            self.net = smp.create_model(
                arch,
                encoder_name=register_smp_encoder(backbone),
                encoder_weights=None,
                classes=num_classes,
                **_arch_kwargs(arch, output_stride, decoder_channels),
            )
        except (ValueError, TypeError, AttributeError, KeyError) as err:
            raise SegkitError(f"smp's {arch} cannot be built on backbone '{backbone}': {err}") from None
        if pretrained_backbone is not None:
            loaded = create_backbone(backbone, output_stride=output_stride, pretrained=pretrained_backbone)
            self.net.encoder.backbone.load_state_dict(loaded.state_dict())

    @property
    def backbone(self) -> nn.Module:
        return self.net.encoder.backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # DeepLabv3+ accepts multiples of its output stride; the engine pads to size_multiple (16 at stride 8 too)
        m = self.output_stride if self.arch == "deeplabv3plus" else self.size_multiple
        if h % m or w % m:
            raise SegkitError(
                f"{self.arch} needs input sides that are multiples of {m}, got {h}x{w}: pad the image to "
                f"{-(-h // m) * m}x{-(-w // m) * m} (segkit's engine pads automatically)"
            )
        side = ARCH_MIN_SIDE.get(self.arch, 0)
        if min(h, w) < side:
            raise SegkitError(f"{self.arch} needs input sides of at least {side} px, got {h}x{w}")
        return self.net(x)  # (B, num_classes, H, W)


# What smp 0.6's architectures accept on these encoders (tests/test_smp_architectures.py checks each): input
# sides that are multiples of this (32 where not listed), and for PAN at least 128 px (its pyramid attention pools
# the stride-16 map three more times).
ARCH_MULTIPLES: dict[str, int] = {"pspnet": 8, "pan": 64}
ARCH_MIN_SIDE: dict[str, int] = {"pan": 128}


def arch_size_multiple(arch: str, output_stride: int | None = None) -> int:
    """The multiple that input sides must be for ``arch`` (at ``output_stride``, None: the arch's default)."""
    arch = arch.lower()
    output_stride = output_stride or default_output_stride(arch)
    if arch == "deeplabv3plus":
        return max(16, output_stride)
    if arch == "deeplabv3":
        return output_stride
    return ARCH_MULTIPLES.get(arch, 32)


# Registered at import, as the README shows smp users doing it: ``import segkit.models`` and then
# ``smp.Unet(encoder_name="segkit-...")``, the way timm's models exist once timm is imported. segkit's own code does
# not rely on it: ``SmpSegmentation`` registers the encoder it builds on (``register_smp_encoder``).
register_smp_encoders()
