"""SINet-V2 (Fan et al., "Concealed Object Detection", TPAMI 2022), computing what the authors'
``lib/Network_Res2Net_GRA_NCD.py`` (``Network(channel=32)``) computes on Res2Net-50 v1b 26w x 4s, so their
released weights run.

The neighbour connection decoder gives a coarse map at stride 8; three reverse stages (stages 4, 3, 2 of the
backbone, each reduced to 32 channels) refine it with group-reversal attention: the reversed map is interleaved
with the features cut into 1, 4 and 32 groups (32, 8 and 1 channels wide), and each step adds a residual to the map.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from segkit.models.rfb import CoarseToFine, rescale


def interleave(x: torch.Tensor, y: torch.Tensor, groups: int) -> torch.Tensor:
    """``x`` cut into ``groups`` channel groups with the one-channel map ``y`` after each: (B, C + groups, H, W),
    channels ``x_0, y, x_1, y, ...`` (the order the released weights expect)."""
    b, c, h, w = x.shape
    parts = x.reshape(b, groups, c // groups, h, w)
    mixed = torch.cat([parts, y.unsqueeze(1).expand(b, groups, 1, h, w)], dim=2)  # (B, groups, C/groups + 1, H, W)
    return mixed.reshape(b, c + groups, h, w)


class GroupReversalAttention(nn.Module):
    """One GRA step: ``x += conv(interleave(x, y))``, then ``y += score(x)``; returns both."""

    def __init__(self, ch: int, group_ch: int) -> None:
        super().__init__()
        if ch % group_ch:
            raise ValueError(f"group-reversal attention: {ch} channels do not split into groups of {group_ch}")
        self.groups = ch // group_ch
        self.conv = nn.Sequential(nn.Conv2d(ch + self.groups, ch, 3, padding=1), nn.ReLU(True))
        self.score = nn.Conv2d(ch, 1, 3, padding=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x + self.conv(interleave(x, y, self.groups))
        return x, y + self.score(x)


class ReverseStage(nn.Module):
    """Reverse the prior (``1 - sigmoid``), then three GRA steps of groups ``ch``, 8 and 1 channels wide; the map's
    residual comes out (the caller adds the prior)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.steps = nn.ModuleList(GroupReversalAttention(ch, g) for g in (ch, 8, 1))

    def forward(self, x: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        y = 1 - torch.sigmoid(prior)
        for step in self.steps:
            x, y = step(x, y)
        return y


class SINetV2(CoarseToFine):
    """Camouflaged object detection network: four logit maps, coarse to fine, as the authors' ``S_g, S_5, S_4,
    S_3`` (``forward``: the finest in eval mode, all four in training mode)."""

    task = "camouflage"

    def __init__(
        self,
        backbone: str = "res2net50_v1b_26w_4s",
        channels: int = 32,
        pretrained_backbone: str | Path | None = None,
    ) -> None:
        super().__init__(backbone, channels, pretrained_backbone, neighbour=True)
        self.reverse = nn.ModuleList(ReverseStage(channels) for _ in range(3))

    def refine(self, features, reduced, coarse):
        s2, s3, s4 = reduced  # the reverse stages read the reduced maps
        prior5 = rescale(coarse, 0.25)
        m5 = self.reverse[0](s4, prior5) + prior5  # (B, 1, H/32, W/32)
        prior4 = rescale(m5, 2)
        m4 = self.reverse[1](s3, prior4) + prior4  # (B, 1, H/16, W/16)
        prior3 = rescale(m4, 2)
        m3 = self.reverse[2](s2, prior3) + prior3  # (B, 1, H/8, W/8)
        return rescale(coarse, 8), rescale(m5, 32), rescale(m4, 16), rescale(m3, 8)
