"""Convolutions with their ReLU (and residual add) fused in, for the CPU inference fast path.

With BatchNorm folded, what is left around a convolution on a CPU is elementwise passes over its output: the
ReLU, and in a bottleneck the residual add before the last ReLU. oneDNN can apply both inside the convolution
("post-ops"), while the output is still in cache. PyTorch reaches them through the operators inductor itself
emits on CPUs (``torch.ops.mkldnn._convolution_pointwise``); segkit calls them directly, so the eager fast path
gets the fusion without a compilation. The weights are also reordered into oneDNN's own layout ("prepacked")
once per input shape instead of on every call.

Once the convolutions run on AMX, the separate ReLUs and residual adds cost about a third of a bf16 forward;
fused, with weights reordered for each input shape (reordered without it they can be far slower than not fusing),
the fast path is faster in both precisions (benchmarks/RESULTS.md, "Decisions that rest on a measurement").

``ConvAct`` is one convolution with what follows it, ``relu`` or ``add_relu`` (``relu(conv(x) + other)``), or
``none`` (a convolution nothing follows that could be fused, still with its weight reordered per shape), run
fused where ``onednn_available`` says the operators exist and agree with PyTorch's own convolution, and as
``conv``, ``add_`` and ``relu_`` elsewhere (CUDA, other builds, ONNX export): the same numbers either way, up to
float rounding. ``FastestAtrous`` runs an atrous convolution in the fastest of its forms (bf16 or fp32, padding
explicit or not), timed per shape.

On a GPU the same fusion exists in cuDNN (convolution, bias, residual add and ReLU in one kernel), which PyTorch
reaches through ``torch.cudnn_convolution_relu`` and ``torch.cudnn_convolution_add_relu`` (the operators of its
frozen-graph fusion for CUDA). Without it PyTorch adds a folded convolution's bias, the residual and the ReLU as
separate passes over the output, which a GPU profile found to be the largest share of Res2Net-50's forward after
the convolutions (benchmarks/RESULTS.md, "The same on a GPU"). ``run_convs_on_cudnn`` switches a fast-path model
to it; ``prepare_for_inference`` does so on a GPU where ``cudnn_fusion_pays`` (one convolution timed both ways,
once per GPU model) unless ``cudnn_fused=False`` (measured by ``benchmarks/gap.py``: 1.6-1.7x the throughput of the
separate steps on an H200).
"""

from __future__ import annotations

import copy
import functools

import torch
import torch.nn.functional as F
from torch import nn

from segkit.accel.decisions import measured

POSTS = ("none", "relu", "add_relu")
# Input shapes a convolution keeps a reordered weight for, the least recently used dropped first. A segmentation
# job at original sizes meets many, and a weight reordered for another shape is no help, so keeping few shapes
# throws the fusion's gain away on such jobs; the price is memory, up to this many reordered copies of the
# weights in a job of many sizes (one in a job of one size). Set by ``segkit bench predict --mixed-sizes``
# (benchmarks/RESULTS.md, "Decisions that rest on a measurement").
PACKED_SHAPES = 16


@functools.cache
def onednn_available() -> bool:
    """Whether this PyTorch build runs oneDNN's fused convolutions on this CPU, and they agree with
    ``F.conv2d`` (alone, + ReLU, + add + ReLU) on a small case (checked once per process)."""
    try:
        ops = torch.ops.mkldnn
        if not torch.backends.mkldnn.is_available():
            return False
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(1, 8, 6, 6, generator=gen).contiguous(memory_format=torch.channels_last)
        other = torch.randn(1, 8, 6, 6, generator=gen).contiguous(memory_format=torch.channels_last)
        w = torch.randn(8, 8, 3, 3, generator=gen).contiguous(memory_format=torch.channels_last)
        b = torch.randn(8, generator=gen)
        packed = ops._reorder_convolution_weight(w, [1, 1], [1, 1], [1, 1], 1, list(x.shape))  # as forward
        relu = ops._convolution_pointwise(x, packed, b, [1, 1], [1, 1], [1, 1], 1, "relu", [], "")
        plain = ops._convolution_pointwise(x, packed, b, [1, 1], [1, 1], [1, 1], 1, "none", [], "")
        added = ops._convolution_pointwise.binary(
            x, other, packed, b, [1, 1], [1, 1], [1, 1], 1, "add", 1.0, "relu", [], ""
        )
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    want = F.conv2d(x, w, b, padding=1)
    agree = torch.allclose(plain, want, atol=1e-4) and torch.allclose(relu, want.relu(), atol=1e-4)
    return agree and torch.allclose(added, (want + other).relu(), atol=1e-4)


