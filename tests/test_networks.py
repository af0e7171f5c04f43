"""DeepLabv3+ and the PoolNet-style saliency network, and the inference fast path."""

import pytest
import torch

from segkit.accel.hardware import bf16_supported
from segkit.errors import SegkitError
from segkit.models import create_backbone, create_model, prepare_for_inference
from tests.conftest import max_rel_err, randomize_batchnorm


@pytest.mark.parametrize("backbone", ["res2net50_26w_4s", "resnet50"])
@pytest.mark.parametrize("output_stride,size", [(16, (64, 96)), (8, (56, 72))])
def test_deeplab_forward_backward(backbone, output_stride, size):
    model = create_model("segmentation", backbone=backbone, num_classes=5, output_stride=output_stride)
    x = torch.randn(2, 3, *size)
    y = model(x)
    assert y.shape == (2, 5, *size)
    y.logsumexp(1).mean().backward()
    assert torch.isfinite(y).all()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_deeplab_uses_paper_atrous_rates():
    for os_, rates in [(16, (6, 12, 18)), (8, (12, 24, 36))]:
        model = create_model("segmentation", output_stride=os_)
        aspp_convs = model.net.decoder.aspp[0].convs
        dilations = [aspp_convs[i][0][0].dilation[0] for i in (1, 2, 3)]  # separable: depthwise conv first
        assert tuple(dilations) == rates
        assert model.backbone.output_stride == os_


def test_deeplab_rejects_non_multiple_sizes():
    model = create_model("segmentation", output_stride=16).eval()
    with pytest.raises(SegkitError, match="multiples of 16.*pad the image to 64x64"):
        model(torch.randn(1, 3, 60, 64))


@pytest.mark.parametrize("backbone", ["res2net50_26w_4s", "res2net50_v1b_26w_4s", "resnet50"])
@pytest.mark.parametrize("size", [(67, 53), (33, 47)])
def test_saliency_any_size(backbone, size):
    model = create_model("saliency", backbone=backbone)
    x = torch.randn(2, 3, *size)
    y = model(x)
    assert y.shape == (2, 1, *size)
    torch.nn.functional.binary_cross_entropy_with_logits(y, torch.rand_like(y)).backward()
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("output_stride", [8, 16])
def test_saliency_output_stride(output_stride):
    model = create_model("saliency", output_stride=output_stride).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 40, 40)).shape == (1, 1, 40, 40)


def test_unknown_task():
    with pytest.raises(SegkitError, match="saliency"):
        create_model("detection")


def test_pretrained_backbone_reaches_the_network(tmp_path):
    source = randomize_batchnorm(create_backbone("res2net50_14w_8s"))
    path = tmp_path / "b.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    for task in ("segmentation", "saliency"):
        model = create_model(task, backbone="res2net50_14w_8s", pretrained_backbone=path)
        got = model.backbone.state_dict()
        assert all(torch.equal(got[k], v) for k, v in source.state_dict().items())


@pytest.mark.parametrize(
    "build",
    [
        lambda: create_backbone("res2net50_26w_4s", output_stride=16),
        lambda: create_backbone("res2net50_v1b_26w_4s", output_stride=8),
        lambda: create_backbone("res2next50"),
        lambda: create_backbone("resnet50d", output_stride=16),
        lambda: create_model("segmentation", num_classes=4),
        lambda: create_model("saliency", backbone="res2net50_14w_8s"),
    ],
    ids=["r2n-os16", "v1b-os8", "res2next", "resnet50d", "deeplab", "poolnet"],
)
def test_prepare_for_inference_equals_eval_model(build):
    model = randomize_batchnorm(build()).eval()
    fast = prepare_for_inference(model)
    assert_same_outputs(model, fast, torch.randn(2, 3, 64, 80))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules()), "every BatchNorm is folded"
    assert model.training is False and any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("multiple", [8, 16])
