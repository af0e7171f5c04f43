"""The inference fast path: BatchNorm folded into convolutions, each network block in its inference form (a block
provides it: ``inference_form``; timm's plain ResNet bottleneck gets one here), and the channels-last layout.

Why each step (``segkit bench backbone`` measures the whole; benchmarks/RESULTS.md):
- channels-last lets oneDNN run its NHWC kernels without layout reorders around every convolution;
- folding BatchNorm removes one full pass over every feature map;
- in a Res2Net stage block the ``scale - 1`` 3x3 convolutions are independent (no hierarchical add), so they run
  as one grouped convolution: one kernel launch instead of ``scale - 1``, and no split/concat copies there;
- ReLU and the residual add run inside the convolutions where oneDNN fuses them (``segkit.accel.onednn``), and
  the other Res2Net blocks write each y_i over conv1's output instead of concatenating.
"""

from __future__ import annotations

import copy
import sys

import torch
import torch.fx
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from segkit.accel.onednn import (
    ConvAct,
    cudnn_fusion_available,
    cudnn_fusion_pays,
    fusable,
    onednn_available,
    run_convs_on_cudnn,
    wrap_atrous,
)


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution equal to ``bn(conv(x))`` with ``bn``'s running statistics (PyTorch's own fusion)."""
    return fuse_conv_bn_eval(conv.eval(), bn.eval())


class InferenceBlock(nn.Module):
    """A network block in its inference form (BatchNorm folded, activations fused): left as it is by the
    folding and fusion passes. A block of a segkit network provides one through ``inference_form(split_multiple,
    onednn)`` (``segkit.models.res2net.Bottle2neck``); ``prepare_for_inference`` calls it."""


class FusedBottleneck(InferenceBlock):
    """Inference form of timm's ResNet ``Bottleneck`` (the baseline), the same steps as ``FusedBottle2neck``:
    BatchNorm folded, each ReLU and the residual add fused into its convolution where oneDNN runs it. Only for
    the plain block (no squeeze-excitation, drop-block, anti-aliasing or drop-path), which ``_replace_blocks``
    checks."""

    def __init__(self, block: nn.Module, onednn: bool = False) -> None:
        super().__init__()
        self.conv1 = ConvAct(fold_batchnorm(block.conv1, block.bn1), "relu", onednn)
        self.conv2 = ConvAct(fold_batchnorm(block.conv2, block.bn2), "relu", onednn)
        self.conv3 = ConvAct(fold_batchnorm(block.conv3, block.bn3), "add_relu", onednn)
        self.downsample = fold_module(block.downsample) if block.downsample is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.conv3(self.conv2(self.conv1(x)), shortcut)


def _plain_timm_bottleneck(module: nn.Module) -> bool:
    """timm's ResNet Bottleneck without the extras ``FusedBottleneck`` does not reproduce."""
    from timm.models.resnet import Bottleneck

    if type(module) is not Bottleneck:
        return False
    plain = all(
        isinstance(getattr(module, name, None), (nn.Identity, type(None)))
        for name in ("se", "drop_block", "aa", "drop_path")
    )
    relus = all(type(getattr(module, f"act{i}", None)) is nn.ReLU for i in (1, 2, 3))
    return plain and relus and all(type(getattr(module, f"bn{i}")) is nn.BatchNorm2d for i in (1, 2, 3))


def pad_splits(conv: nn.Conv2d, width: int, padded: int, dim: int) -> nn.Conv2d:
    """``conv`` with its output (``dim`` 0) or input (``dim`` 1) channels, read as consecutive splits of
    ``width``, each followed by ``padded - width`` zero channels. Grouped convolutions are padded per group."""
    if padded == width:
        return conv
    weight = conv.weight.detach()
    assert conv.groups == 1 or dim == 0 and conv.groups == weight.shape[0] // width, "split padding needs groups=1"
    n = weight.shape[dim] // width
    shape = list(weight.shape)
    shape[dim] = n * padded
    new_weight = weight.new_zeros(shape)
    for i in range(n):
        new_weight.narrow(dim, i * padded, width).copy_(weight.narrow(dim, i * width, width))
    out_ch, in_ch = new_weight.shape[0], new_weight.shape[1] * conv.groups
    padded_conv = nn.Conv2d(
        in_ch, out_ch, conv.kernel_size, conv.stride, conv.padding, conv.dilation, groups=conv.groups, bias=True
    ).to(weight.device, weight.dtype)
    with torch.no_grad():
        padded_conv.weight.copy_(new_weight)
        bias = conv.bias.detach() if conv.bias is not None else weight.new_zeros(conv.out_channels)
        if dim == 0:
            new_bias = bias.new_zeros(out_ch)
            for i in range(n):
                new_bias[i * padded : i * padded + width] = bias[i * width : (i + 1) * width]
            bias = new_bias
        padded_conv.bias.copy_(bias)
    return padded_conv


