"""segkit's backbones as complete smp encoders: every smp architecture builds on them, returns logits of the
input size, runs on the inference fast path, and says why when it refuses a size; segkit's segmentation network
takes the architecture as an argument and as config."""

import pytest
import segmentation_models_pytorch as smp
import torch

from segkit.errors import SegkitError
from segkit.models import create_backbone, create_model, prepare_for_inference, smp_architectures
from segkit.models.segmentation import arch_size_multiple
from tests.conftest import max_rel_err, randomize_batchnorm

ENCODER = "segkit-res2net50_14w_8s"
CNN_ARCHS = [a for a in smp_architectures() if a != "dpt"]  # smp's DPT takes ViT-style timm encoders only


def _sizes(arch: str) -> list[tuple[int, int]]:
    """64x64 (128x128 for PAN, which needs 128) and an odd multiple of the architecture's size multiple."""
    m = arch_size_multiple(arch)
    square = 128 if arch == "pan" else 64
    return [(square, square), (3 * m if arch != "pan" else 192, 5 * m)]


def test_smp_lists_the_architectures_we_test():
    assert {"unet", "unetplusplus", "fpn", "pspnet", "pan", "linknet", "manet", "upernet", "deeplabv3",
            "deeplabv3plus", "segformer"} <= set(CNN_ARCHS)  # fmt: skip


def test_dpt_refuses_a_cnn_encoder_and_says_why():
    with pytest.raises(ValueError, match="Only Timm encoders are supported for DPT"):
        smp.create_model("dpt", encoder_name=ENCODER, encoder_weights=None, classes=2)
    with pytest.raises(SegkitError, match="dpt cannot be built on backbone"):
        create_model("segmentation", arch="dpt", backbone="res2net50_14w_8s", num_classes=2)


@pytest.mark.parametrize("arch", CNN_ARCHS)
def test_every_architecture_on_a_segkit_encoder_and_its_fast_path(arch):
    """segkit's network builds smp's architecture by the encoder name a user would give smp
    (``smp.create_model(arch, encoder_name="segkit-...")``): logits of the input size at 64x64 (128 for PAN) and
    at an odd multiple of the architecture's size multiple, and the inference fast path equal to eval mode."""
    model = randomize_batchnorm(create_model("segmentation", arch=arch, backbone="res2net50_14w_8s", num_classes=3))
    model.eval()
    assert model.arch == arch and model.net.encoder.__class__.__name__ == "SmpBackboneEncoder"
    fast = prepare_for_inference(model)
    for h, w in _sizes(arch):
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            want, got = model(x), fast(x)
        assert want.shape == (1, 3, h, w)
        assert max_rel_err(got, want) < 1e-4