@pytest.mark.parametrize(
    "build",
    [lambda: create_backbone("res2net50_26w_4s", output_stride=16), lambda: create_model("saliency")],
    ids=["r2n-os16", "poolnet"],
)
def test_split_padding_is_exact(build, multiple):
    """Padding each split to a multiple of 8 or 16 channels adds zero channels only: same outputs."""
    model = randomize_batchnorm(build()).eval()
    fast = prepare_for_inference(model, split_multiple=multiple)
    widths = {m.width for m in fast.modules() if type(m).__name__ == "FusedBottle2neck"}
    assert widths and all(w % multiple == 0 for w in widths)
    assert_same_outputs(model, fast, torch.randn(2, 3, 64, 80))


def assert_same_outputs(model, fast, x, tolerance: float = 1e-4) -> None:
    with torch.no_grad():
        want, got = model(x), fast(x)
    want = want if isinstance(want, list) else [want]
    got = got if isinstance(got, list) else [got]
    for g, w in zip(got, want, strict=True):
        assert max_rel_err(g, w) < tolerance


FAST_BUILDS = {
    "r2n-os16": lambda: create_backbone("res2net50_26w_4s", output_stride=16),
    "v1b-os8": lambda: create_backbone("res2net50_v1b_26w_4s", output_stride=8),
    "resnet50": lambda: create_backbone("resnet50", output_stride=16),
    "deeplab": lambda: create_model("segmentation", num_classes=4),
    "poolnet": lambda: create_model("saliency", backbone="res2net50_14w_8s"),
}


def _fused_convs(fast) -> list:
    from segkit.accel.onednn import ConvAct

    return [m for m in fast.modules() if isinstance(m, ConvAct) and m.onednn]


needs_onednn = pytest.mark.skipif(
    not __import__("segkit.accel.onednn", fromlist=["x"]).onednn_available(),
    reason="this PyTorch build has no oneDNN fused convolutions",
)


@needs_onednn
@pytest.mark.parametrize("name", list(FAST_BUILDS))
def test_onednn_fused_convolutions_equal_the_eval_model(name):
    """fp32 with oneDNN's conv + ReLU (+ residual add) fusion forced on: the same outputs as eval mode, and every
    block's convolutions, and the stem's and decoder's conv -> ReLU pairs, are fused."""
    model = randomize_batchnorm(FAST_BUILDS[name]()).eval()
    fast = prepare_for_inference(model, onednn=True)
    assert_same_outputs(model, fast, torch.randn(2, 3, 64, 80))
    fused = _fused_convs(fast)
    blocks = [m for m in fast.modules() if type(m).__name__ in ("FusedBottle2neck", "FusedBottleneck")]
    assert blocks and all(m.conv1.onednn and m.conv3.onednn and m.conv3.post == "add_relu" for m in blocks)
    stem_relus = [m for m in fast.modules() if type(m) is torch.nn.ReLU]
    assert len(fused) >= 3 * len(blocks), len(fused)
    assert not any(m.conv.weight.dtype == torch.bfloat16 for m in fused)
    assert stem_relus == [], f"ReLU modules left unfused: {len(stem_relus)}"
    lone = [m for m in fast.modules() if type(m) is torch.nn.Conv2d]
    lone = [m for m in lone if not any(a.conv is m for a in fused)]
    assert lone == [], f"convolutions left to PyTorch's own operator: {len(lone)}"
    assert any(m.post == "none" for m in fused), "the shortcut projections run fused too, without a post-op"
    assert not _fused_convs(prepare_for_inference(model, onednn=False))
    default = _fused_convs(prepare_for_inference(model))
    assert len(default) == len(fused), "fp32 runs fused by default on a CPU with the operators"
    assert all(m.onednn and not m._packed for m in default), "weights reordered per input shape, on first use"


