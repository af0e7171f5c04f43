"""The parts PraNet and SINet-V2 share: a convolution with BatchNorm and no activation, the receptive-field block
that reduces a backbone stage to a few channels, and the partial decoder that fuses the three deepest stages.

Both papers' code (PraNet ``lib/PraNet_Res2Net.py``, SINet-V2 ``lib/Network_Res2Net_GRA_NCD.py``) define these
the same way, with two quirks kept here because the released weights were trained with them: their ``BasicConv2d``
builds a ReLU but never applies it, and ``nn.Upsample(scale_factor=2)`` resizes with ``align_corners=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from segkit.models.backbones import create_backbone


class ConvBN(nn.Sequential):
    """Convolution (no bias) then BatchNorm, nothing after: the authors' ``BasicConv2d`` as it computes."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int | tuple[int, int],
        padding: int | tuple[int, int] = 0,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, padding=padding, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)


def _branch(in_ch: int, ch: int, k: int) -> nn.Sequential:
    """1x1 reduction, a 1xk and a kx1 convolution, then a 3x3 one dilated by k (k = 3, 5, 7)."""
    return nn.Sequential(
        ConvBN(in_ch, ch, 1),
        ConvBN(ch, ch, (1, k), padding=(0, k // 2)),
        ConvBN(ch, ch, (k, 1), padding=(k // 2, 0)),
        ConvBN(ch, ch, 3, padding=k, dilation=k),
    )


class ReceptiveFieldBlock(nn.Module):
    """Four branches of growing receptive field (1x1; k = 3, 5, 7), concatenated, fused by a 3x3 convolution and
    added to a 1x1 projection of the input, then ReLU (the papers' ``RFB_modified``)."""

    def __init__(self, in_ch: int, ch: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [nn.Sequential(ConvBN(in_ch, ch, 1)), *(_branch(in_ch, ch, k) for k in (3, 5, 7))]
        )
        self.fuse = ConvBN(4 * ch, ch, 3, padding=1)
        self.shortcut = ConvBN(in_ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = self.fuse(torch.cat([branch(x) for branch in self.branches], dim=1))  # (B, ch, H, W)
        return F.relu(fused + self.shortcut(x))


def up2(x: torch.Tensor) -> torch.Tensor:
    """Twice the size, bilinear with ``align_corners=True`` (the authors' ``nn.Upsample``)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class PartialDecoder(nn.Module):
    """Fuses the reduced stages 4, 3 and 2 (strides 32, 16, 8) into one logit map at stride 8.

    PraNet's "aggregation" and SINet-V2's neighbour connection decoder differ in one product: the stride-8 map is
    gated by stage 4 upsampled twice (PraNet) or by the stage-3 product just computed (SINet-V2, ``neighbour``).
    """

    def __init__(self, ch: int, neighbour: bool) -> None:
        super().__init__()
        self.neighbour = neighbour
        self.up4_to3 = ConvBN(ch, ch, 3, padding=1)
        self.up4_to2 = ConvBN(ch, ch, 3, padding=1)
        self.up3_to2 = ConvBN(ch, ch, 3, padding=1)
        self.up4_cat = ConvBN(ch, ch, 3, padding=1)
        self.up43_cat = ConvBN(2 * ch, 2 * ch, 3, padding=1)
        self.fuse3 = ConvBN(2 * ch, 2 * ch, 3, padding=1)
        self.fuse2 = ConvBN(3 * ch, 3 * ch, 3, padding=1)
        self.refine = ConvBN(3 * ch, 3 * ch, 3, padding=1)
        self.score = nn.Conv2d(3 * ch, 1, 1)

    def forward(self, s4: torch.Tensor, s3: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        gated3 = self.up4_to3(up2(s4)) * s3  # (B, ch, H/16, W/16)
        from_top = up2(gated3) if self.neighbour else up2(up2(s4))
        gated2 = self.up4_to2(from_top) * self.up3_to2(up2(s3)) * s2  # (B, ch, H/8, W/8)
        fused3 = self.fuse3(torch.cat([gated3, self.up4_cat(up2(s4))], dim=1))  # (B, 2ch, H/16, W/16)
        fused2 = self.fuse2(torch.cat([gated2, self.up43_cat(up2(fused3))], dim=1))  # (B, 3ch, H/8, W/8)
        return self.score(self.refine(fused2))  # (B, 1, H/8, W/8)


def rescale(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Bilinear resize by ``factor`` with ``align_corners=False``, the factor itself setting the sampling grid (as
    the authors' ``F.interpolate(x, scale_factor=...)``; not the same numbers as resizing to the output size when
    a side is not a multiple of 32)."""
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


class CoarseToFine(nn.Module):
    """What PraNet and SINet-V2 share: a backbone at output stride 32, receptive-field blocks on stages 2-4, the
    partial decoder's coarse map, then ``refine`` (the network's own) to four logit maps at the input size.
    ``forward`` gives the finest map in eval mode and all four (coarse to fine) in training mode, for deep
    supervision; ``forward_all`` always gives the four."""

    num_classes = 1
    size_multiple = 32  # the authors' test size (352) is a multiple of the network's stride
    test_resize = "pil"  # the authors' test pipeline (segkit.inference.pipeline): PIL resize to 352, min-max
    test_minmax = True

    def __init__(self, backbone: str, channels: int, pretrained_backbone: str | Path | None, neighbour: bool) -> None:
        super().__init__()
        self.output_stride = 32
        self.backbone = create_backbone(backbone, output_stride=32, pretrained=pretrained_backbone)
        self.rfb = nn.ModuleList(ReceptiveFieldBlock(c, channels) for c in self.backbone.out_channels[1:])
        self.decoder = PartialDecoder(channels, neighbour=neighbour)

    def refine(self, features: tuple[torch.Tensor, ...], reduced: tuple[torch.Tensor, ...], coarse: torch.Tensor):
        """The four logit maps at the input size from the stage maps (x2, x3, x4), their reductions (s2, s3, s4)
        and the coarse map at stride 8."""
        raise NotImplementedError

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        _, x2, x3, x4 = self.backbone(x)  # strides 4, 8, 16, 32
        s2, s3, s4 = (rfb(f) for rfb, f in zip(self.rfb, (x2, x3, x4), strict=True))  # (B, channels, ...)
        coarse = self.decoder(s4, s3, s2)  # (B, 1, H/8, W/8)
        return self.refine((x2, x3, x4), (s2, s3, s4), coarse)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outputs = self.forward_all(x)
        return outputs if self.training else outputs[-1]
