"""The inference path's precision and compilation: auto picks what the hardware runs natively, bf16 masks agree
with fp32, a model that cannot compile runs eagerly after one line. Speed is measured by `segkit bench`, not here."""

import functools

import numpy as np
import pytest
import torch

import segkit.accel.hardware
from segkit.cli import main
from segkit.config import load_config

TINY = [
    "data.image_size=64", "data.batch_size=4", "data.workers=0", "eval.max_images=4",
    "model.backbone=res2net50_14w_8s", "model.decoder_channels=16",
]  # fmt: skip


SHORT_RES2NET = "res2net_short_test"  # Res2Net-50's blocks (width 14, scale 8), fewer of them


@pytest.fixture(scope="module")
def short_res2net():
    """A Res2Net with Res2Net-50's blocks (base width 14, scale 8) but one block in the first two stages and two in
    the last two, registered as ``SHORT_RES2NET`` for this module's trainings: every kind of Res2Net block the bf16
    path converts (a stage's first block with its pooling, a hierarchical block, dilated ones in DeepLabv3+) at a
    fraction of the training time (segmentation's 100 steps: 56 instead of 90 s on one core of the AVX512-BF16
    EPYC; the agreement was 99.90% against 99.82% with the full depth)."""
    from segkit.models import backbones, res2net

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(res2net.RES2NET_SPECS, SHORT_RES2NET, res2net.Res2NetSpec((1, 1, 2, 2), base_width=14, scale=8))
        patch.setitem(backbones.BACKBONES, SHORT_RES2NET, backbones._build_res2net(SHORT_RES2NET))
        yield SHORT_RES2NET


@pytest.fixture(scope="module")
def trained(module_tmp, short_res2net):
    """Small models trained enough to make real decisions, in fp32 so that they are the same on every CPU (auto
    would train in bf16 on some): the default recipe (AdamW, cosine) at 64 px, 60 steps for saliency (max F 0.84;
    99.97% of pixels agreed, metrics within 2.1e-4 when measured) and 100 for segmentation, whose class decisions
    need more training to sit away from their ties (60 steps of a bf16-trained model left it at 99.88% and 1.5e-3;
    100: mIoU 0.61, 99.92% and 2.4e-4). An untrained model's outputs sit at the threshold, where any rounding flips
    a pixel, and say nothing about bf16."""
    from segkit.config import default_config_path
    from segkit.training.train import train

    recipe = ["amp=false", "schedule.warmup_steps=10", "eval.interval_steps=0", "eval.max_images=4",
              "data.image_size=64", "data.workers=0", f"model.backbone={short_res2net}",
              "model.decoder_channels=32"]  # fmt: skip
    steps = {"saliency": 60, "segmentation": 100}

    @functools.cache  # each model trained for the first test that asks, on its worker (not all on every worker)
    def train_one(task):
        sets = [f"out_dir={module_tmp}", f"name={task}", f"schedule.max_steps={steps[task]}", *recipe]
        return train(load_config(default_config_path(task), sets)).run_dir / "best.pt"

    return train_one


@pytest.fixture(scope="module")
def tiny(module_tmp):
    from segkit.training.train import train

    out = module_tmp
    return train(
        load_config(None, ["task=saliency", f"out_dir={out}", "name=t", "schedule.max_steps=1", *TINY])
    ).run_dir


@pytest.mark.usefixtures("auto_by_measurement")
def test_auto_is_fp32_without_native_bf16_and_bf16_where_it_is_native_and_faster(tiny, monkeypatch):
    import segkit

    monkeypatch.setattr(segkit.accel.hardware, "bf16_supported", lambda device: False)
    assert segkit.Predictor(tiny / "best.pt", device="cpu").precision == "fp32"
    monkeypatch.setattr(segkit.accel.hardware, "bf16_supported", lambda device: True)
    monkeypatch.setattr(segkit.accel.hardware, "cpu_bf16_speedup", lambda: 2.7)  # an EPYC with AVX512-BF16
    assert segkit.Predictor(tiny / "best.pt", device="cpu").precision == "bf16"
    monkeypatch.setattr(segkit.accel.hardware, "cpu_bf16_speedup", lambda: 0.57)  # native, but slower: measured here
    assert segkit.Predictor(tiny / "best.pt", device="cpu").precision == "fp32"
    explicit = segkit.Predictor(tiny / "best.pt", device="cpu", precision="bf16")  # asked for: native, so it runs
    assert explicit.precision == "bf16"


