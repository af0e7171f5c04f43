"""The command line: help, and the backbone benchmark on tiny settings."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segkit.accel.hardware import bf16_supported
from segkit.cli import main


def test_help_lists_subcommands(capsys):
    try:
        main(["--help"])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    assert "bench" in out


def test_python_m_segkit_runs():
    res = subprocess.run([sys.executable, "-m", "segkit", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "bench" in res.stdout


def test_bench_backbone_tiny(tmp_path, capsys):
    out = tmp_path / "b.json"
    code = main(
        [
            "bench",
            "backbone",
            "--repeats",
            "1",
            "--latency-size",
            "64",
            "--throughput-batch",
            "2",
            "--throughput-size",
            "32",
            "--train-batch",
            "2",
            "--train-size",
            "32",
            "--variants",
            "res2net50_48w_2s",
            "--no-compile",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    models = [(r["model"], r["implementation"]) for r in data["rows"]]
    assert ("res2net50_26w_4s", "timm") in models and ("resnet50", "timm") in models
    assert ("res2net50_48w_2s", "segkit") in models
    assert all(r["latency_fast_ms"] > 0 for r in data["rows"])
    assert "res2net_over_resnet_latency_fast" in data["ratios"]
    # ONNX Runtime for Res2Net-50 26w_4s and ResNet-50 only; no compiled column when --no-compile
    with_ort = {r["model"] for r in data["rows"] if r["latency_onnxruntime_ms"]}
    assert with_ort == {"res2net50_26w_4s", "resnet50"}
    assert not any(r["latency_compiled_ms"] for r in data["rows"])
    assert "res2net_over_resnet_latency_onnxruntime" in data["ratios"]
    with_ov = {r["model"] for r in data["rows"] if r["latency_openvino_ms"]}
    assert with_ov == ({"res2net50_26w_4s", "resnet50"} if importlib.util.find_spec("openvino") else set())
    assert "fast_vs_timm_eager_speedup" in capsys.readouterr().out
    # the goals' comparisons timed once more, interleaved
    timed = set(data["interleaved_ms"])
    assert {"timm_res2net_eager_fp32", "res2net_fast_fp32", "resnet_fast_fp32"} <= timed
    assert ("res2net_fast_bf16" in timed) == data["machine"]["bf16"]
    assert data["ratios"]["interleaved_res2net_over_resnet_latency_fast"] == (
        data["interleaved_ms"]["res2net_fast_fp32"] / data["interleaved_ms"]["resnet_fast_fp32"]
    )


def test_interleaved_timing_runs_each_model_in_turn_every_round():
    from segkit.accel.timing import time_interleaved

    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    seconds = time_interleaved(fns, torch.device("cpu"), repeats=3, warmup=1)
    assert calls == ["a", "b", "c"] * 4 and set(seconds) == {"a", "b", "c"}


def _script(name: str):
    """A research script under benchmarks/ (outside the wheel), imported from its file."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_gap_script_tiny_on_cpu(tmp_path, capsys):
    gap = _script("gap")
    out = tmp_path / "gap.json"
    code = gap.main(
        ["--device", "cpu", "--batch", "1", "--size", "64", "--repeats", "1", "--compile-modes", "none"]
        + ["--json", str(out)]
    )
    assert code == 0
    data = json.loads(out.read_text())
    names = [a["name"] for a in data["attempts"]]
    split = "bf16" if data["machine"]["bf16"] else "fp32"
    assert f"{split} + splits padded to 16" in names and f"{split} + splits padded to 8" in names
    assert "fp32 fast path, no oneDNN fusion" in names  # on a CPU, the default path and the same one unfused
    assert not any("CUDA graph" in n or "benchmark" in n for n in names), "GPU-only settings: same code on a CPU"
    assert all(a["resnet_over_res2net"] > 0 for a in data["attempts"])
    for a in data["attempts"]:
        r2n, r50 = a["img_s"]["res2net50_26w_4s"], a["img_s"]["resnet50"]
        assert a["resnet_over_res2net"] == pytest.approx(r50 / r2n), "the gap is ResNet-50's img/s over Res2Net-50's"
    kinds = {row["kind"] for row in data["conv_table"]}
    assert {"res2net split", "resnet", "res2net split padded to 16"} <= kinds
    profile = data["profile_ms"]["res2net50_26w_4s"]
    assert profile["conv 1x1"] > 0 and any(k.startswith("conv 3x3 grouped") for k in profile)
    assert "profile of one forward" in capsys.readouterr().out
    assert not any("cuDNN" in n for n in names), "cuDNN's fused convolutions are GPU attempts"


