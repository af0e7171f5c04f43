"""--engine: the choice is made by measurement once and kept, an engine that disagrees with PyTorch is never used,
the exported graph is kept beside the model and made again when the weights change, and a missing engine is one
line and exit 2."""

import sys

import numpy as np
import pytest
import torch
from torch import nn

from segkit.config import load_config
from segkit.inference import engines
from segkit.inference.engines import EngineJob, EngineRefused, select_engine

TINY = ["data.image_size=64", "data.batch_size=2", "data.workers=0", "schedule.max_steps=1", "eval.max_images=2",
        "model.backbone=res2net50_14w_8s", "model.decoder_channels=16"]  # fmt: skip
ONNXRUNTIME = pytest.importorskip("onnxruntime", reason="onnxruntime is in the test extra")


@pytest.fixture(autouse=True)
def _auto_measures(monkeypatch, tmp_path):
    monkeypatch.delenv(engines.ENGINE_ENV, raising=False)  # the suite sets it to torch
    monkeypatch.setenv("SEGKIT_CACHE_DIR", str(tmp_path / "cache"))  # each test decides anew


def _job(tmp_path, net: nn.Module | None = None, precision: str = "fp32") -> EngineJob:
    torch.manual_seed(0)
    net = (net or nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 1))).eval()

    def own(x):
        with torch.inference_mode():
            return net(x)

    return EngineJob(
        model=net,
        make_torch=lambda: own,
        make_body=lambda: net,
        make_reference=lambda: own,
        make_check=lambda: [torch.randn(1, 3, 24, 32) for _ in range(2)],
        timing_input=torch.randn(1, 3, 32, 32),
        source=tmp_path / "model.pt",
        device="cpu",
        precision=precision,
        what="a test network",
    )


def _timings(values: dict[str, float]):
    def fake(nets, x, rounds=engines.TIMING_ROUNDS):
        return {name: values[name] for name in nets}

    return fake


def test_auto_takes_the_fastest_checked_engine_and_keeps_the_choice(tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "installed", lambda name: name == "onnxruntime")
    monkeypatch.setattr(engines, "time_nets", _timings({"torch": 9.0, "onnxruntime": 4.0}))
    net, choice = select_engine("auto", _job(tmp_path))
    assert choice.name == "onnxruntime" and "measured now" in choice.reason, choice
    assert "openvino left out: not installed (pip install 'segkit[openvino]')" in choice.notes
    x = torch.randn(1, 3, 20, 28)
    assert torch.allclose(net(x), _job(tmp_path).torch_net(x), atol=1e-5)  # the real session, another size

    def never(*args, **kwargs):
        raise AssertionError("a kept decision is not measured again")

    monkeypatch.setattr(engines, "time_nets", never)
    monkeypatch.setattr(engines, "agreement", never)
    again = select_engine("auto", _job(tmp_path))[1]
    assert again.name == "onnxruntime" and "kept in" in again.reason
    monkeypatch.setenv("SEGKIT_REMEASURE", "1")
    monkeypatch.setattr(engines, "agreement", lambda *a: (True, "agreed"))
    monkeypatch.setattr(engines, "time_nets", _timings({"torch": 3.0, "onnxruntime": 4.0}))
    assert select_engine("auto", _job(tmp_path))[1].name == "torch"


def test_a_tie_goes_to_segkits_own_path():
    assert engines.fastest({"onnxruntime": 5.0, "openvino": 5.0, "torch": 5.0}) == "torch"
    assert engines.fastest({"onnxruntime": 5.0, "openvino": 4.0, "torch": 6.0}) == "openvino"


def test_an_engine_that_disagrees_is_left_out_by_auto_and_refused_by_name(tmp_path, monkeypatch):
    real = engines.engine_net

    def off_by_a_bit(engine, graph, precision):
        inner = real(engine, graph, precision)
        return lambda x: inner(x) + 1e-2 * inner(x).abs().max()

    monkeypatch.setattr(engines, "installed", lambda name: name == "onnxruntime")
    monkeypatch.setattr(engines, "engine_net", off_by_a_bit)
    monkeypatch.setattr(engines, "time_nets", _timings({"torch": 9.0, "onnxruntime": 1.0}))
    net, choice = select_engine("auto", _job(tmp_path))
    assert choice.name == "torch"
    (note,) = [n for n in choice.notes if n.startswith("onnxruntime")]
    assert "disagrees with PyTorch" in note and "logits within 1.0e-02" in note, note
    with pytest.raises(EngineRefused, match=r"onnxruntime \(fp32\) disagrees with PyTorch.*1\.0e-02"):
        select_engine("onnxruntime", _job(tmp_path))


