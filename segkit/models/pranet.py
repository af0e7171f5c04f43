"""PraNet (Fan et al., "PraNet: Parallel Reverse Attention Network for Polyp Segmentation", MICCAI 2020), computing
what the authors' ``lib/PraNet_Res2Net.py`` computes on Res2Net-50 v1b 26w x 4s, so their released weights run.

The partial decoder gives a coarse map at stride 8; three reverse-attention branches (stages 4, 3, 2) each erase
what the map already covers (``1 - sigmoid``), look for the missing parts in that stage's features and add a
residual to the map. Four logit maps come out, coarse to fine, each at the input size (deep supervision).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from segkit.models.rfb import CoarseToFine, ConvBN, rescale


class ReverseAttention(nn.Module):
    """``features * (1 - sigmoid(prior))`` through a stack of convolutions to a one-channel residual of ``prior``.

    ReLU follows every convolution but the first and the last (the authors' branches).
    """

    def __init__(self, in_ch: int, ch: int, kernel: int, depth: int, score_kernel: int) -> None:
        super().__init__()
        convs = [ConvBN(in_ch, ch, 1)]
        convs += [ConvBN(ch, ch, kernel, padding=kernel // 2) for _ in range(depth)]
        convs.append(ConvBN(ch, 1, score_kernel, padding=score_kernel // 2))
        self.convs = nn.ModuleList(convs)

    def forward(self, features: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        reverse = 1 - torch.sigmoid(prior)  # (B, 1, h, w): what the prior does not cover yet
        x = self.convs[0](reverse.expand(-1, features.shape[1], -1, -1).mul(features))
        for conv in self.convs[1:-1]:
            x = F.relu(conv(x))
        return self.convs[-1](x) + prior  # (B, 1, h, w)


class PraNet(CoarseToFine):
    """Polyp segmentation network: four logit maps, coarse to fine, as the authors' ``lateral_map_5, 4, 3, 2``
    (``forward``: the finest in eval mode, all four in training mode)."""

    task = "polyp"

    def __init__(
        self,
        backbone: str = "res2net50_v1b_26w_4s",
        channels: int = 32,
        pretrained_backbone: str | Path | None = None,
    ) -> None:
        super().__init__(backbone, channels, pretrained_backbone, neighbour=False)
        c2, c3, c4 = self.backbone.out_channels[1:]
        self.reverse = nn.ModuleList(
            [
                ReverseAttention(c4, 256, kernel=5, depth=3, score_kernel=1),
                ReverseAttention(c3, 64, kernel=3, depth=2, score_kernel=3),
                ReverseAttention(c2, 64, kernel=3, depth=2, score_kernel=3),
            ]
        )

    def refine(self, features, reduced, coarse):
        x2, x3, x4 = features  # the reverse attention reads the backbone's own stage maps
        m4 = self.reverse[0](x4, rescale(coarse, 0.25))  # (B, 1, H/32, W/32)
        m3 = self.reverse[1](x3, rescale(m4, 2))  # (B, 1, H/16, W/16)
        m2 = self.reverse[2](x2, rescale(m3, 2))  # (B, 1, H/8, W/8)
        return rescale(coarse, 8), rescale(m4, 32), rescale(m3, 16), rescale(m2, 8)