def test_gap_script_cudnn_attempt_says_when_the_fusion_did_not_run():
    gap = _script("gap")
    s = gap.GapSettings(device="cpu", batch=1, size_px=32, repeats=1, warmup=0)
    attempt = gap._inference_attempt("x", s, torch.device("cpu"), False, split_multiple=16, cudnn_fused=True)
    assert attempt.note == "cuDNN fusion unavailable here: ran unfused" and attempt.gap > 0


def test_research_benchmarks_left_segkit_bench(capsys):
    """`segkit bench` answers what a user asks of their own machine; the research sweeps are scripts."""
    for target in ("gap", "precision"):
        with pytest.raises(SystemExit):
            main(["bench", target])
        assert "invalid choice" in capsys.readouterr().err


def test_bench_predict_mixed_sizes_are_a_fixed_draw_of_the_listed_sizes(tmp_path):
    from PIL import Image

    from segkit.bench.predict import MIXED_SIZES, image_sizes, make_images

    mixed = image_sizes(200, mixed=True)
    assert mixed == image_sizes(200, mixed=True) and set(mixed) <= set(MIXED_SIZES)
    assert len(set(mixed)) >= 12 and 0.2 < mixed.count((500, 375)) / 200 < 0.4  # drawn with the listed weights
    assert image_sizes(3, mixed=False) == [(500, 375)] * 3
    make_images(tmp_path, mixed[:4])
    assert [Image.open(p).size for p in sorted(tmp_path.glob("*.jpg"))] == mixed[:4]


@pytest.mark.slow
def test_bench_predict_tiny(tmp_path, capsys):
    """segkit predict and the plain timm + smp loop compute the same masks from the same weights. Both in fp32: the
    untrained network's pixels sit near the decision, so bf16 (what auto picks on some CPUs) flips ~1% of them."""
    out = tmp_path / "p.json"
    assert main(["bench", "predict", "--count", "2", "--json", str(out), "--predict-args=--precision fp32"]) == 0
    data = json.loads(out.read_text())
    assert data["images"] == 2 and data["plain_s"] > 0 and data["segkit_s"] > 0
    assert data["pixels_agreeing"] > 0.99
    assert data["segkit_ran"].startswith("engine ") and "precision fp32" in data["segkit_ran"], data["segkit_ran"]
    out = capsys.readouterr().out
    assert "speed-up" in out and f"segkit predict ran: {data['segkit_ran']}" in out


def test_bench_bad_variant_is_a_clear_error(capsys):
    assert main(["bench", "backbone", "--variants", "res2net50_26w_5s"]) == 2
    err = capsys.readouterr().err
    assert "unknown backbone" in err and "Traceback" not in err