def test_bf16_input_refused_message_says_why(monkeypatch, tmp_path, tiny, capsys):
    import cv2

    monkeypatch.setattr(segkit.accel.hardware, "bf16_supported", lambda device: False)
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    args = ["predict", "--checkpoint", str(tiny / "best.pt"), "--input", str(tmp_path / "a.png")]
    assert main([*args, "--output", str(tmp_path / "o"), "--precision", "bf16"]) == 2
    err = capsys.readouterr().err
    assert "no native bf16" in err and "slower than fp32" in err and not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def trained_published(module_tmp, short_res2net):
    """The published architectures trained briefly on their tasks' built-in data (random weights put most pixels
    at the threshold), in fp32 so that the run is the same on every CPU: PoolNet-Res2Net at its smallest size,
    128 px, batch 2, 30 steps at lr 3e-4 (max F 0.75 on the validation split, 99.97% of decisions identical, when
    measured; the default lr 1e-3 left it predicting nearly everything as object after 40 steps, and batch 1
    background on 96% of the pixels); PraNet and SINet-V2 at 64 px, batch 4, 60 steps of their demo recipe (max F
    0.80 and 0.43, 99.93% and 99.87% identical; 40 steps of the full-depth Res2Net-50 left them at 99.6%)."""
    from segkit.config import default_config_path
    from segkit.training.train import train

    common = ["amp=false", "schedule.warmup_steps=10", "eval.interval_steps=0", "data.workers=0",
              "eval.max_images=4", f"model.backbone={short_res2net}"]  # fmt: skip
    recipes = {
        "poolnet-res2net": ("saliency", ["data.image_size=128", "data.batch_size=2", "optim.lr=0.0003",
                                         "schedule.max_steps=30"]),
        "pranet": ("polyp", ["data.image_size=64", "data.batch_size=4", "schedule.max_steps=60"]),
        "sinet-v2": ("camouflage", ["data.image_size=64", "data.batch_size=4", "schedule.max_steps=60"]),
    }  # fmt: skip

    @functools.cache  # as in ``trained``
    def train_one(arch):
        task, recipe = recipes[arch]
        sets = [f"out_dir={module_tmp}", f"name={arch}", f"model.arch={arch}", *common, *recipe]
        return train(load_config(default_config_path(task), sets)).run_dir / "best.pt"

    return train_one


def _bf16_agreement(checkpoint, task: str, max_images: int | None = None):
    """(share of identical mask decisions, fp32 scores, bf16 scores, share of the most common fp32 decision) over
    the built-in validation split; the last says the model decides something (not one class everywhere)."""
    from segkit.inference.pipeline import inference_settings, predict_probs, torch_net
    from segkit.inference.predictor import load_model
    from segkit.models import prepare_for_inference
    from segkit.tasks import get_task

    model = load_model(checkpoint)
    spec = get_task(task)
    source = spec.source(None, "val")
    settings = inference_settings(task, model, model.config)
    nets = {p: torch_net(prepare_for_inference(model, precision=p), "cpu") for p in ("fp32", "bf16")}
    metrics = {p: spec.metrics(model.num_classes) for p in nets}
    same = total = 0
    decisions_made = []
    for i in range(min(len(source), max_images or len(source))):
        image, gt, _ = source.load(i)
        masks = {p: spec.to_mask(predict_probs(net, image, settings)) for p, net in nets.items()}
        decided = {p: spec.decisions(m) for p, m in masks.items()}  # binary decision / class id per pixel
        same += int((decided["fp32"] == decided["bf16"]).sum())
        total += decided["fp32"].size
        decisions_made.append(decided["fp32"].ravel())
        for p, m in masks.items():
            metrics[p].update(m, gt)  # the scores segkit eval computes, from the same masks
    scores = {p: m.compute().scalars() for p, m in metrics.items()}
    majority = np.unique(np.concatenate(decisions_made), return_counts=True)[1].max() / total
    return same / total, scores["fp32"], scores["bf16"], majority