def test_sizes_and_output_strides_an_architecture_refuses_are_named():
    pan = create_model("segmentation", arch="pan", backbone="res2net50_14w_8s", num_classes=2).eval()
    with pytest.raises(SegkitError, match="pan needs input sides of at least 128 px, got 64x64"):
        pan(torch.randn(1, 3, 64, 64))
    fpn = create_model("segmentation", arch="fpn", backbone="res2net50_14w_8s", num_classes=2).eval()
    with pytest.raises(SegkitError, match="multiples of 32, got 48x64"):
        fpn(torch.randn(1, 3, 48, 64))
    with pytest.raises(SegkitError, match="model.output_stride.*output stride 32, got 16"):
        create_model("segmentation", arch="unet", output_stride=16)
    with pytest.raises(SegkitError, match="model.arch"):
        create_model("segmentation", arch="not-an-arch")
    with pytest.raises(SegkitError, match="model.arch.*PoolNet"):
        create_model("saliency", arch="unet")


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_encoder_depths_and_the_stride_2_map(depth):
    from segmentation_models_pytorch.encoders import get_encoder

    encoder = get_encoder("segkit-res2net50_26w_4s", depth=depth).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        maps = encoder(x)
    assert len(maps) == depth + 1 and [m.shape[1] for m in maps] == encoder.out_channels
    assert [m.shape[-1] for m in maps] == [96 // 2**i for i in range(depth + 1)]
    assert encoder.out_channels == [3, 64, 256, 512, 1024, 2048][: depth + 1]


def test_dilated_encoder_for_output_stride_8():
    from segmentation_models_pytorch.encoders import get_encoder

    encoder = get_encoder("segkit-res2net50_26w_4s", output_stride=8).eval()
    with torch.no_grad():
        maps = encoder(torch.randn(1, 3, 64, 64))
    assert [m.shape[-1] for m in maps] == [64, 32, 16, 8, 8, 8]


def test_a_timm_checkpoint_loads_into_the_encoder_of_a_users_unet(tmp_path):
    import timm

    reference = timm.create_model("res2net50_26w_4s")  # with its ImageNet head, as timm saves it
    path = tmp_path / "res2net50_26w_4s.pth"
    torch.save(reference.state_dict(), path)
    unet = smp.Unet(encoder_name="segkit-res2net50_26w_4s", encoder_weights=None, classes=2)
    unet.encoder.load_backbone_weights(path)
    assert torch.equal(unet.encoder.backbone.layer3[2].convs[1].weight, reference.layer3[2].convs[1].weight)


def test_resnet_baselines_are_complete_encoders_too():
    unet = smp.Unet(encoder_name="segkit-resnet50", encoder_weights=None, classes=2).eval()
    with torch.no_grad():
        assert unet(torch.randn(1, 3, 64, 64)).shape == (1, 2, 64, 64)
    assert create_backbone("resnet50").stem_channels == 64


# PyTorch's ONNX exporter (TorchScript-based, which segkit uses for dynamic height and width) cannot export
# PSPNet's and UPerNet's adaptive average pooling with a dynamic input size; and for Linknet and MAnet the exported
# model differs from PyTorch by more than segkit's check allows (1e-3 on logits; 1.3e-3 and 5e-3 on these test
# networks at a second size; PAN's 3e-3 in one run, within 1e-3 in another). segkit export refuses those with the
# reason and writes nothing; for the three near the limit either outcome is accepted, never a wrong file.
NO_DYNAMIC_ONNX = {"pspnet", "upernet"}
NEAR_ONNX_TOLERANCE = {"linknet", "manet", "pan"}  # either outcome is right; not exported here (MAnet takes 26 s)


def _calibrate_batchnorm(model, side: int) -> None:
    """BatchNorm statistics from one random batch, so that an untrained network's logits are of a trained one's
    size (a fresh network's run to 1e4-1e7, where any float rounding exceeds an absolute tolerance)."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average: one batch sets the statistics
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, side, side))
    model.eval()


def _checkpoint(tmp_path, arch: str):
    """A segkit checkpoint of ``arch`` as training writes it (weights, config, classes), without the training."""
    from segkit.config import load_config, to_dict
    from segkit.training.checkpoint import FORMAT_VERSION, atomic_save

    config = load_config(None, ["task=segmentation", f"model.arch={arch}", "model.backbone=res2net50_14w_8s"])
    model = create_model("segmentation", arch=arch, backbone="res2net50_14w_8s", num_classes=3)
    _calibrate_batchnorm(model, 128 if arch == "pan" else 64)
    path = tmp_path / f"{arch}.pt"
    payload = {"format": FORMAT_VERSION, "model": model.state_dict(), "config": to_dict(config), "step": 0,
               "task": "segmentation", "num_classes": 3, "class_names": ["a", "b", "c"]}  # fmt: skip
    atomic_save(payload, path)
    return path


@pytest.mark.parametrize("arch", sorted(set(CNN_ARCHS) - NEAR_ONNX_TOLERANCE))
def test_every_architecture_predicts_and_exports(tmp_path, arch, capsys):
    """A checkpoint of each architecture predicts at any image size, and exports to ONNX (checked against PyTorch
    by the command) with ONNX predictions equal to the checkpoint's; or, for the architectures the exporter cannot
    follow, export is refused with the reason and nothing is written."""
    import numpy as np

    import segkit
    from segkit.cli import main

    ckpt = _checkpoint(tmp_path, arch)
    onnx_path = tmp_path / "m.onnx"
    code = main(["export", "--checkpoint", str(ckpt), "--output", str(onnx_path)])
    if arch in NO_DYNAMIC_ONNX:
        assert code == 2 and not onnx_path.exists()
        err = capsys.readouterr().err
        assert f"smp's {arch} network" in err and "nothing was written" in err and "Traceback" not in err
        reason = "cannot be exported" if arch in NO_DYNAMIC_ONNX else "differs from PyTorch"
        assert reason in err
        return
    assert code == 0  # export itself compared onnxruntime with PyTorch at a second size
    side = 128 if arch == "pan" else 64
    image = np.random.default_rng(0).integers(0, 255, (side + 7, side + 21, 3), dtype=np.uint8)
    predictor = segkit.Predictor(ckpt, precision="fp32")
    assert predictor.net is not None and segkit.load_model(ckpt).arch == arch
    torch_probs = predictor.predict_probs(image)
    assert torch_probs.shape == (3, side + 7, side + 21)
    assert np.abs(torch_probs - segkit.Predictor(onnx_path).predict_probs(image)).max() < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["unet"])
def test_another_architecture_trains_and_evaluates_through_the_commands(tmp_path, arch, capsys):
    """--set model.arch=ARCH through train and eval --checkpoint (tests/test_model_folder.py predicts with one)."""
    from segkit.cli import main

    side = 128 if arch == "pan" else 64
    sets = [f"model.arch={arch}", "model.backbone=res2net50_14w_8s", f"data.image_size={side}",
            "data.batch_size=2", "data.workers=0", "schedule.max_steps=2", "eval.max_images=2"]  # fmt: skip
    run = tmp_path / "run"
    assert main(["train", "--task", "segmentation", "--out", str(run), *sum((["--set", s] for s in sets), [])]) == 0
    assert main(["eval", "--checkpoint", str(run / "best.pt")]) == 0
    assert "miou" in capsys.readouterr().out


def test_export_refuses_a_model_onnx_runtime_does_not_reproduce(tmp_path, monkeypatch, capsys):
    """The check after export: beyond the tolerance, nothing is written and the message says why."""
    import segkit.inference.export as export_module
    from segkit.cli import main

    ckpt = _checkpoint(tmp_path, "fpn")
    monkeypatch.setattr(export_module, "MAX_ABS_DIFF", 0.0)  # no float arithmetic is exact to 0
    monkeypatch.setattr(export_module, "MAX_REL_DIFF", 0.0)
    assert main(["export", "--checkpoint", str(ckpt), "--output", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "smp's fpn network differs from PyTorch" in err and "nothing was written" in err
    assert not (tmp_path / "m.onnx").exists() and not list(tmp_path.glob(".m.onnx*"))