@needs_onednn
@pytest.mark.skipif(not bf16_supported("cpu"), reason="no native bf16")
@pytest.mark.parametrize("name", ["r2n-os16", "resnet50", "deeplab"])
def test_bf16_fast_path_is_fused_and_agrees_with_the_unfused_one(name, monkeypatch):
    import segkit.accel.fast as fast_module

    model = randomize_batchnorm(FAST_BUILDS[name]()).eval()
    fused = prepare_for_inference(model, precision="bf16")
    plain = prepare_for_inference(model, precision="bf16", onednn=False)
    assert _fused_convs(fused) and all(m.onednn and not m._packed for m in _fused_convs(fused))
    assert_same_outputs(plain, fused, torch.randn(1, 3, 64, 96), tolerance=3e-2)  # bf16 rounding, two orders
    assert_same_outputs(plain, fused, torch.randn(1, 3, 96, 64), tolerance=3e-2)
    # a weight reordered for each input shape it met (one reordered without the shape can be 250x slower); the
    # ASPP's pooled branch sees 1x1 maps at both sizes
    shapes = [len(m._packed) for m in _fused_convs(fused)]
    assert min(shapes) >= 1 and max(shapes) == 2 and shapes.count(2) > len(shapes) // 2, shapes
    assert_same_outputs(model, fused, torch.randn(1, 3, 64, 96), tolerance=5e-2)
    compiled = prepare_for_inference(model, precision="bf16", compile=True)
    assert not _fused_convs(compiled.body), "compiled: inductor fuses on its own"
    monkeypatch.setattr(fast_module, "onednn_available", lambda: False)  # another build: plain modules
    assert not _fused_convs(prepare_for_inference(model, precision="bf16"))


@needs_onednn
def test_reordered_weights_are_kept_for_the_most_recently_used_shapes(monkeypatch):
    """A fused convolution keeps a weight reordered per input shape, dropping the least recently used one; each
    gives the convolution's result."""
    import segkit.accel.onednn as onednn

    monkeypatch.setattr(onednn, "PACKED_SHAPES", 2)
    conv = torch.nn.Conv2d(8, 16, 3, padding=1).eval()
    fused = onednn.ConvAct(conv, "relu", onednn=True)
    a, b, c = (torch.randn(1, 8, h, 12).contiguous(memory_format=torch.channels_last) for h in (10, 14, 18))
    with torch.inference_mode():
        for x in (a, b, a, c):
            assert max_rel_err(fused(x), conv(x).relu()) < 1e-5
    assert list(fused._packed) == [tuple(a.shape), tuple(c.shape)], "b was the least recently used"
    # a fused convolution that has run copies (FastestAtrous copies one): oneDNN's opaque weights are left out and
    # the copy reorders its own on first use
    copied = __import__("copy").deepcopy(fused)
    assert copied._packed == {} and len(fused._packed) == 2
    with torch.inference_mode():
        assert max_rel_err(copied(a), conv(a).relu()) < 1e-5