@pytest.mark.slow
@pytest.mark.skipif(not segkit.accel.hardware.bf16_supported("cpu"), reason="this CPU has no native bf16")
@pytest.mark.parametrize("task", ["saliency", "segmentation"])
def test_bf16_masks_agree_with_fp32_on_the_builtin_validation_split(trained, task):
    same, fp32, bf16, majority = _bf16_agreement(trained(task), task)
    assert majority < 0.95, f"the model decides one thing on {majority:.2%} of the pixels: it says nothing of bf16"
    assert same >= 0.995, f"{same:.4f} of pixels identical"
    for key, value in fp32.items():
        assert abs(bf16[key] - value) <= 0.002, (key, value, bf16[key])


@pytest.mark.slow
@pytest.mark.skipif(not segkit.accel.hardware.bf16_supported("cpu"), reason="this CPU has no native bf16")
@pytest.mark.parametrize(
    "arch,task", [("poolnet-res2net", "saliency"), ("pranet", "polyp"), ("sinet-v2", "camouflage")]
)
def test_bf16_masks_of_the_published_networks_agree_with_fp32(trained_published, arch, task):
    same, _, _, majority = _bf16_agreement(trained_published(arch), task, max_images=24)
    assert majority < 0.95, f"the model decides one thing on {majority:.2%} of the pixels: it says nothing of bf16"
    assert same >= 0.995, f"{same:.4f} of pixels identical"


