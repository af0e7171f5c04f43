"""Res2Net and Res2NeXt backbones (Gao et al., "Res2Net: A New Multi-Scale Backbone Architecture", TPAMI 2021).

A Bottle2neck splits the 3x3 stage of a ResNet bottleneck into ``scale`` groups of ``width`` channels linked
hierarchically: y_1 = K_1(x_1), y_i = K_i(x_i + y_{i-1}), and the last split passes through untouched. The first
("stage") block of every layer has no hierarchical add and average-pools its last split instead.

Parameter and buffer names follow the official checkpoints and timm exactly (``conv1``/``conv1.N``, ``bn1``,
``layerL.B.{conv1,bn1,convs.N,bns.N,conv3,bn3,downsample.N}``), so their weights load with ``strict=True``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from segkit.accel.fast import InferenceBlock, fold_batchnorm, fold_module, pad_splits, stack_as_groups
from segkit.accel.onednn import ConvAct

EXPANSION = 4  # bottleneck output channels = planes * EXPANSION
STAGE_PLANES = (64, 128, 256, 512)


@dataclass(frozen=True)
class Res2NetSpec:
    """Hyper-parameters of one Res2Net variant, named as in the paper and the official code."""

    layers: tuple[int, int, int, int]  # blocks per stage (layer1..layer4)
    base_width: int = 26  # "w": channels of one split for planes=64
    scale: int = 4  # "s": number of splits
    cardinality: int = 1  # groups of the 3x3 convs (Res2NeXt: 8)
    deep_stem: bool = False  # v1b: three 3x3 convs (32-32-64) instead of one 7x7
    avg_down: bool = False  # v1b: average-pool before the 1x1 shortcut conv instead of a strided conv


class SamePadAvgPool2x2(nn.Module):
    """2x2 average, stride 1, zero-padded by one pixel at the right and bottom (zeros count in the mean).

    This is what the v1b shortcut's 2x2/stride-2 pool becomes when its stride is replaced by dilation; it is the
    convention of timm's dilated ResNet-D, kept so that dilated v1b models match timm exactly.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.pad(x, (0, 1, 0, 1)), kernel_size=2, stride=1)


def _shortcut(in_ch: int, out_ch: int, stride: int, dilation: int, avg_down: bool) -> nn.Sequential | None:
    """The projection shortcut of a stage's first block (keys ``downsample.N`` as in the official code)."""
    if stride == 1 and in_ch == out_ch:
        return None
    if not avg_down:
        conv = nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)
        return nn.Sequential(conv, nn.BatchNorm2d(out_ch))
    if stride > 1:
        pool: nn.Module = nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
    elif dilation > 1:
        pool = SamePadAvgPool2x2()
    else:
        pool = nn.Identity()
    return nn.Sequential(pool, nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))