@pytest.mark.parametrize("fastest", ["bf16", "fp32", "bf16, padded", "fp32, padded"])
@pytest.mark.parametrize("kind", ["depthwise", "dense + relu"])
def test_atrous_convolutions_run_in_their_fastest_form_with_the_same_result(fastest, kind, monkeypatch, tmp_path):
    """An ASPP's atrous convolutions in bf16 (DeepLabv3+'s depthwise ones, DeepLabv3's dense ones with their
    ReLU) run in bf16 or fp32, padded explicitly or not, whichever form was timed fastest for the input's shape;
    every form gives the convolution's result (to bf16 rounding), the choice is kept per shape, and the padded
    forms share the weights."""
    import segkit.accel.onednn as onednn

    groups = 32 if kind == "depthwise" else 1
    conv = torch.nn.Conv2d(32, 32, 3, padding=12, dilation=12, groups=groups).eval()
    # oneDNN's bf16 convolutions need AVX512 (or AVX-NE-CONVERT): elsewhere the ConvAct runs PyTorch's own ones
    bf16_onednn = onednn.onednn_available() and bf16_supported("cpu")
    module = conv if kind == "depthwise" else onednn.ConvAct(conv, "relu", onednn=bf16_onednn)
    want_fn = conv if kind == "depthwise" else (lambda x: conv(x).relu())
    module16 = __import__("copy").deepcopy(module).bfloat16()
    assert onednn.atrous(module16)
    wrapped = onednn.FastestAtrous(module16)
    assert wrapped.forms() == ["bf16", "fp32", "bf16, padded", "fp32, padded"]
    timed = []

    def fake_time_forms(forms, x):
        timed.append(list(forms))
        return {form: 1.0 if form == fastest else 2.0 for form in forms}

    monkeypatch.setattr(onednn, "time_forms", fake_time_forms)
    monkeypatch.setenv("SEGKIT_CACHE_DIR", str(tmp_path))  # a machine that has not decided yet
    x = torch.randn(1, 32, 20, 24)
    x16 = x.bfloat16().contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = [wrapped(x16) for _ in range(3)] + [wrapped.run(form, x16) for form in wrapped.forms()]
        want = want_fn(x)
    assert len(timed) == 1 and wrapped.choice == {(1, 32, 20, 24, "torch.bfloat16"): fastest}
    again = onednn.FastestAtrous(module16)  # a new process's model on this machine: the kept decision, not timed
    with torch.inference_mode():
        again(x16)
    assert len(timed) == 1 and again.choice == wrapped.choice
    assert all(g.dtype == torch.bfloat16 and max_rel_err(g.float(), want) < 2e-2 for g in got)
    fp32_conv = wrapped.fp32 if kind == "depthwise" else wrapped.fp32.conv
    assert fp32_conv.weight.dtype == torch.float32
    padded = wrapped.padded["fp32"].module
    padded_conv = padded if kind == "depthwise" else padded.conv
    assert padded_conv.padding == (0, 0) and fp32_conv.padding == (12, 12), "the twin's own padding"
    assert padded_conv.weight is fp32_conv.weight, "the padded form shares the weights"
    assert not onednn.atrous(torch.nn.Conv2d(32, 32, 3, dilation=2)), "a backbone's dilation: bf16 as it is"


def test_fp32_atrous_convolutions_choose_between_implicit_and_explicit_padding(monkeypatch, tmp_path):
    import segkit.accel.onednn as onednn

    conv = torch.nn.Conv2d(16, 16, 3, padding=18, dilation=18, groups=16).eval()
    wrapped = onednn.FastestAtrous(conv)
    assert wrapped.forms() == ["fp32", "fp32, padded"] and wrapped.fp32 is conv
    monkeypatch.setattr(onednn, "time_forms", lambda forms, x: {"fp32": 2.0, "fp32, padded": 1.0})
    monkeypatch.setenv("SEGKIT_CACHE_DIR", str(tmp_path))
    x = torch.randn(1, 16, 12, 16).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got, want = wrapped(x), conv(x)
    assert wrapped.choice == {(1, 16, 12, 16, "torch.float32"): "fp32, padded"}
    assert max_rel_err(got, want) < 1e-5


def _dilation(m) -> int:
    from segkit.accel.onednn import ConvAct

    return (m.module.conv if isinstance(m.module, ConvAct) else m.module).dilation[0]


@needs_onednn
@pytest.mark.skipif(not bf16_supported("cpu"), reason="no native bf16")
@pytest.mark.parametrize(("arch", "rates"), [("deeplabv3plus", [6, 12, 18]), ("deeplabv3", [12, 24, 36])])
def test_deeplab_bf16_fast_path_wraps_the_aspp_atrous_convolutions(arch, rates):
    from segkit.accel.onednn import FastestAtrous

    model = randomize_batchnorm(create_model("segmentation", num_classes=4, arch=arch)).eval()
    for precision, tolerance in (("bf16", 5e-2), ("fp32", 1e-4)):
        fast = prepare_for_inference(model, precision=precision)
        wrapped = [m for m in fast.modules() if isinstance(m, FastestAtrous)]
        assert sorted(_dilation(m) for m in wrapped) == rates, "the ASPP's, not the backbone's dilation-2 convs"
        assert_same_outputs(model, fast, torch.randn(1, 3, 64, 96), tolerance=tolerance)