def test_a_model_that_cannot_compile_runs_eagerly_after_one_line(monkeypatch, capsys):
    from segkit.models import create_model, prepare_for_inference

    def broken_compile(module, **kwargs):
        def run(x):
            raise RuntimeError("inductor exploded\nlong details")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    model = create_model("saliency", backbone="res2net50_14w_8s", decoder_channels=16).eval()
    fast = prepare_for_inference(model, compile=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        got, again, want = fast(x), fast(x), prepare_for_inference(model, onednn=False)(x)  # the modules compile got
    assert torch.allclose(got, want) and torch.allclose(again, want)
    err = capsys.readouterr().err
    assert err.count("torch.compile failed (RuntimeError: inductor exploded)") == 1


@pytest.mark.usefixtures("auto_by_measurement")
def test_training_autocast_follows_measured_bf16_speed(monkeypatch):
    """A CPU trains in bf16 only where bf16 is native and measures faster (AMX); AVX512-BF16 alone may not be."""
    from segkit.accel.precision import autocast, training_precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(segkit.accel.hardware, "bf16_supported", lambda device: True)
    monkeypatch.setattr(segkit.accel.hardware, "cpu_bf16_speedup", lambda: 0.6)  # native, slower (measured here)
    with autocast(cpu):
        assert not torch.is_autocast_enabled("cpu")
    assert training_precision(cpu, amp=True).startswith("fp32 (")
    monkeypatch.setattr(segkit.accel.hardware, "cpu_bf16_speedup", lambda: 2.0)
    with autocast(cpu):
        assert torch.is_autocast_enabled("cpu")
    assert training_precision(cpu, amp=True) == "bf16 autocast"
    assert training_precision(cpu, amp=False) == "fp32 (amp: false)"
    monkeypatch.setattr(segkit.accel.hardware, "bf16_supported", lambda device: False)
    with autocast(cpu):
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.usefixtures("auto_by_measurement")
def test_compile_auto_decides_by_job_size_where_the_fast_path_is_unfused(monkeypatch, tiny, tmp_path, capsys):
    """--compile auto: where the eager fast path runs oneDNN's fused convolutions, never (measured as fast as
    compiled); where it does not, for jobs of COMPILE_MIN_IMAGES images or more; never on a GPU."""
    import segkit.inference.predictor as predictor_module
    from segkit.inference.predictor import COMPILE_MIN_IMAGES, compile_decision

    monkeypatch.setattr(predictor_module, "onednn_fuses", lambda device: False)  # a CPU or build without them
    assert compile_decision("auto", COMPILE_MIN_IMAGES)[0] and not compile_decision("auto", COMPILE_MIN_IMAGES - 1)[0]
    assert not compile_decision("auto", None)[0]
    assert not compile_decision("auto", 10**6, "cuda")[0], "a GPU: CUDA graphs are faster for single images"
    assert compile_decision("on", 1) == (True, "asked") and compile_decision("off", 10**6) == (False, "asked")
    images = tmp_path / "in"
    images.mkdir()
    for i in range(3):
        from PIL import Image

        Image.fromarray(np.full((40, 50, 3), 60 * i, np.uint8)).save(images / f"{i}.png")
    ckpt = str(tiny / "best.pt")
    args = ["predict", "--checkpoint", ckpt, "--input", str(images), "--precision", "fp32", "--output"]
    assert main([*args, str(tmp_path / "a")]) == 0
    assert f"not compiled (auto: 3 images < {COMPILE_MIN_IMAGES}" in capsys.readouterr().err
    monkeypatch.setattr(predictor_module, "COMPILE_MIN_IMAGES", 3)
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: module)  # the decision, not inductor, is tested
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    assert main([*args, str(tmp_path / "b")]) == 0
    assert "compiled (auto: 3 images >= 3" in capsys.readouterr().err
    assert main([*args, str(tmp_path / "c"), "--compile", "off"]) == 0
    assert "not compiled (asked)" in capsys.readouterr().err
    monkeypatch.setattr(predictor_module, "onednn_fuses", lambda device: True)  # a CPU where they run
    assert not compile_decision("auto", 10**6)[0] and compile_decision("on", 1)[0]
    # where this CPU runs bf16 at all, auto is made to pick it (as on an AMX Xeon); elsewhere auto is fp32 (faking
    # bf16 there would ask oneDNN for kernels that need AVX-512)
    native = segkit.accel.hardware.bf16_supported("cpu")
    if native:
        monkeypatch.setattr(segkit.accel.hardware, "cpu_bf16_speedup", lambda: 6.4)  # an AMX Xeon (measured)
    for extra in ([], ["--precision", "fp32"]):  # --precision auto; and fp32
        assert main([*args[:-3], *extra, "--output", str(tmp_path / f"d{len(extra)}")]) == 0
        err = capsys.readouterr().err
        want = "bf16" if native and not extra else "fp32"
        assert f"precision {want}" in err and "not compiled (auto: on this CPU the fused" in err


def test_compiled_code_is_cached_under_the_users_cache_folder(monkeypatch, tmp_path):
    import os

    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    from segkit.inference.predictor import use_persistent_compile_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())  # what torch sets on first use
    use_persistent_compile_cache()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "xdg" / "segkit" / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))  # the user's own choice stays
    use_persistent_compile_cache()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


def test_predictor_makes_each_form_of_the_fast_path_once(tiny, monkeypatch):
    """eval creates a Predictor, then sets the compile choice for its job: the same choice reuses the fast path."""
    import segkit
    import segkit.inference.predictor as predictor_module

    made = []
    real = predictor_module.prepare_for_inference
    monkeypatch.setattr(predictor_module, "prepare_for_inference", lambda *a, **k: made.append(k) or real(*a, **k))
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: module)
    p = segkit.Predictor(tiny / "best.pt", device="cpu", precision="fp32")
    p.set_compile("off", 10)
    p.set_compile("on", 10)
    p.set_compile(False, 10)
    assert [k["compile"] for k in made] == [False, True]