class Bottle2neck(nn.Module):
    """The Res2Net bottleneck: 1x1 conv, hierarchical 3x3 convs over ``scale`` splits, 1x1 conv, residual."""

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
        base_width: int = 26,
        scale: int = 4,
        cardinality: int = 1,
        is_stage_block: bool = False,
    ) -> None:
        super().__init__()
        if scale < 2:
            raise ValueError(f"Res2Net scale must be >= 2, got {scale}")
        width = int(math.floor(planes * base_width / 64.0)) * cardinality
        self.width = width
        self.scale = scale
        self.is_stage_block = is_stage_block
        self.conv1 = nn.Conv2d(inplanes, width * scale, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, 3, stride, padding=dilation, dilation=dilation, groups=cardinality, bias=False)
            for _ in range(scale - 1)
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(scale - 1))
        # The stage block's last split is pooled to the new resolution (count_include_pad=True as in the paper).
        self.pool = nn.AvgPool2d(3, stride, padding=1) if is_stage_block else None
        self.conv3 = nn.Conv2d(width * scale, planes * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.relu(self.bn1(self.conv1(x)))  # (B, width*scale, H, W)
        joined = multi_scale(reduced, self.width, self._step, not self.is_stage_block, self._last)
        out = self.bn3(self.conv3(joined))  # (B, planes*4, H/stride, W/stride)
        out += x if self.downsample is None else self.downsample(x)  # in place: bn3's output is not needed
        return self.relu(out)

    def _step(self, i: int, y: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bns[i](self.convs[i](y)))

    def _last(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.pool is None else self.pool(x)

    def inference_form(self, split_multiple: int = 1, onednn: bool = False) -> nn.Module:
        """This block for inference (``segkit.accel.prepare_for_inference`` replaces it by this)."""
        return FusedBottle2neck(self, split_multiple, onednn)


def multi_scale(
    reduced: torch.Tensor,
    width: int,
    step: Callable[[int, torch.Tensor], torch.Tensor],
    hierarchical: bool,
    last: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Res2Net's multi-scale stage, the one definition of its computation: ``reduced`` read as splits x_1..x_s
    of ``width`` channels, y_1 = K_1(x_1), y_i = K_i(x_i + y_{i-1}) (``hierarchical``; a stage block has no add:
    y_i = K_i(x_i)), and the result cat(y_1, ..., y_{s-1}, last(x_s)). ``step(i, y)`` is K_{i+1} with its
    BatchNorm and ReLU."""
    splits = torch.split(reduced, width, dim=1)
    ys: list[torch.Tensor] = []
    for i in range(len(splits) - 1):
        ys.append(step(i, splits[i] if (i == 0 or not hierarchical) else ys[-1] + splits[i]))
    ys.append(last(splits[-1]))
    return torch.cat(ys, dim=1)


class FusedBottle2neck(InferenceBlock):
    """A Bottle2neck for inference only: BatchNorm folded, each ReLU (and the residual add) fused into its
    convolution where oneDNN runs it; a stage block runs its independent 3x3 convolutions as one grouped
    convolution (one kernel instead of ``scale - 1``, no split/concat copies there).

    ``split_multiple``: each split's width is padded with zero channels up to a multiple of this (26 -> 32 for 8),
    for GPU kernels that want channel counts in multiples of 8 or 16. Exact: the padded channels have zero
    weights and bias, so they stay zero through ReLU and pooling and the next 1x1 convolution ignores them.
    """

    def __init__(self, block: Bottle2neck, split_multiple: int = 1, onednn: bool = False) -> None:
        super().__init__()
        width = block.width
        grouped = block.convs[0].groups > 1  # Res2NeXt: zero channels appended would shift the groups; left as is
        self.width = width if grouped else -(-width // split_multiple) * split_multiple
        self.scale = block.scale
        self.is_stage_block = block.is_stage_block
        conv1 = pad_splits(fold_batchnorm(block.conv1, block.bn1), width, self.width, dim=0)
        self.conv1 = ConvAct(conv1, "relu", onednn)
        convs = [
            pad_splits(pad_splits(fold_batchnorm(c, b), width, self.width, dim=0), width, self.width, dim=1)
            for c, b in zip(block.convs, block.bns, strict=True)
        ]
        if self.is_stage_block:
            convs = [stack_as_groups(convs)]
        self.convs = nn.ModuleList(ConvAct(c, "relu", onednn) for c in convs)
        self.pool = block.pool
        conv3 = pad_splits(fold_batchnorm(block.conv3, block.bn3), width, self.width, dim=1)
        self.conv3 = ConvAct(conv3, "add_relu", onednn)
        self.downsample = fold_module(block.downsample) if block.downsample is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        reduced = self.conv1(x)  # relu(conv1(x)): (B, width*scale, H, W)
        if self.is_stage_block:
            last = reduced[:, (self.scale - 1) * self.width :]
            joined = torch.cat([self.convs[0](reduced[:, : (self.scale - 1) * self.width]), self.pool(last)], dim=1)
        elif torch.jit.is_tracing() or (reduced.requires_grad and torch.is_grad_enabled()):
            # traced for ONNX, or recorded by autograd: the block's own computation (in-place writes would become
            # scatter operators in a graph, and autograd needs conv1's output unchanged)
            joined = multi_scale(reduced, self.width, lambda i, y: self.convs[i](y), True, lambda x_s: x_s)
        else:
            joined = self._hierarchy_in_place(reduced)
        return self.conv3(joined, shortcut)  # relu(conv3(...) + shortcut)

    def _hierarchy_in_place(self, reduced: torch.Tensor) -> torch.Tensor:
        """``multi_scale`` (hierarchical) written over conv1's output: each y_i takes the place of x_i once
        x_{i+1} has been read, and x_s stays where it is, so there is no concatenation; tested equal to
        ``multi_scale``. Each add reads a contiguous copy of its split: with the channel slice itself PyTorch's add
        takes a strided path, several times slower in bf16 (benchmarks/RESULTS.md, "Res2Net's inference block")."""
        w = self.width
        y = self.convs[0](reduced[:, :w])
        for i in range(1, len(self.convs)):
            z = y + reduced[:, i * w : (i + 1) * w].contiguous(memory_format=torch.channels_last)
            reduced[:, (i - 1) * w : i * w].copy_(y)  # x_i was read: y_i takes its place
            y = self.convs[i](z)
        reduced[:, (len(self.convs) - 1) * w : len(self.convs) * w].copy_(y)
        return reduced


def _stem(deep: bool) -> tuple[nn.Module, nn.BatchNorm2d]:
    if not deep:
        return nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
    conv = nn.Sequential(
        nn.Conv2d(3, 32, 3, 2, 1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 32, 3, 1, 1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3, 1, 1, bias=False),
    )
    return conv, nn.BatchNorm2d(64)


def stage_strides_and_dilations(output_stride: int, dilate_first_block: bool = False) -> list[tuple[int, int, int]]:
    """(stride, dilation of the first block, dilation of the other blocks) for layer1..layer4.

    Strides that would take the network past ``output_stride`` are replaced by dilation; a dilated stage's
    first block keeps the previous stage's dilation (the DeepLabv3 / torchvision / timm convention), or takes the
    stage's own with ``dilate_first_block`` (DeepLab v2's ResNet, which Res2Net-PoolNet's backbone follows).
    """
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    plan = []
    net_stride, dilation = 4, 1  # the stem reduces by 4
    for stage in range(4):
        stride = 1 if stage == 0 else 2
        prev_dilation = dilation
        if stride > 1 and net_stride >= output_stride:
            dilation *= stride
            stride = 1
        else:
            net_stride *= stride
        plan.append((stride, dilation if dilate_first_block else prev_dilation, dilation))
    return plan


class Res2Net(nn.Module):
    """Res2Net feature extractor: ``forward(x)`` returns the outputs of layer1..layer4.

    ``out_channels`` and ``strides`` describe those four maps; ``fc`` is absent (ImageNet heads are not used).
    ``dilate_first_block`` and ``stem_pool_ceil`` (the stem's max-pool rounds its output size up) reproduce the
    layout of DeepLab v2's ResNet, on which Res2Net-PoolNet builds; both are off in the official classifiers.
    """

    def __init__(
        self,
        spec: Res2NetSpec,
        output_stride: int = 32,
        *,
        dilate_first_block: bool = False,
        stem_pool_ceil: bool = False,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.output_stride = output_stride
        self.conv1, self.bn1 = _stem(spec.deep_stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1, ceil_mode=stem_pool_ceil)
        inplanes = 64
        plan = stage_strides_and_dilations(output_stride, dilate_first_block)
        for idx, (planes, blocks, (stride, first_dil, dil)) in enumerate(
            zip(STAGE_PLANES, spec.layers, plan, strict=True)
        ):
            layer = self._make_layer(inplanes, planes, blocks, stride, first_dil, dil)
            self.add_module(f"layer{idx + 1}", layer)
            inplanes = planes * EXPANSION
        self.out_channels: tuple[int, ...] = tuple(p * EXPANSION for p in STAGE_PLANES)
        self.strides: tuple[int, ...] = tuple(min(s, output_stride) for s in (4, 8, 16, 32))
        self._init_weights()

    def _make_layer(
        self, inplanes: int, planes: int, blocks: int, stride: int, first_dil: int, dil: int
    ) -> nn.Sequential:
        s = self.spec
        common = dict(base_width=s.base_width, scale=s.scale, cardinality=s.cardinality)
        shortcut = _shortcut(inplanes, planes * EXPANSION, stride, dil, s.avg_down)
        first = Bottle2neck(
            inplanes, planes, stride=stride, dilation=first_dil, downsample=shortcut, is_stage_block=True, **common
        )
        rest = [Bottle2neck(planes * EXPANSION, planes, dilation=dil, **common) for _ in range(blocks - 1)]
        return nn.Sequential(first, *rest)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    stem_channels = 64  # channels of the stride-2 stem output (forward_pyramid's first map)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_pyramid(x)[1:]

    def forward_pyramid(self, x: torch.Tensor, depth: int = 5) -> list[torch.Tensor]:
        """The stem's stride-2 output, then layer1..layer4: the first ``depth`` of these five maps (smp's
        encoder contract; later stages are not computed)."""
        maps = [self.relu(self.bn1(self.conv1(x)))]  # (B, 64, H/2, W/2)
        x = self.maxpool(maps[0])
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4)[: depth - 1]:
            x = layer(x)  # 256, 512, 1024, 2048 channels at H/4, H/8, H/16, H/32 (capped by the output stride)
            maps.append(x)
        return maps[:depth]


# The official variants. A builder only sets arguments.
RES2NET_SPECS: dict[str, Res2NetSpec] = {
    "res2net50_26w_4s": Res2NetSpec((3, 4, 6, 3), base_width=26, scale=4),
    "res2net50_48w_2s": Res2NetSpec((3, 4, 6, 3), base_width=48, scale=2),
    "res2net50_14w_8s": Res2NetSpec((3, 4, 6, 3), base_width=14, scale=8),
    "res2net50_26w_6s": Res2NetSpec((3, 4, 6, 3), base_width=26, scale=6),
    "res2net50_26w_8s": Res2NetSpec((3, 4, 6, 3), base_width=26, scale=8),
    "res2net101_26w_4s": Res2NetSpec((3, 4, 23, 3), base_width=26, scale=4),
    "res2next50": Res2NetSpec((3, 4, 6, 3), base_width=4, scale=4, cardinality=8),
    "res2net50_v1b_26w_4s": Res2NetSpec((3, 4, 6, 3), base_width=26, scale=4, deep_stem=True, avg_down=True),
    "res2net101_v1b_26w_4s": Res2NetSpec((3, 4, 23, 3), base_width=26, scale=4, deep_stem=True, avg_down=True),
}

# timm's names for the same networks.
RES2NET_ALIASES: dict[str, str] = {
    "res2net50d": "res2net50_v1b_26w_4s",
    "res2net101d": "res2net101_v1b_26w_4s",
}