def stack_as_groups(convs: list[nn.Conv2d]) -> nn.Conv2d:
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


class _FoldTracer(torch.fx.Tracer):
    """Traces down to convolutions and BatchNorms; a module holding neither (pooling, activations, timm's
    padded pooling with its shape arithmetic) stays one opaque call, since its inside cannot hold a pair."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, (ConvAct, InferenceBlock)):  # already folded and fused
            return True
        holds_pair_parts = any(isinstance(sub, (nn.Conv2d, nn.BatchNorm2d)) for sub in m.modules())
        return super().is_leaf_module(m, qualname) or not holds_pair_parts


def _conv_pairs(module: nn.Module, follows, through_identities: bool = False) -> list[tuple[str, str]] | None:
    """(conv, follower) submodule paths where ``module``'s traced forward feeds a convolution's output to a
    module that ``follows`` accepts, and nowhere else (``through_identities``: also through identities, such as
    folded BatchNorms), each called once; None when the forward cannot be traced (data-dependent control flow).

    So folding and fusion are decided by the data flow: any network (timm's, smp's, ours) is changed where, and
    only where, the pair really follows a convolution."""
    try:
        graph = _FoldTracer().trace(module)
    except Exception:  # noqa: BLE001 - any tracing failure only means: decide inside the children
        return None
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1

    def producer(node: torch.fx.Node):
        source = node.args[0] if node.args else None
        while (
            through_identities and _single_call(source) and isinstance(module.get_submodule(source.target), nn.Identity)
        ):
            source = source.args[0]
        return source if _single_call(source) else None

    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or calls[node.target] != 1 or not follows(module.get_submodule(node.target)):
            continue
        source = producer(node)
        if source is not None and isinstance(module.get_submodule(source.target), nn.Conv2d):
            if calls[source.target] == 1:
                pairs.append((source.target, node.target))
    return pairs


def _single_call(source) -> bool:
    """A submodule call whose output goes to one place only."""
    return isinstance(source, torch.fx.Node) and source.op == "call_module" and len(source.users) == 1


def _conv_bn_pairs(module: nn.Module) -> list[tuple[str, str]] | None:
    """Convolutions followed by a BatchNorm with running statistics (see ``_conv_pairs``)."""
    return _conv_pairs(module, lambda m: isinstance(m, nn.BatchNorm2d) and m.track_running_stats)


def _conv_relu_pairs(module: nn.Module) -> list[tuple[str, str]] | None:
    """Convolutions followed, through folded BatchNorms, by a ReLU module (see ``_conv_pairs``)."""
    return _conv_pairs(module, lambda m: type(m) is nn.ReLU, through_identities=True)


def _replace_pairs(module: nn.Module, find_pairs, replace, wanted) -> None:
    """For every (first, second) pair ``find_pairs(module)`` gives, ``first`` becomes ``replace(first, second)``
    and ``second`` an identity; where the forward cannot be traced, inside each child instead. Modules for
    which ``wanted`` is false are skipped (nothing there to pair)."""
    if not wanted(module):
        return
    pairs = find_pairs(module)
    if pairs is None:
        for child in module.children():
            _replace_pairs(child, find_pairs, replace, wanted)
        return
    for first, second in pairs:
        module.set_submodule(first, replace(module.get_submodule(first), module.get_submodule(second)))
        module.set_submodule(second, nn.Identity())


def _has_conv_and_bn(module: nn.Module) -> bool:
    kinds = {type(m) for m in module.modules()}
    return any(issubclass(k, nn.Conv2d) for k in kinds) and any(issubclass(k, nn.BatchNorm2d) for k in kinds)


def _fold_pairs(module: nn.Module) -> None:
    """Fold, in place, every conv -> BatchNorm pair of ``module``'s traced forward."""
    _replace_pairs(module, _conv_bn_pairs, fold_batchnorm, _has_conv_and_bn)


