"""DeepLabv3+ (Chen et al., ECCV 2018) from segmentation-models-pytorch, fed by a segkit backbone.

segkit backbones are registered as smp encoders (smp's documented extension point: an entry in
``segmentation_models_pytorch.encoders.encoders``), so the decoder and head are smp's own.
"""

from __future__ import annotations

from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from segmentation_models_pytorch.encoders import encoders as smp_encoders
from segmentation_models_pytorch.encoders._base import EncoderMixin
from torch import nn

from segkit.errors import SegkitError
from segkit.models.backbones import create_backbone

SMP_PREFIX = "segkit-"
# ASPP atrous rates that keep the same field of view at each output stride (the DeepLabv3 paper).
ATROUS_RATES: dict[int, tuple[int, int, int]] = {16: (6, 12, 18), 8: (12, 24, 36)}


class SmpBackboneEncoder(nn.Module, EncoderMixin):
    """smp's encoder interface over a segkit backbone.

    smp expects ``[input, stride 2, stride 4, stride 8, stride 16, stride 32]``; DeepLabv3+ reads only the
    stride-4 and the last map, so the stride-2 slot is an empty (0-channel) map, as smp's own transformer
    encoders do.
    """

    def __init__(self, backbone_name: str, depth: int = 5, output_stride: int = 32) -> None:
        nn.Module.__init__(self)
        self.backbone = create_backbone(backbone_name, output_stride=output_stride)
        self._depth = depth
        self._in_channels = 3
        self._output_stride = output_stride
        self._out_channels = [3, 0, *self.backbone.out_channels]

    def make_dilated(self, output_stride: int) -> None:
        # Dilation is built in by create_backbone (smp's generic rewrite would break Res2Net's pools).
        if output_stride != self._output_stride:
            raise ValueError(f"encoder was built for output stride {self._output_stride}, not {output_stride}")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b, _, h, w = x.shape
        empty = x.new_empty(b, 0, h // 2, w // 2)
        return [x, empty, *self.backbone(x)]


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


class DeepLabV3Plus(nn.Module):
    """DeepLabv3+ for semantic segmentation: returns logits (B, num_classes, H, W) at input resolution."""

    task = "segmentation"

    def __init__(
        self,
        backbone: str = "res2net50_26w_4s",
        num_classes: int = 21,
        output_stride: int = 16,
        pretrained_backbone: str | Path | None = None,
        decoder_channels: int = 256,
    ) -> None:
        super().__init__()
        if output_stride not in ATROUS_RATES:
            raise SegkitError(f"DeepLabv3+ output_stride must be 8 or 16, got {output_stride}")
        self.num_classes = num_classes
        self.output_stride = output_stride
        self.net = smp.DeepLabV3Plus(
            encoder_name=register_smp_encoder(backbone),
            encoder_weights=None,
            encoder_output_stride=output_stride,
            decoder_atrous_rates=ATROUS_RATES[output_stride],
            decoder_channels=decoder_channels,
            classes=num_classes,
        )
        if pretrained_backbone is not None:
            loaded = create_backbone(backbone, output_stride=output_stride, pretrained=pretrained_backbone)
            self.net.encoder.backbone.load_state_dict(loaded.state_dict())

    @property
    def backbone(self) -> nn.Module:
        return self.net.encoder.backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = self.output_stride
        if h % m or w % m:
            raise SegkitError(
                f"DeepLabv3+ at output stride {m} needs input sides that are multiples of {m}, got {h}x{w}: "
                f"pad the image to {-(-h // m) * m}x{-(-w // m) * m} (segkit's engine pads automatically)"
            )
        return self.net(x)  # (B, num_classes, H, W)
