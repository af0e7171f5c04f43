"""The inference fast path: BatchNorm folded into convolutions, Res2Net blocks rewritten for inference, and the
channels-last memory layout.

What each step buys was measured with ``segkit bench backbone`` (see ``benchmarks/RESULTS.md``):
- channels-last lets oneDNN run its NHWC kernels without layout reorders around every convolution;
- folding BatchNorm removes one full pass over every feature map;
- in a Res2Net stage block the ``scale - 1`` 3x3 convolutions are independent (no hierarchical add), so they run
  as one grouped convolution: one kernel launch instead of ``scale - 1``, and no split/concat copies there;
- ReLU and the residual add run in place.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from segkit.models.res2net import Bottle2neck


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution equal to ``bn(conv(x))`` with ``bn`` in eval mode (running statistics)."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    )
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        fused.weight.copy_(conv.weight.detach() * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias.detach())
    return fused.to(conv.weight.device, conv.weight.dtype)


class FusedBottle2neck(nn.Module):
    """Inference-only Bottle2neck with BatchNorm folded; stage blocks run their 3x3 convs as one grouped conv."""

    def __init__(self, block: Bottle2neck) -> None:
        super().__init__()
        self.width = block.width
        self.scale = block.scale
        self.is_stage_block = block.is_stage_block
        self.conv1 = fold_batchnorm(block.conv1, block.bn1)
        convs = [fold_batchnorm(c, b) for c, b in zip(block.convs, block.bns, strict=True)]
        if self.is_stage_block:
            self.convs = nn.ModuleList([_stack_as_groups(convs)])
        else:
            self.convs = nn.ModuleList(convs)
        self.pool = block.pool
        self.conv3 = fold_batchnorm(block.conv3, block.bn3)
        self.downsample = _fold_module(block.downsample) if block.downsample is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        reduced = torch.relu_(self.conv1(x))  # (B, width*scale, H, W)
        last = reduced[:, (self.scale - 1) * self.width :]
        if self.is_stage_block:
            ys = [torch.relu_(self.convs[0](reduced[:, : (self.scale - 1) * self.width])), self.pool(last)]
        else:
            splits = torch.split(reduced, self.width, dim=1)
            ys = []
            y = splits[0]
            for i, conv in enumerate(self.convs):
                y = torch.relu_(conv(y if i == 0 else y + splits[i]))
                ys.append(y)
            ys.append(last)
        out = self.conv3(torch.cat(ys, dim=1))
        return torch.relu_(out.add_(shortcut))


def _stack_as_groups(convs: list[nn.Conv2d]) -> nn.Conv2d:
    """One grouped conv equal to applying each of ``convs`` to its own consecutive channel slice."""
    first = convs[0]
    n = len(convs)
    stacked = nn.Conv2d(
        first.in_channels * n,
        first.out_channels * n,
        first.kernel_size,
        first.stride,
        first.padding,
        first.dilation,
        groups=first.groups * n,
        bias=True,
    )
    with torch.no_grad():
        stacked.weight.copy_(torch.cat([c.weight for c in convs], dim=0))
        stacked.bias.copy_(torch.cat([c.bias for c in convs], dim=0))
    return stacked.to(first.weight.device, first.weight.dtype)


def _fold_sequential(seq: nn.Sequential) -> nn.Sequential:
    """Fold, in place, every Conv2d that is directly followed by a BatchNorm2d in ``seq``.

    In place, so that subclasses of ``nn.Sequential`` with their own ``forward`` (smp's ASPP pooling) keep it;
    the BatchNorm's slot becomes an ``nn.Identity`` so indices and names stay as they were.
    """
    names = [name for name, _ in seq.named_children()]
    for prev_name, name in zip(names, names[1:], strict=False):
        prev, item = getattr(seq, prev_name), getattr(seq, name)
        if not (isinstance(item, nn.BatchNorm2d) and item.track_running_stats):
            continue
        if isinstance(prev, nn.Conv2d):
            setattr(seq, prev_name, fold_batchnorm(prev, item))
        elif isinstance(prev, nn.Sequential) and len(prev) and isinstance(prev[-1], nn.Conv2d):
            prev[-1] = fold_batchnorm(prev[-1], item)  # e.g. a separable conv block ending in its pointwise conv
        else:
            continue
        setattr(seq, name, nn.Identity())
    return seq


def _fold_named_pairs(module: nn.Module) -> None:
    """Fold ``convN``/``bnN`` attribute pairs (the ResNet naming of torchvision, timm and Res2Net).

    A deep stem (``conv1`` an ``nn.Sequential`` ending in a conv) has ``bn1`` folded into its last conv.
    """
    for name, child in list(module.named_children()):
        bn = getattr(module, "bn" + name[len("conv") :], None) if name.startswith("conv") else None
        if not (isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats):
            continue
        if isinstance(child, nn.Conv2d):
            setattr(module, name, fold_batchnorm(child, bn))
        elif isinstance(child, nn.Sequential) and isinstance(child[-1], nn.Conv2d):
            child[-1] = fold_batchnorm(child[-1], bn)
        else:
            continue
        setattr(module, "bn" + name[len("conv") :], nn.Identity())


# Module types whose forward applies ``bnN`` directly after ``convN``: folding by name is safe only for these.
_CONV_THEN_BN_TYPES = ("Res2Net", "ResNet", "Bottleneck", "BasicBlock", "FeatureListNet")


def _fold_module(module: nn.Module) -> nn.Module:
    if isinstance(module, Bottle2neck):
        return FusedBottle2neck(module)
    if type(module).__name__ in _CONV_THEN_BN_TYPES:
        _fold_named_pairs(module)
    for name, child in list(module.named_children()):
        setattr(module, name, _fold_module(child))
    if isinstance(module, nn.Sequential):
        return _fold_sequential(module)
    return module


class InferenceModel(nn.Module):
    """Wraps a folded network: feeds it channels-last input under ``torch.inference_mode``-friendly eval."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body
        for attr in ("out_channels", "strides", "output_stride", "task", "num_classes"):
            if hasattr(body, attr):
                setattr(self, attr, getattr(body, attr))

    def forward(self, x: torch.Tensor):
        return self.body(x.contiguous(memory_format=torch.channels_last))


class CudaGraphModel(nn.Module):
    """Replays a CUDA graph captured once per input shape: at small batches a Res2Net forward is bound by the
    launch cost of its many small kernels (about 160 for Res2Net-50 26w_4s), which a graph replay removes.

    Used only for CUDA inputs without autograd; anything else runs the module directly. Outputs are copies, so
    they stay valid after the next call.
    """

    def __init__(self, body: nn.Module, max_shapes: int = 8) -> None:
        super().__init__()
        self.body = body
        self.max_shapes = max_shapes
        self._graphs: dict = {}
        for attr in ("out_channels", "strides", "output_stride", "task", "num_classes"):
            if hasattr(body, attr):
                setattr(self, attr, getattr(body, attr))

    def forward(self, x: torch.Tensor):
        if not x.is_cuda or (torch.is_grad_enabled() and x.requires_grad):
            return self.body(x)
        key = (tuple(x.shape), x.dtype, x.device, torch.is_autocast_enabled("cuda"))
        if key not in self._graphs:
            if len(self._graphs) >= self.max_shapes:
                return self.body(x)
            self._graphs[key] = self._capture(x)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        graph.replay()
        return [t.clone() for t in static_out] if isinstance(static_out, list) else static_out.clone()

    def _capture(self, x: torch.Tensor):
        static_in = x.clone()
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(2):  # warm-up: cuDNN picks its algorithms outside the capture
                self.body(static_in)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.body(static_in)
        return graph, static_in, static_out


def prepare_for_inference(model: nn.Module, cuda_graphs: bool | None = None) -> nn.Module:
    """An eval-mode copy of ``model`` for fast inference, equal to ``model.eval()`` within 1e-4 relative.

    BatchNorm is folded into the preceding convolutions, Res2Net blocks are replaced by their inference form,
    and weights and input use the channels-last layout. On CUDA (``cuda_graphs`` None: when the model's weights
    are on a GPU) each input shape is captured once as a CUDA graph and replayed. The original is left untouched.
    """
    body = copy.deepcopy(model).eval()
    body = _fold_module(body)
    body = body.to(memory_format=torch.channels_last)
    for p in body.parameters():
        p.requires_grad_(False)
    fast = InferenceModel(body).eval()
    if cuda_graphs is None:
        cuda_graphs = any(p.is_cuda for p in body.parameters())
    return CudaGraphModel(fast).eval() if cuda_graphs else fast