def test_cudnn_fusion_is_never_used_on_a_cpu():
    """``cudnn_fused=True`` asks for cuDNN's fused convolutions, which exist only on a GPU: on a CPU the probe says
    no and the model is the usual fast path (tests/test_cuda.py checks the fused one on a GPU)."""
    from segkit.accel.onednn import ConvAct, cudnn_fusion_available

    assert not cudnn_fusion_available("cpu", torch.float32)
    model = randomize_batchnorm(FAST_BUILDS["r2n-os16"]()).eval()
    fast = prepare_for_inference(model, cudnn_fused=True)
    convs = [m for m in fast.modules() if isinstance(m, ConvAct)]
    assert convs and not any(m.cudnn for m in convs)
    assert_same_outputs(model, fast, torch.randn(1, 3, 64, 80))


def test_cudnn_fusion_is_used_where_one_timed_convolution_says_it_pays(monkeypatch, tmp_path):
    """The GPU default: cuDNN's fusion where it works and a convolution timed both ways is more than
    ``CUDNN_FUSION_MIN_SPEEDUP`` faster fused; timed once per GPU model and dtype, then kept (faked GPU here)."""
    import segkit.accel.onednn as onednn

    timed = []
    speedups = {torch.float32: 1.6, torch.bfloat16: 1.01}
    monkeypatch.setattr(onednn, "cudnn_fusion_available", lambda device, dtype: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    monkeypatch.setattr(onednn, "time_cudnn_fusion", lambda device, dtype: timed.append(dtype) or speedups[dtype])
    monkeypatch.setenv("SEGKIT_CACHE_DIR", str(tmp_path))
    assert onednn.cudnn_fusion_pays("cuda", torch.float32) and not onednn.cudnn_fusion_pays("cuda", torch.bfloat16)
    assert onednn.cudnn_fusion_pays("cuda", torch.float32)  # kept: not timed again
    assert timed == [torch.float32, torch.bfloat16]
    monkeypatch.setattr(onednn, "cudnn_fusion_available", lambda device, dtype: False)
    assert not onednn.cudnn_fusion_pays("cuda", torch.float32), "never where the fused kernels do not work"


def test_res2net_hierarchy_written_in_place_and_the_plain_form_for_autograd_and_onnx(monkeypatch):
    """The blocks write y_i over conv1's output (no concatenation) in inference, and build the concatenation where
    autograd records or a tracer (ONNX export) runs; all three give the eval model's outputs, and gradients reach
    the input."""
    import segkit.accel.fast as fast_module

    model = randomize_batchnorm(create_backbone("res2net50_26w_4s")).eval()
    fast = prepare_for_inference(model, onednn=False)  # the module form ONNX export takes, as well as the fused one
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        assert_same_outputs(model, fast, x)
    plain_calls = []
    real_cat = torch.cat
    monkeypatch.setattr(fast_module.torch, "cat", lambda *a, **k: plain_calls.append(1) or real_cat(*a, **k))
    with torch.inference_mode():
        fast(x)
    stage_blocks = sum(1 for m in fast.modules() if type(m).__name__ == "FusedBottle2neck" and m.is_stage_block)
    assert len(plain_calls) == stage_blocks, "only the stage blocks concatenate in inference"
    plain_calls.clear()
    with torch.no_grad():
        traced = torch.jit.trace(fast, x, check_trace=False)
    assert len(plain_calls) == 16, "traced: every block builds the concatenation"
    monkeypatch.undo()
    with torch.no_grad():
        for got, want in zip(traced(x), model(x), strict=True):
            assert max_rel_err(got, want) < 1e-4
    xg = x.clone().requires_grad_(True)
    sum(f.sum() for f in fast(xg)).backward()
    xm = x.clone().requires_grad_(True)
    sum(f.sum() for f in model(xm)).backward()
    assert max_rel_err(xg.grad, xm.grad) < 1e-2  # float rounding of folded BatchNorm, through 50 layers