def _fuse_conv_relus(module: nn.Module, onednn: bool) -> None:
    """Every conv -> ReLU pair of ``module`` (found by tracing, as for BatchNorm) as one ``ConvAct``."""
    _replace_pairs(
        module,
        _conv_relu_pairs,
        lambda conv, relu: ConvAct(conv, "relu", onednn),
        lambda m: any(type(sub) is nn.Conv2d for sub in m.modules()),
    )


def _run_lone_convs_in_onednn(module: nn.Module) -> None:
    """Every convolution still plain after the fusion (a projection shortcut, a classifier: nothing follows it
    that oneDNN could fuse) as a ``ConvAct`` without post-op, so that its weight too is reordered once per input
    shape rather than on every call (a small gain, never a loss)."""
    for name, child in list(module.named_children()):
        if type(child) is nn.Conv2d and fusable(child):
            setattr(module, name, ConvAct(child, "none", onednn=True))
        elif not isinstance(child, ConvAct):
            _run_lone_convs_in_onednn(child)


def _replace_blocks(module: nn.Module, split_multiple: int = 1, onednn: bool = False) -> nn.Module:
    """Res2Net blocks (and timm's plain ResNet bottlenecks) replaced by their inference form, everywhere."""
    if callable(getattr(module, "inference_form", None)):  # segkit's Res2Net block
        return module.inference_form(split_multiple, onednn)
    if _plain_timm_bottleneck(module):
        return FusedBottleneck(module, onednn)
    for name, child in list(module.named_children()):
        setattr(module, name, _replace_blocks(child, split_multiple, onednn))
    return module


def fold_module(module: nn.Module, split_multiple: int = 1, onednn: bool = False) -> nn.Module:
    """Res2Net (and plain ResNet) blocks in inference form, then every conv -> BatchNorm pair folded and every
    conv -> ReLU pair fused (both found by tracing)."""
    module = _replace_blocks(module, split_multiple, onednn)
    _fold_pairs(module)
    _fuse_conv_relus(module, onednn)
    if onednn:
        _run_lone_convs_in_onednn(module)
    return module