def test_precision_sweep_tiny_and_its_bad_input(tmp_path, capsys, monkeypatch):
    precision = _script("precision_sweep")

    assert precision.main(["--sizes", "10x"]) == 2
    assert "--sizes takes HxW" in capsys.readouterr().err
    monkeypatch.setattr(precision, "bf16_supported", lambda device: False)
    assert precision.main(["--sizes", "64"]) == 2
    assert "no native bf16" in capsys.readouterr().err
    monkeypatch.undo()
    if not __import__("segkit.accel.hardware").accel.hardware.bf16_supported("cpu"):
        return  # nothing to time on a CPU without native bf16
    out = tmp_path / "p.json"
    assert precision.main(["--sizes", "64", "64x96", "--repeats", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [(r["network"], r["size"]) for r in data["rows"]] == [
        ("saliency", "64x64"), ("saliency", "64x96"), ("segmentation", "64x64"), ("segmentation", "64x96"),
        ("deeplabv3", "64x64"), ("deeplabv3", "64x96"),
    ]  # fmt: skip
    assert all(r["fp32_ms"] > 0 and r["bf16_ms"] > 0 for r in data["rows"])
    assert "bf16 speed-up" in capsys.readouterr().out


def test_eval_checkpoint_device_flag(tmp_path, capsys):
    """eval --checkpoint runs on the best device unless --device says which; bad values are one clear line."""
    ckpt = str(tmp_path / "missing.pt")
    if not torch.cuda.is_available():
        assert main(["eval", "--checkpoint", ckpt, "--device", "cuda"]) == 2
        assert "no CUDA device is visible; use --device cpu" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", ckpt, "--device", "tpu"]) == 2
    assert "--device must be cpu, cuda or cuda:N" in capsys.readouterr().err
    assert main(["eval", "--task", "saliency", "--pred", str(tmp_path), "--gt", str(tmp_path), "--device", "cpu"]) == 2
    assert "--device" in capsys.readouterr().err


def test_bench_predict_networks_times_every_engine_side_by_side(tmp_path, capsys):
    out = tmp_path / "networks.json"
    assert main(["bench", "predict", "--networks", "saliency default", "--rounds", "1", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["network"] == "saliency default (demo)" and row["input"] == "96x96"  # its configuration's size
    engines = {"torch eager fp32", "segkit fp32", "onnxruntime fp32"}
    assert engines <= set(row["ms"]) and all(v > 0 for v in row["ms"].values())
    if importlib.util.find_spec("openvino"):  # its pooling kernels exceed the 96 px network's deepest map
        assert row["left_out"]["openvino fp32"].startswith("it failed (") and "openvino fp32" not in row["ms"]
    assert row["agreement"]["onnxruntime fp32"].startswith("logits within")
    own = min(v for k, v in row["ms"].items() if k.startswith("segkit"))
    peer = min(v for k, v in row["ms"].items() if k in ("onnxruntime fp32", "openvino fp32", "openvino bf16"))
    assert row["segkit_over_fastest_peer"] == pytest.approx(own / peer)
    checked = {k: v for k, v in row["ms"].items() if k != "torch eager fp32"}  # what auto may pick from
    picked = row["auto"]["auto"]
    assert picked in checked and row["auto_reason"]["auto"].startswith("auto")  # measured, not SEGKIT_ENGINE's
    assert row["auto_over_fastest"]["auto"] == pytest.approx(checked[picked] / min(checked.values()))
    if "fp32" in row["auto"]:  # a CPU with native bf16: auto in fp32 too, against the fp32 columns
        fp32 = {k: v for k, v in checked.items() if k.endswith("fp32")}
        assert row["auto_over_fastest"]["fp32"] == pytest.approx(fp32[row["auto"]["fp32"]] / min(fp32.values()))
    out = capsys.readouterr().out
    assert "segkit/fastest peer" in out and "--engine auto --precision auto" in out
    assert main(["bench", "predict", "--networks", "nosuchnet"]) == 2
    assert main(["bench", "predict", "--count", "2", "--device", "cuda"]) == 2
    assert "--device applies to --networks only" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["bench", "predict", "--networks", "saliency default", "--device", "cuda"]) == 2
        assert "no CUDA device is visible" in capsys.readouterr().err


@pytest.mark.skipif(
    not bf16_supported("cpu"), reason="the bf16 columns need native bf16 (prepare_for_inference refuses it)"
)
def test_the_gpu_rows_code_runs_anywhere():
    """``bench predict --networks --device cuda``'s row (tests/test_cuda.py runs it on a GPU), here on the CPU:
    eager fp32 and bf16 against segkit's fast path in both, each checked against eager fp32, TF32 flags restored."""
    from segkit.bench.engines import bench_network_on_gpu

    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    row = bench_network_on_gpu("saliency default (demo)", "demo_saliency.yaml", 96, 96, 1, "cpu")
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == flags
    assert set(row.ms) == {"torch eager fp32", "torch eager bf16", "segkit fp32", "segkit bf16"}
    assert row.agreement["segkit fp32"].startswith("logits within") and "(limit 1e-04)" in row.agreement["segkit fp32"]
    own = min(row.ms["segkit fp32"], row.ms["segkit bf16"])
    assert row.segkit_over_fastest_peer == pytest.approx(
        own / min(row.ms["torch eager fp32"], row.ms["torch eager bf16"])
    )


def test_bench_metrics_toolkit_flag_needs_a_checkout_and_a_table(tmp_path, capsys):
    assert main(["bench", "metrics", "--datasets", "2", "--toolkit", str(tmp_path)]) == 2
    assert "is not a PySODEvalToolkit checkout (no eval.py in it)" in capsys.readouterr().err
    assert main(["bench", "metrics", "--toolkit", str(tmp_path)]) == 2
    assert "--toolkit times PySODEvalToolkit on a results table" in capsys.readouterr().err
    assert main(["bench", "metrics", "--rounds", "0"]) == 2
    assert "--rounds must be positive integers" in capsys.readouterr().err
