"""A PoolNet-style saliency network (Liu et al., "A Simple Pooling-Based Design for Real-Time Salient Object
Detection", CVPR 2019): a global guidance module (pyramid pooling on the top feature, sent to every level) and
feature aggregation modules (multi-scale average pooling) along a top-down path, ending in one logit map.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from segkit.models.backbones import create_backbone


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(True)
    )


def conv_relu(in_ch: int, out_ch: int, kernel: int = 3) -> nn.Sequential:
    # No BatchNorm where maps can be 1x1 (pooled branches): BN statistics over one value per channel are undefined.
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2), nn.ReLU(True))


def resize_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def _bin_edges(size, bins: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch's adaptive-pooling bins over ``size`` pixels: [floor(i*size/bins), ceil((i+1)*size/bins))."""
    i = torch.arange(bins + 1, device=device)
    start = (i[:-1] * size) // bins
    end = (i[1:] * size + bins - 1) // bins  # ceil on non-negative integers (exports as integer division)
    return start, end


def adaptive_avg_pool(x: torch.Tensor, bins: int) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, bins)`` from an integral image: the same bins, but it exports to ONNX with
    dynamic height and width (ONNX has no adaptive pooling beyond the global one)."""
    h, w = x.shape[-2], x.shape[-1]
    integral = F.pad(x.float().cumsum(-1).cumsum(-2), (1, 0, 1, 0))  # (B, C, H+1, W+1)
    y0, y1 = _bin_edges(h, bins, x.device)
    x0, x1 = _bin_edges(w, bins, x.device)
    top, bottom = integral.index_select(2, y0), integral.index_select(2, y1)
    sums = bottom.index_select(3, x1) - bottom.index_select(3, x0) - top.index_select(3, x1) + top.index_select(3, x0)
    area = ((y1 - y0)[:, None] * (x1 - x0)[None, :]).to(sums.dtype)
    return (sums / area).to(x.dtype)  # (B, C, bins, bins)


class PyramidBin(nn.Module):
    """Average over ``bins`` x ``bins`` regions, then a 1x1 conv and ReLU."""

    def __init__(self, in_ch: int, ch: int, bins: int) -> None:
        super().__init__()
        self.bins = bins
        self.conv = conv_relu(in_ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(adaptive_avg_pool(x, self.bins))


class GlobalGuidance(nn.Module):
    """Pyramid pooling over the top feature (PoolNet's GGM): the identity branch plus pooled bins, fused."""

    def __init__(self, in_ch: int, ch: int, bins: tuple[int, ...] = (1, 3, 5)) -> None:
        super().__init__()
        self.identity = conv_bn_relu(in_ch, ch, 3)
        self.pooled = nn.ModuleList(PyramidBin(in_ch, ch, b) for b in bins)
        self.fuse = conv_bn_relu(ch * (len(bins) + 1), ch, 3)

    def forward(self, top: torch.Tensor) -> torch.Tensor:
        branches = [self.identity(top)] + [resize_to(p(top), top) for p in self.pooled]
        return self.fuse(torch.cat(branches, dim=1))  # (B, ch, h_top, w_top)


class FeatureAggregation(nn.Module):
    """PoolNet's FAM: average pooling at several rates, convolved, upsampled and summed with the input."""

    def __init__(self, ch: int, rates: tuple[int, ...] = (2, 4, 8)) -> None:
        super().__init__()
        self.rates = rates
        self.convs = nn.ModuleList(nn.Conv2d(ch, ch, 3, padding=1) for _ in rates)
        self.out = conv_bn_relu(ch, ch, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x
        for rate, conv in zip(self.rates, self.convs, strict=True):
            # ceil_mode: a last partial window (and a map smaller than the rate) averages its valid pixels
            pooled = F.avg_pool2d(x, rate, rate, ceil_mode=True)
            total = total + resize_to(conv(pooled), x)
        return self.out(F.relu(total))


class PoolNetDecoder(nn.Module):
    """Top-down decoder over the backbone's four maps, guided at every level by the global guidance."""

    def __init__(self, in_channels: tuple[int, ...], ch: int = 128) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(conv_bn_relu(c, ch, 1) for c in in_channels)
        self.guidance = GlobalGuidance(in_channels[-1], ch)
        levels = len(in_channels) - 1
        self.guides = nn.ModuleList(conv_relu(ch, ch, 3) for _ in range(levels))
        self.fams = nn.ModuleList(FeatureAggregation(ch) for _ in range(levels))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        guide = self.guidance(features[-1])  # (B, ch, H/s, W/s), s = the backbone's output stride (8, 16 or 32)
        y = self.laterals[-1](features[-1]) + guide
        for level in reversed(range(len(features) - 1)):
            lateral = self.laterals[level](features[level])
            flow = self.guides[level](resize_to(guide, lateral))
            y = self.fams[level](lateral + resize_to(y, lateral) + flow)
        return y  # (B, ch, H/4, W/4)


class PoolNet(nn.Module):
    """Saliency network: backbone -> PoolNet decoder -> 1-channel logit map at input resolution."""

    task = "saliency"
    num_classes = 1
    size_multiple = 32  # the engine resizes the image to a square whose side is a multiple of 32

    def __init__(
        self,
        backbone: str = "res2net50_26w_4s",
        decoder_channels: int = 128,
        output_stride: int = 32,
        pretrained_backbone: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.output_stride = output_stride
        self.backbone = create_backbone(backbone, output_stride=output_stride, pretrained=pretrained_backbone)
        self.decoder = PoolNetDecoder(self.backbone.out_channels, decoder_channels)
        self.head = nn.Sequential(
            conv_relu(decoder_channels, decoder_channels // 2, 3), nn.Conv2d(decoder_channels // 2, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)  # 4 maps at strides 4, 8, min(16, s), min(32, s); s = output stride
        decoded = self.decoder(features)  # (B, ch, H/4, W/4)
        logits = self.head(decoded)  # (B, 1, H/4, W/4)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)  # (B, 1, H, W)