class InferenceModel(nn.Module):
    """Wraps a folded network: feeds it channels-last input in the weights' dtype (float32 or bfloat16) and
    returns float32 outputs, whatever the precision inside."""

    def __init__(self, body: nn.Module, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.body = body
        self.dtype = dtype
        for attr in ("out_channels", "strides", "output_stride", "task", "num_classes"):
            if hasattr(body, attr):
                setattr(self, attr, getattr(body, attr))

    def forward(self, x: torch.Tensor):
        out = self.body(x.to(self.dtype).contiguous(memory_format=torch.channels_last))
        if self.dtype == torch.float32:
            return out
        return [t.float() for t in out] if isinstance(out, (list, tuple)) else out.float()


class CompiledModel(nn.Module):
    """``torch.compile`` (inductor, weights frozen into the graph) of an inference model; when compiling or
    running the compiled code fails, says so in one line and runs the model eagerly from then on."""

    def __init__(self, body: nn.Module, warn=None) -> None:
        super().__init__()
        self.body = body
        self.compiled = torch.compile(body, options={"freezing": True})
        self.failed: str | None = None
        self.warn = warn or (lambda message: print(message, file=sys.stderr, flush=True))
        for attr in ("out_channels", "strides", "output_stride", "task", "num_classes", "dtype"):
            if hasattr(body, attr):
                setattr(self, attr, getattr(body, attr))

    def forward(self, x: torch.Tensor):
        if self.failed is None:
            try:
                return self.compiled(x)
            except Exception as err:  # noqa: BLE001 - any compiler failure: fall back, said once
                self.failed = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
                self.warn(f"torch.compile failed ({self.failed}); running without compilation")
        return self.body(x)


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


def default_split_multiple(device: torch.device) -> int:
    """16 on a CUDA GPU, where cuDNN runs Res2Net's 26- and 52-channel convolutions far below its speed at 32 or
    64 channels; 1 on a CPU, where padding measured no faster (benchmarks/RESULTS.md, "The same on a GPU" and
    "Where Res2Net-50's CPU time goes")."""
    return 16 if device.type == "cuda" else 1


def onednn_fuses(device: torch.device | str) -> bool:
    """Whether the uncompiled fast path on ``device`` runs oneDNN's fused convolutions: a CPU whose PyTorch build
    has the operators, and they agree with ``F.conv2d`` (``onednn_available``)."""
    cpu = torch.device(device).type == "cpu"
    return cpu and torch.backends.mkldnn.enabled and onednn_available()


def prepare_for_inference(
    model: nn.Module,
    cuda_graphs: bool | None = None,
    precision: str = "fp32",
    compile: bool = False,
    split_multiple: int | None = None,
    onednn: bool | None = None,
    cudnn_fused: bool | None = None,
) -> nn.Module:
    """An eval-mode copy of ``model`` for fast inference; in fp32 (the default) equal to ``model.eval()`` within
    1e-4 relative.

    BatchNorm is folded into the preceding convolutions, Res2Net blocks are replaced by their inference form,
    and weights and input use the channels-last layout. ``precision``: ``"fp32"``, ``"bf16"`` (weights and
    activations in bfloat16, outputs returned as float32; about 4e-3 relative) or ``"auto"`` (bf16 where the
    weights' device runs it natively). ``compile``: ``torch.compile`` with frozen weights (pays a compilation on
    each new input shape; worth it for long jobs), falling back to eager with one line if it fails. On CUDA
    (``cuda_graphs`` None: when the weights are on a GPU, and not compiled) each input shape is captured once as a
    CUDA graph and replayed. ``split_multiple``: pad each Res2Net split's width with zero channels to a multiple
    of this (exact; see ``FusedBottle2neck``); None: ``default_split_multiple`` of the weights' device.
    ``onednn``: run each convolution with its ReLU (and residual add) fused by oneDNN, weights prepacked per input
    shape, the atrous (ASPP) convolutions in the fastest of their forms (bf16 or fp32, padding explicit or not;
    ``segkit.accel.onednn.FastestAtrous``); None:
    on a CPU where the operators exist, unless compiled (inductor fuses on its own); False: plain PyTorch modules
    (for ONNX export). ``cudnn_fused``: on a GPU, run each convolution with its bias, ReLU (and residual add) as
    one cuDNN call where ``cudnn_fusion_available`` says it works; None: so on a GPU unless compiled, where one
    convolution timed both ways says it is faster there (``cudnn_fusion_pays``, measured once per GPU model; an
    H200 ran Res2Net-50 at batch 32 1.69x faster in fp32 and 1.61x in bf16 with it, ``benchmarks/RESULTS.md``,
    "The same on a GPU"); False: PyTorch's separate convolution, add and ReLU.
    The original is left untouched.
    """
    from segkit.accel.hardware import resolve_precision

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if split_multiple is None:
        split_multiple = default_split_multiple(device)
    if split_multiple < 1:
        raise ValueError(f"split_multiple must be a positive integer, got {split_multiple}")
    dtype = torch.bfloat16 if resolve_precision(precision, device) == "bf16" else torch.float32
    if onednn is None:
        onednn = not compile and onednn_fuses(device)
    body = copy.deepcopy(model).eval()
    body = fold_module(body, split_multiple, onednn)
    body = body.to(dtype=dtype, memory_format=torch.channels_last)
    for p in body.parameters():
        p.requires_grad_(False)
    if onednn:
        wrap_atrous(body)
    if cudnn_fused is None:  # inductor fuses on its own, as for oneDNN's operators
        cudnn_fused = not compile and cudnn_fusion_pays(device, dtype)
    if cudnn_fused and cudnn_fusion_available(device, dtype):
        run_convs_on_cudnn(body)
    fast = InferenceModel(body, dtype).eval()
    return run_as(fast, compile, device.type == "cuda" if cuda_graphs is None else cuda_graphs)


def run_as(fast: InferenceModel, compile: bool, cuda_graphs: bool) -> nn.Module:
    """How an inference model runs: compiled, else replayed as CUDA graphs when ``cuda_graphs``, else as it is."""
    if compile:
        return CompiledModel(fast).eval()
    return CudaGraphModel(fast).eval() if cuda_graphs else fast