def _zero_padded_by_numbers(conv: nn.Module) -> bool:
    """Zero padding given as numbers (not "same"/"valid", not reflect or replicate)."""
    return conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


def fusable(conv: nn.Module) -> bool:
    """A plain 2-D convolution oneDNN's fused operator takes: zero padding given as numbers."""
    return type(conv) is nn.Conv2d and _zero_padded_by_numbers(conv) and conv.weight.device.type == "cpu"


class ConvAct(nn.Module):
    """``relu(conv(x))`` (``post="relu"``), ``relu(conv(x) + other)`` (``post="add_relu"``) or ``conv(x)`` alone
    (``post="none"``: a convolution nothing is fused into, such as a projection shortcut or a classifier, whose
    weight is then still reordered once per shape instead of on every call), run by oneDNN's fused operator when
    ``onednn`` (see the module docstring), else as separate steps. Inference only (no autograd)."""

    def __init__(self, conv: nn.Conv2d, post: str, onednn: bool) -> None:
        super().__init__()
        if post not in POSTS:
            raise ValueError(f"post must be one of {POSTS}, got {post!r}")
        self.post = post
        self.onednn = onednn and fusable(conv)
        self.conv = conv
        # padding, stride, dilation, groups as oneDNN's operators take them (fixed once the conv is built)
        self._args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        self._packed: dict[tuple[int, ...], torch.Tensor] = {}  # input shape -> weight in oneDNN's layout
        self.cudnn = False  # run relu / add_relu as one cuDNN call on CUDA inputs (``run_convs_on_cudnn``)

    def __getstate__(self) -> dict:
        """The state without the weights in oneDNN's layout: those are opaque tensors that ``copy.deepcopy`` and
        pickling cannot copy (a bf16 ConvAct that had run once could not be copied); a copy packs its own."""
        state = super().__getstate__()
        state["_packed"] = {}
        return state

    def _weight_for(self, x: torch.Tensor) -> torch.Tensor:
        """The weight reordered into oneDNN's layout for ``x``'s shape, made on the first input of that shape.
        Per shape, because a weight reordered without the input's shape can hit a pathological kernel (a 1x1
        convolution of 2048 -> 832 channels at 10x10 in bf16 ran some 250x slower), and fp32 weights reordered
        without it made the whole fast path slower than not fusing at all."""
        key = tuple(x.shape)
        packed = self._packed.pop(key, None)
        if packed is None:
            if len(self._packed) >= PACKED_SHAPES:
                self._packed.pop(next(iter(self._packed)))  # the least recently used shape
            with torch.no_grad():
                packed = torch.ops.mkldnn._reorder_convolution_weight(self.conv.weight, *self._args, list(key))
        self._packed[key] = packed  # (re)inserted last: the dict is in order of last use
        return packed

    def forward(self, x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        if (other is None) != (self.post != "add_relu"):
            raise ValueError(f"ConvAct(post={self.post!r}) called {'without' if other is None else 'with'} other")
        plain = x.requires_grad or x.dtype != self.conv.weight.dtype
        if self.cudnn and x.is_cuda and self.post != "none" and not plain:
            try:
                return self._cudnn_fused(x, other)
            except RuntimeError:  # a shape or layout cuDNN's fused kernels do not take: this convolution unfused
                self.cudnn = False
        if not self.onednn or plain:
            out = self.conv(x)
            if self.post == "none":
                return out
            return torch.relu_(out if other is None else out.add_(other))
        weight, bias = self._weight_for(x), self.conv.bias
        if other is None:
            return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, *self._args, self.post, [], "")
        other = other.contiguous(memory_format=torch.channels_last)
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, other, weight, bias, *self._args, "add", 1.0, "relu", [], ""
        )

    def _cudnn_fused(self, x: torch.Tensor, other: torch.Tensor | None) -> torch.Tensor:
        c = self.conv
        if other is None:
            return torch.cudnn_convolution_relu(x, c.weight, c.bias, c.stride, c.padding, c.dilation, c.groups)
        other = other.contiguous(memory_format=torch.channels_last)
        return torch.cudnn_convolution_add_relu(
            x, c.weight, other, 1.0, c.bias, c.stride, c.padding, c.dilation, c.groups
        )