def test_the_graph_is_kept_beside_the_model_and_made_again_for_new_weights(tmp_path):
    job = _job(tmp_path)
    digest = engines.weights_hash(job.model)
    path, exported = engines.cached_graph(job.model, job.timing_input, job.source, digest, job.what)
    assert exported and path.parent == tmp_path / ".segkit-engines" and path.name == f"model-{digest}.onnx"
    assert engines.cached_graph(job.model, job.timing_input, job.source, digest, job.what) == (path, False)
    with torch.no_grad():
        job.model[0].weight.add_(0.1)
    new = engines.weights_hash(job.model)
    assert new != digest
    path2, exported = engines.cached_graph(job.model, job.timing_input, job.source, new, job.what)
    assert exported and not path.exists() and path2.exists()
    assert [p.name for p in (tmp_path / ".segkit-engines").iterdir()] == [path2.name]


def test_a_missing_engine_package_is_named_with_its_install_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    with pytest.raises(
        EngineRefused, match=r"--engine openvino needs the openvino package: pip install 'segkit\[openvino\]'"
    ):
        select_engine("openvino", _job(tmp_path))
    monkeypatch.setattr(engines, "time_nets", _timings({"torch": 1.0, "onnxruntime": 2.0}))
    choice = select_engine("auto", _job(tmp_path))[1]
    assert "openvino left out: not installed (pip install 'segkit[openvino]')" in choice.notes


def test_the_environment_variable_sets_what_auto_means(tmp_path, monkeypatch):
    monkeypatch.setenv(engines.ENGINE_ENV, "torch")
    assert select_engine("auto", _job(tmp_path))[1].reason == "SEGKIT_ENGINE=torch"
    monkeypatch.setenv(engines.ENGINE_ENV, "tensorflow")
    with pytest.raises(engines.SegkitError, match="SEGKIT_ENGINE must be one of torch, onnxruntime, openvino"):
        select_engine("auto", _job(tmp_path))


def test_bf16_on_onnxruntime_is_refused_with_the_fix(tmp_path):
    with pytest.raises(EngineRefused, match="fp32 only.*--precision fp32"):
        select_engine("onnxruntime", _job(tmp_path, precision="bf16"))


