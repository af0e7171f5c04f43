"""CUDA checks (skipped without a GPU): the fast path, metrics on device tensors, AMP training, prediction."""

import numpy as np
import pytest
import torch

from segkit.models import create_backbone, create_model, prepare_for_inference
from tests.conftest import max_rel_err, randomize_batchnorm

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def _exact_fp32():
    """TF32 would make fp32 convolutions differ by ~1e-3: compare in true fp32."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.parametrize(
    "build",
    [
        lambda: create_backbone("res2net50_26w_4s", output_stride=16),
        lambda: create_model("segmentation", num_classes=5),
        lambda: create_model("saliency"),
    ],
    ids=["backbone", "deeplab", "poolnet"],
)
def test_fast_path_on_cuda(build):
    model = randomize_batchnorm(build()).cuda().eval()
    fast = prepare_for_inference(model)
    assert type(fast).__name__ == "CudaGraphModel"
    for _ in range(3):  # the first call captures the graph, the next ones replay it on new data
        x = torch.randn(2, 3, 96, 128, device="cuda")
        with torch.no_grad():
            want, got = model(x), fast(x)
        want = want if isinstance(want, list) else [want]
        got = got if isinstance(got, list) else [got]
        for g, w in zip(got, want, strict=True):
            assert g.is_cuda and max_rel_err(g, w) < 1e-4


def test_metrics_accept_cuda_tensors():
    from segkit.metrics import SaliencyMetrics, SegmentationMetrics

    rng = np.random.default_rng(0)
    pred = rng.integers(0, 256, (40, 50)).astype(np.uint8)
    gt = (rng.random((40, 50)) > 0.5).astype(np.uint8) * 255
    a, b = SaliencyMetrics(), SaliencyMetrics()
    a.update(pred, gt)
    b.update(torch.from_numpy(pred).cuda(), torch.from_numpy(gt).cuda())
    assert a.compute().max_fm == b.compute().max_fm
    s = SegmentationMetrics(3)
    s.update(torch.randint(0, 3, (32, 32), device="cuda"), torch.randint(0, 3, (32, 32), device="cuda"))
    assert 0 <= s.compute().miou <= 1


@pytest.mark.parametrize("task", ["saliency", "segmentation"])
def test_amp_training_steps_on_cuda(tmp_path, task):
    from segkit.config import load_config
    from segkit.inference.checkpoint import read_checkpoint
    from segkit.training.train import train

    cfg = load_config(
        None,
        [
            f"task={task}",
            f"out_dir={tmp_path}",
            "name=r",
            "data.image_size=128",
            "data.batch_size=8",
            "data.workers=2",
            "schedule.max_steps=30",
            "eval.max_images=16",
        ],
    )
    result = train(cfg)
    assert all(np.isfinite(v) for v in result.scores.scalars().values())
    ckpt = read_checkpoint(tmp_path / "r" / "last.pt")
    assert ckpt["step"] == 30
    from segkit.accel.hardware import bf16_supported

    assert bf16_supported(torch.device("cuda"))


def test_predictor_on_cuda(tmp_path):
    import segkit
    from segkit.config import load_config
    from segkit.training.train import train

    train(
        load_config(
            None,
            [
                "task=saliency",
                f"out_dir={tmp_path}",
                "name=p",
                "data.image_size=64",
                "data.batch_size=4",
                "data.workers=0",
                "schedule.max_steps=2",
                "eval.max_images=2",
            ],
        )
    )
    predictor = segkit.Predictor(tmp_path / "p" / "last.pt", device="cuda")
    mask = predictor.predict(np.zeros((70, 90, 3), np.uint8))
    assert mask.shape == (70, 90) and mask.dtype == np.uint8
    assert predictor.engine.name == "torch"  # the only engine on a GPU


def test_split_padding_exact_on_cuda():
    model = randomize_batchnorm(create_backbone("res2net50_26w_4s")).cuda().eval()
    x = torch.randn(2, 3, 96, 128, device="cuda")
    with torch.no_grad():
        want = model(x)
        for multiple in (8, 16):
            got = prepare_for_inference(model, split_multiple=multiple)(x)
            for g, w in zip(got, want, strict=True):
                assert max_rel_err(g, w) < 1e-4


def test_auto_precision_is_bf16_on_cuda_and_close_to_fp32():
    model = randomize_batchnorm(create_backbone("res2net50_26w_4s")).cuda().eval()
    x = torch.randn(2, 3, 96, 128, device="cuda")
    with torch.no_grad():
        fp32 = prepare_for_inference(model, precision="fp32")(x)
        bf16 = prepare_for_inference(model, precision="auto")(x)
    for b, f in zip(bf16, fp32, strict=True):
        assert b.dtype == torch.float32 and max_rel_err(b, f) < 2e-2


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cudnn_fused_convolutions_agree_with_separate_steps(precision):
    from segkit.accel.onednn import ConvAct, cudnn_fusion_available, cudnn_fusion_pays

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    if not cudnn_fusion_available("cuda", dtype):
        pytest.skip(f"cuDNN's fused convolution + ReLU does not run in {precision} on this GPU")
    model = randomize_batchnorm(create_backbone("res2net50_26w_4s")).cuda().eval()
    plain = prepare_for_inference(model, precision=precision, cudnn_fused=False)
    fused = prepare_for_inference(model, precision=precision, cudnn_fused=True)
    assert not any(m.cudnn for m in plain.modules() if isinstance(m, ConvAct))
    default = prepare_for_inference(model, precision=precision)  # fused where one timed convolution says it pays
    pays = cudnn_fusion_pays("cuda", dtype)
    assert all(m.cudnn == pays for m in default.modules() if isinstance(m, ConvAct) and m.post != "none")
    switched = [m.cudnn for m in fused.modules() if isinstance(m, ConvAct) and m.post != "none"]
    assert switched and all(switched)
    for _ in range(2):  # captured as a CUDA graph, then replayed
        x = torch.randn(2, 3, 128, 160, device="cuda")
        with torch.no_grad():
            for g, w in zip(fused(x), plain(x), strict=True):
                assert max_rel_err(g, w) < (1e-4 if precision == "fp32" else 3e-2)
    still = [m.cudnn for m in fused.modules() if isinstance(m, ConvAct) and m.post != "none"]
    assert any(still), "every convolution fell back to the separate steps: the fused path was not exercised"


def test_bench_networks_on_cuda_times_eager_against_the_fast_path(tmp_path):
    import json

    from segkit.cli import main

    out = tmp_path / "networks.json"
    assert (
        main(
            [
                "bench",
                "predict",
                "--networks",
                "saliency default",
                "--device",
                "cuda",
                "--rounds",
                "2",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert result["machine"]["gpu"] and set(row["ms"]) == {
        "torch eager fp32",
        "torch eager bf16",
        "segkit fp32",
        "segkit bf16",
    }
    assert row["agreement"]["segkit bf16"].endswith("identical to PyTorch fp32 (limit 99.5%)")
    own = min(row["ms"]["segkit fp32"], row["ms"]["segkit bf16"])
    assert row["segkit_over_fastest_peer"] == pytest.approx(
        own / min(row["ms"]["torch eager fp32"], row["ms"]["torch eager bf16"])
    )