@functools.cache
def _cudnn_fusion_agrees(device: torch.device, dtype: torch.dtype) -> bool:
    try:
        gen = torch.Generator().manual_seed(0)  # its own generator: the caller's random state is left alone
        x, other = (torch.randn(2, 16, 12, 12, generator=gen) for _ in range(2))
        w, b = torch.randn(16, 16, 3, 3, generator=gen) * 0.1, torch.randn(16, generator=gen)
        x, other, w = (t.to(device, dtype).contiguous(memory_format=torch.channels_last) for t in (x, other, w))
        b = b.to(device, dtype)
        with torch.no_grad():
            want = F.conv2d(x, w, b, padding=1).float()
            relu = torch.cudnn_convolution_relu(x, w, b, [1, 1], [1, 1], [1, 1], 1).float()
            added = torch.cudnn_convolution_add_relu(x, w, other, 1.0, b, [1, 1], [1, 1], [1, 1], 1).float()
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    tolerance = 2e-2 * float(want.abs().max())  # bf16, and TF32 in fp32: a check for wrong results, not rounding
    relu_err = float((relu - want.relu()).abs().max())
    added_err = float((added - (want + other.float()).relu()).abs().max())
    return relu_err <= tolerance and added_err <= tolerance


def cudnn_fusion_available(device: torch.device | str, dtype: torch.dtype) -> bool:
    """Whether cuDNN's fused convolution + bias (+ add) + ReLU runs on ``device`` in ``dtype`` and agrees with the
    separate steps on a small case (checked once per device and dtype)."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.backends.cudnn.is_available():
        return False
    return _cudnn_fusion_agrees(device, dtype)


# cuDNN's fusion is used where one representative convolution runs faster fused than as separate steps by more
# than this (the H200 ran it 1.3-1.7x faster in whole networks: benchmarks/RESULTS.md, "The same on a GPU")
CUDNN_FUSION_MIN_SPEEDUP = 1.05


def cudnn_fusion_pays(device: torch.device | str, dtype: torch.dtype) -> bool:
    """Whether cuDNN's fused convolution + bias + add + ReLU is faster than the separate steps on this GPU in
    ``dtype``: one convolution timed both ways, once per GPU model and dtype, then kept (``segkit.accel.decisions``)."""
    device = torch.device(device)
    if not cudnn_fusion_available(device, dtype):
        return False
    name = f"cudnn_fusion_speedup:{torch.cuda.get_device_name(device)}/{dtype}"
    value, _ = measured(name, lambda: time_cudnn_fusion(device, dtype))
    return float(value) > CUDNN_FUSION_MIN_SPEEDUP


def time_cudnn_fusion(device: torch.device, dtype: torch.dtype, repeats: int = 20) -> float:
    """Separate-steps time / fused time of a 64 -> 64 channel 3x3 convolution with bias, residual add and ReLU on
    8 maps of 128x128, channels-last (medians of ``repeats`` interleaved calls after 3 untimed ones)."""
    from segkit.accel.timing import time_interleaved

    gen = torch.Generator().manual_seed(0)
    x, other = (torch.randn(8, 64, 128, 128, generator=gen) for _ in range(2))
    w, b = torch.randn(64, 64, 3, 3, generator=gen) * 0.05, torch.randn(64, generator=gen)
    x, other, w = (t.to(device, dtype).contiguous(memory_format=torch.channels_last) for t in (x, other, w))
    b = b.to(device, dtype)

    def separate():
        return F.conv2d(x, w, b, padding=1).add_(other).relu_()

    def fused():
        return torch.cudnn_convolution_add_relu(x, w, other, 1.0, b, [1, 1], [1, 1], [1, 1], 1)

    with torch.no_grad():
        seconds = time_interleaved({"separate": separate, "fused": fused}, device, repeats, 3)
    return seconds["separate"] / seconds["fused"]


def run_convs_on_cudnn(module: nn.Module) -> None:
    """Every ``ConvAct`` with a ReLU in ``module`` (a fast-path body on a GPU) as one cuDNN call per convolution.
    Call only where ``cudnn_fusion_available`` says so. A convolution whose first call fails there (a shape the
    fused kernels do not take) runs unfused from then on; the first calls of a CUDA-graph model run outside the
    capture, so the graph holds the path that worked."""
    for m in module.modules():
        if isinstance(m, ConvAct) and m.post != "none":
            m.cudnn = True


class FastestAtrous(nn.Module):
    """An atrous convolution (a bare ``nn.Conv2d`` or a ``ConvAct`` with one input, bf16 or fp32) run in whichever
    of its forms measured fastest on the first input of each shape (the fastest of three timed calls each, after
    one untimed call): as it is; for bf16, on a float32 copy of its weights in fp32; and each of those on its
    input zero-padded beforehand with the convolution itself unpadded (the same sums).

    For the atrous convolutions of DeepLabv3's and v3+'s ASPP (``atrous``): oneDNN's bf16 kernels for them are
    often several times slower than its fp32 ones, and a dilated kernel wider than the map (rates 12 and 18 on the
    24x32 map of a 384x512 image at output stride 16) gets oneDNN's generic grouped kernel instead of its depthwise
    one unless the padding is explicit (4.4-18.8 against 1.2-2.0 ms there, the same numbers; but 0.4 against 1.0-1.4
    ms at rate 6). Which case is slow depends on dilation and map size, so it is measured rather than guessed
    (benchmarks/RESULTS.md, "Decisions that rest on a measurement"). fp32 is the more precise, so every choice keeps
    the precision asked for. The choice is made once per input shape and kept.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.bf16 = next(module.parameters()).dtype == torch.bfloat16
        # a ConvAct's copy reorders its weight for fp32 on first use
        self.fp32 = copy.deepcopy(module).float() if self.bf16 else module
        self.padded = nn.ModuleDict()  # the forms on an explicitly padded input, sharing the weights above
        if _explicitly_paddable(module):
            if self.bf16:
                self.padded["bf16"] = ExplicitPad(module)
            self.padded["fp32"] = ExplicitPad(self.fp32)
        self.choice: dict[tuple, str] = {}  # (input shape, dtype) -> the form that runs

    def forms(self) -> list[str]:
        """The forms, the convolution as it is first (a tie keeps it)."""
        native = ["bf16", "fp32"] if self.bf16 else ["fp32"]
        return native + [f"{name}, padded" for name in self.padded]

    def run(self, form: str, x: torch.Tensor) -> torch.Tensor:
        precision, _, padded = form.partition(", ")
        module = self.padded[precision] if padded else self.fp32 if precision == "fp32" else self.module
        if precision == "fp32" and x.dtype != torch.float32:
            return module(x.float()).to(x.dtype)
        return module(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            return self.module(x)
        if x.dtype == torch.float32 and self.bf16:
            return self.fp32(x)
        key = (*x.shape, str(x.dtype))
        if key not in self.choice:
            self.choice[key] = self._decide(x)
        return self.run(self.choice[key], x)

    def _decide(self, x: torch.Tensor) -> str:
        """The fastest form for ``x``'s shape: timed once per machine, then kept (``segkit.accel.decisions``), so
        every run of a job takes the same path."""
        conv = self.fp32.conv if isinstance(self.fp32, ConvAct) else self.fp32
        post = self.fp32.post if isinstance(self.fp32, ConvAct) else "none"
        signature = f"{tuple(conv.weight.shape)}/d{conv.dilation}/g{conv.groups}/{post}/{tuple(x.shape)}/{x.dtype}"

        def fastest() -> str:
            seconds = time_forms({form: functools.partial(self.run, form) for form in self.forms()}, x)
            return min(seconds, key=seconds.get)

        value, _ = measured(f"fastest_atrous:{signature}", fastest)
        return value if value in self.forms() else self.forms()[0]


def _explicitly_paddable(module: nn.Module) -> bool:
    conv = module.conv if isinstance(module, ConvAct) else module
    return _zero_padded_by_numbers(conv) and max(conv.padding) > 0


class ExplicitPad(nn.Module):
    """``module`` (a bare ``nn.Conv2d`` or a one-input ``ConvAct`` with zero padding) run on its input
    zero-padded beforehand by a convolution without padding: the same sums. The twin shares ``module``'s
    weights (nothing is copied but the small objects around them)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        conv = module.conv if isinstance(module, ConvAct) else module
        ph, pw = conv.padding
        self.pad = (pw, pw, ph, ph)
        twin_conv = _twin(conv)
        twin_conv.padding = (0, 0)
        # a ConvAct of its own: its oneDNN arguments and its weights reordered for the padded input's shapes
        self.module = ConvAct(twin_conv, module.post, module.onednn) if isinstance(module, ConvAct) else twin_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(F.pad(x, self.pad))


def _twin(module: nn.Module) -> nn.Module:
    """A new module object with ``module``'s attributes and the same parameter tensors (its own dicts of them)."""
    twin = copy.copy(module)
    twin.__dict__ = dict(module.__dict__)
    for name in ("_parameters", "_buffers", "_modules"):
        twin.__dict__[name] = dict(module.__dict__[name])
    return twin


def time_forms(forms: dict, x: torch.Tensor) -> dict[str, float]:
    """Seconds of each form on ``x`` (``_seconds``), in turn."""
    return {form: _seconds(fn, x) for form, fn in forms.items()}


def _seconds(fn, x: torch.Tensor, repeats: int = 3) -> float:
    """The fastest of ``repeats`` timed calls after one untimed one: a single timing let one slow call (this 2-core
    machine's timings move by 10% and more) decide for a whole job."""
    import time

    fn(x)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - start)
    return best


# The smallest dilation ``FastestAtrous`` is tried for: the ASPP's rates (6-36) are; a backbone's own dilations (2 at
# output stride 16, 2 and 4 at 8) are not, since there bf16 measured several times faster than fp32
# (benchmarks/precision_sweep.py; benchmarks/RESULTS.md, "Decisions that rest on a measurement").
ATROUS_MIN_DILATION = 6


def atrous(module: nn.Module) -> bool:
    """A convolution with a dilation of at least ``ATROUS_MIN_DILATION``, dense or depthwise, bare or as a
    one-input ``ConvAct``: ``FastestAtrous`` wraps these."""
    if isinstance(module, ConvAct) and module.post == "add_relu":
        return False
    conv = module.conv if isinstance(module, ConvAct) else module
    return type(conv) is nn.Conv2d and max(conv.dilation) >= ATROUS_MIN_DILATION


def wrap_atrous(module: nn.Module) -> None:
    """Every atrous convolution in ``module`` as a ``FastestAtrous`` (call after the cast to the precision)."""
    for name, child in list(module.named_children()):
        if atrous(child):
            setattr(module, name, FastestAtrous(child))
        elif not isinstance(child, ConvAct):
            wrap_atrous(child)