def test_openvino_computes_what_pytorch_does(tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO is an optional extra (segkit[openvino]); CI installs it")
    net, choice = select_engine("openvino", _job(tmp_path))
    assert choice.name == "openvino" and "checked: logits within" in choice.reason
    x = torch.randn(2, 3, 40, 24)  # another batch and size: compiled per shape
    assert torch.allclose(net(x), _job(tmp_path).torch_net(x), atol=1e-5)


OPENVINO_THEN_SIGNAL = """
import os, signal, sys
from segkit.cli import main
args = ["bench", "backbone", "--repeats", "1", "--latency-size", "64", "--throughput-batch", "2", "--throughput-size",
        "32", "--train-batch", "2", "--train-size", "32", "--variants", "res2net50_48w_2s", "--no-compile"]
assert main(args) == 0  # OpenVINO nets in fp32 and bf16 made, run and dropped, twice
signal.signal(signal.SIGTERM, lambda *_: print("handled", flush=True))
os.kill(os.getpid(), signal.SIGTERM)
print("after", flush=True)
"""


@pytest.mark.slow
def test_a_signal_after_openvino_nets_were_dropped_is_handled_not_a_crash(tmp_path):
    """OpenVINO's CPU plugin swaps the main thread's signal stack per Core (see engines._openvino_core): after a
    bench that made and dropped OpenVINO nets, a signal is still delivered to its handler (before: a segmentation
    fault on the AVX512-BF16 EPYC, which killed the suite's worker at its SIGTERM test)."""
    pytest.importorskip("openvino", reason="OpenVINO is an optional extra (segkit[openvino]); CI installs it")
    import subprocess

    res = subprocess.run([sys.executable, "-W", "ignore", "-c", OPENVINO_THEN_SIGNAL], capture_output=True, text=True,
                         cwd=tmp_path, timeout=600)  # fmt: skip
    assert res.returncode == 0 and res.stdout.split()[-2:] == ["handled", "after"], (res.returncode, res.stderr[-1500:])


@pytest.fixture(scope="module")
def tiny_checkpoint(module_tmp):
    from segkit.training.train import train

    out = module_tmp
    result = train(load_config(None, ["task=saliency", f"out_dir={out}", "name=run", *TINY]))
    return result.run_dir / "best.pt"


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_predict_on_another_engine_writes_the_masks_pytorch_writes(tiny_checkpoint, tmp_path, engine, capsys):
    """The same masks as PyTorch's, or, where the engine cannot run the network (OpenVINO refuses the 64 px test
    network's pyramid pooling, whose kernels exceed its smallest maps), exit 2 with the reason and nothing written."""
    if engine == "openvino":
        pytest.importorskip("openvino", reason="OpenVINO is an optional extra (segkit[openvino]); CI installs it")
    import cv2
    from PIL import Image

    from segkit.cli import main

    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    for i, (h, w) in enumerate([(90, 120), (64, 64)]):
        cv2.imwrite(str(tmp_path / "in" / f"{i}.png"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    outs, codes = {}, {}
    for name in ("torch", engine):
        codes[name] = main(["predict", "--checkpoint", str(tiny_checkpoint), "--input", str(tmp_path / "in"),
                            "--output", str(tmp_path / name), "--engine", name, "--precision", "fp32"])  # fmt: skip
        if codes[name] == 0:
            outs[name] = [np.asarray(Image.open(tmp_path / name / f"{i}.png"), np.int16) for i in range(2)]
    said = capsys.readouterr().err
    assert codes["torch"] == 0 and "Traceback" not in said
    assert list((tiny_checkpoint.parent / ".segkit-engines").glob("best-*.onnx"))
    if codes[engine] == 2:  # refused: the reason, and no mask
        assert f"segkit: error: {engine} (fp32) cannot run this network: it failed on the check images (" in said
        assert not (tmp_path / engine).exists() or not list((tmp_path / engine).iterdir())
        assert engine == "openvino", said  # onnxruntime runs it
        return
    assert codes[engine] == 0 and f"engine {engine} (asked; checked: logits within" in said, said
    for ours, theirs in zip(outs["torch"], outs[engine], strict=True):
        assert np.abs(ours - theirs).max() <= 1  # fp32 on both: at most a rounding step of the 8-bit map


def test_an_engine_that_fails_on_the_check_images_is_left_out_not_a_traceback(tmp_path, monkeypatch):
    def broken(engine, graph, precision):
        def run(x):
            raise RuntimeError("Check 'cmp::le(kernel, dim.get_length())' failed\nmore lines")

        return run

    monkeypatch.setattr(engines, "installed", lambda name: name == "onnxruntime")
    monkeypatch.setattr(engines, "engine_net", broken)
    net, choice = select_engine("auto", _job(tmp_path))
    assert choice.name == "torch"
    assert any("failed on the check images (Check 'cmp::le(kernel" in n for n in choice.notes), choice.notes
    with pytest.raises(EngineRefused, match=r"onnxruntime \(fp32\) cannot run this network: it failed on the check"):
        select_engine("onnxruntime", _job(tmp_path))


def test_onnxruntime_threads_do_not_spin_after_a_run(tmp_path):
    """Spinning threads took the cores from what ran next: PyTorch timed beside them ran 2x slower, which biased the
    auto decision (benchmarks/RESULTS.md, "Engines")."""
    job = _job(tmp_path)
    path = job.graph(engines.weights_hash(job.model))
    options = engines.OrtNet(path).session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_a_kept_choice_of_another_engine_never_builds_segkits_own_path(tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "installed", lambda name: name == "onnxruntime")
    monkeypatch.setattr(engines, "time_nets", _timings({"torch": 9.0, "onnxruntime": 4.0}))
    assert select_engine("auto", _job(tmp_path))[1].name == "onnxruntime"
    job = _job(tmp_path)

    def not_again():
        raise AssertionError("the second run should start with the kept engine only")

    job.make_torch = not_again
    net, choice = select_engine("auto", job)
    assert choice.name == "onnxruntime" and "kept in" in choice.reason
    assert net(torch.randn(1, 3, 16, 16)).shape == (1, 1, 16, 16)


def test_with_no_other_engine_installed_auto_runs_pytorch_without_hashing(tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "installed", lambda name: False)
    monkeypatch.setattr(engines, "weights_hash", lambda model: pytest.fail("nothing to compare: no hash"))
    net, choice = select_engine("auto", _job(tmp_path))
    assert choice.name == "torch" and choice.reason == "auto: no other engine is installed"
    assert choice.notes == [
        "onnxruntime left out: not installed (pip install 'segkit[onnx]')",
        "openvino left out: not installed (pip install 'segkit[openvino]')",
    ]
