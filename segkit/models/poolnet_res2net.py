"""PoolNet on Res2Net-50, the salient object detector of the Res2Net paper (Gao et al., TPAMI 2021, Section 4.5;
PoolNet: Liu et al., "A Simple Pooling-Based Design for Real-Time Salient Object Detection", CVPR 2019), computing
what the authors' ``networks/poolnet_res2net.py`` (``build_model('res2net')``) computes, so their weights run.

The backbone is Res2Net-50 26w x 4s laid out as DeepLab v2's ResNet: the stem's max-pool rounds up, the last stage
is dilated (output stride 16) from its first block on. A global guidance module (pyramid pooling over the last
stage) sends a map to every level; five feature aggregation modules (average pooling by 2, 4 and 8) run top-down,
each fusing the next lateral map and the guidance by addition. No BatchNorm outside the backbone; every resize is
bilinear with ``align_corners=True``. Out comes one logit map at the input size.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from segkit.models.checkpoint import load_backbone_weights
from segkit.models.poolnet import adaptive_avg_pool
from segkit.models.res2net import RES2NET_SPECS, Res2Net

LATERAL_CHANNELS = (128, 256, 256, 512, 512)  # stem, layer1..layer4 after their 1x1 reduction
GUIDE_CHANNELS = 512
GUIDE_BINS = (1, 3, 5)
FAM_RATES = (2, 4, 8)


def resize(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def conv(in_ch: int, out_ch: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False)


def pooled(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Adaptive average pooling; traced for ONNX, the integral-image form that exports at any size."""
    if torch.onnx.is_in_onnx_export():
        return adaptive_avg_pool(x, bins)
    return F.adaptive_avg_pool2d(x, bins)


class GlobalGuidance(nn.Module):
    """Pyramid pooling over the last stage, then one guidance map per decoder level (the authors' "locate"
    module): ``guides[i]`` is resized to level ``i``'s size (stride 16, 8, 4, 2)."""

    def __init__(self, in_ch: int, out_channels: tuple[int, ...], ch: int = GUIDE_CHANNELS) -> None:
        super().__init__()
        self.reduce = conv(in_ch, ch, 1)
        self.bins = nn.ModuleList(conv(ch, ch, 1) for _ in GUIDE_BINS)
        self.fuse = conv(ch * (len(GUIDE_BINS) + 1), ch, 3)
        self.guides = nn.ModuleList(conv(ch, c, 3) for c in out_channels)

    def forward(self, top: torch.Tensor, sizes: list[torch.Size]) -> list[torch.Tensor]:
        reduced = self.reduce(top)  # (B, 512, H/16, W/16), no activation
        branches = [reduced]
        for bins, conv1x1 in zip(GUIDE_BINS, self.bins, strict=True):
            branches.append(resize(F.relu(conv1x1(pooled(reduced, bins))), reduced.shape[-2:]))
        fused = F.relu(self.fuse(torch.cat(branches, dim=1)))
        return [F.relu(guide(resize(fused, size))) for guide, size in zip(self.guides, sizes, strict=True)]


class FeatureAggregation(nn.Module):
    """PoolNet's FAM: the input plus its average-pooled (by 2, 4, 8), convolved and upsampled copies, ReLU; then
    resized to the next level, convolved, and (``merge``) added to that level's lateral and guidance maps and
    convolved once more."""

    def __init__(self, ch: int, out_ch: int, merge: bool) -> None:
        super().__init__()
        self.convs = nn.ModuleList(conv(ch, ch, 3) for _ in FAM_RATES)
        self.out = conv(ch, out_ch, 3)
        self.merge = conv(out_ch, out_ch, 3) if merge else None

    def forward(
        self, x: torch.Tensor, lateral: torch.Tensor | None = None, guide: torch.Tensor | None = None
    ) -> torch.Tensor:
        total = x
        for rate, conv3x3 in zip(FAM_RATES, self.convs, strict=True):
            total = total + resize(conv3x3(F.avg_pool2d(x, rate, rate)), x.shape[-2:])
        y = F.relu(total)
        if lateral is None or self.merge is None:
            return self.out(y)
        if y.shape[-2:] != lateral.shape[-2:]:
            y = resize(y, lateral.shape[-2:])
        return self.merge(self.out(y) + lateral + guide)


class PoolNetRes2Net(nn.Module):
    """The Res2Net paper's saliency network: one logit map (B, 1, H, W) at the input's own size."""

    task = "saliency"
    num_classes = 1
    size_multiple = 16  # pads only if asked to; the authors run each image at its own size
    test_resize = "native"  # the authors' test pipeline: each image at its own size
    min_side_px = 128  # the FAM's 8x8 pooling at stride 16 needs a map of 8 pixels (smaller images are enlarged)

    def __init__(self, backbone: str = "res2net50_26w_4s", pretrained_backbone: str | Path | None = None) -> None:
        super().__init__()
        if backbone not in RES2NET_SPECS:
            raise ValueError(f"PoolNet-Res2Net takes a Res2Net backbone (official name), got '{backbone}'")
        self.output_stride = 16
        self.backbone = Res2Net(RES2NET_SPECS[backbone], 16, dilate_first_block=True, stem_pool_ceil=True)
        if pretrained_backbone is not None:  # the official ImageNet .pth (its layout does not depend on dilation)
            load_backbone_weights(self.backbone, pretrained_backbone)
        stem_ch, *stage_ch = self.backbone.stem_channels, *self.backbone.out_channels
        in_ch = (stem_ch, *stage_ch)
        self.laterals = nn.ModuleList(conv(c, lc, 1) for c, lc in zip(in_ch, LATERAL_CHANNELS, strict=True))
        lat = LATERAL_CHANNELS[::-1]  # top-down: layer4, layer3, layer2, layer1, stem
        self.guidance = GlobalGuidance(in_ch[-1], lat[1:])
        # FAM i takes level i's channels and gives level i+1's (512 -> 512 -> 256 -> 256 -> 128), the last 128 -> 128
        self.fams = nn.ModuleList(
            [FeatureAggregation(c_in, c_out, merge=True) for c_in, c_out in zip(lat[:-1], lat[1:], strict=True)]
            + [FeatureAggregation(lat[4], lat[4], merge=False)]
        )
        self.score = nn.Conv2d(lat[4], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.backbone.forward_pyramid(x)  # strides 2, 4, 8, 16, 16
        laterals = [F.relu(lateral(m)) for lateral, m in zip(self.laterals, maps, strict=True)][::-1]
        guides = self.guidance(maps[-1], [m.shape[-2:] for m in maps[-2::-1]])  # at strides 16, 8, 4, 2
        y = laterals[0]
        for fam, lateral, guide in zip(self.fams[:-1], laterals[1:], guides, strict=True):
            y = fam(y, lateral, guide)
        y = self.fams[-1](y)  # (B, 128, H/2, W/2)
        return resize(self.score(y), x.shape[-2:])  # (B, 1, H, W)
