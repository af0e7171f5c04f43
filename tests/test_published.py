"""The published networks (PoolNet-Res2Net, PraNet, SINet-V2) against their authors' own outputs: the authors'
state dict is made from the shared manifest by its rule, saved as the authors save it, and read through segkit's
released-checkpoint path (``segkit.load_model``); every output must match ``reference.npz``."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import segkit
from segkit.errors import SegkitError
from segkit.models import prepare_for_inference
from segkit.models.published import PUBLISHED

NETWORKS = tuple(PUBLISHED)


def authors_tensor(name: str, shape: list[int]) -> torch.Tensor:
    """The shared README's rule: every entry made from its name."""
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    if name.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    if name.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=g)
    if name.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if name.endswith(".bias"):
        return 0.05 * torch.randn(shape, generator=g)
    if len(shape) == 1:
        return 0.5 + 0.5 * torch.rand(shape, generator=g)
    return torch.randn(shape, generator=g) * math.sqrt(1 / math.prod(shape[1:]))


def authors_state(folder: Path) -> tuple[dict, dict]:
    """(the authors' state dict, in their order, every row's sums checked; the manifest)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    state = {}
    for name, shape, _dtype, total, total_abs in manifest["state_dict"]:
        tensor = authors_tensor(name, shape)
        as64 = tensor.double()
        assert as64.sum().item() == pytest.approx(total, rel=1e-9, abs=1e-9), name
        assert as64.abs().sum().item() == pytest.approx(total_abs, rel=1e-9, abs=1e-9), name
        state[name] = tensor
    return state, manifest


@pytest.fixture(scope="module")
def released(published_reference, module_tmp):
    """network name -> (released .pth as the authors save it, manifest, reference arrays)."""
    out = module_tmp
    files = {}
    for name in NETWORKS:
        state, manifest = authors_state(published_reference / name)
        path = out / f"{name}.pth"
        torch.save(state, path)
        files[name] = (path, manifest, dict(np.load(published_reference / name / "reference.npz")))
    return files


def outputs(model, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return model.forward_all(x) if hasattr(model, "forward_all") else (model(x),)


@pytest.mark.slow
@pytest.mark.parametrize("name", NETWORKS)
def test_released_file_matches_the_authors_outputs(released, name):
    path, manifest, ref = released[name]
    model = segkit.load_model(path)
    assert model.config.task == PUBLISHED[name].task and model.config.model.arch == PUBLISHED[name].arch
    x = torch.from_numpy(ref["input"])
    got = outputs(model, x)
    assert len(got) == len(manifest["outputs"])
    for out_name, out in zip(manifest["outputs"], got, strict=True):
        want = ref[out_name]
        tolerance = 1e-5 + 1e-4 * np.abs(want).max()
        assert out.shape == want.shape
        assert np.abs(out.numpy() - want).max() <= tolerance, out_name
    # the inference fast path (BatchNorm folded, fused convolutions) on the last output, fp32
    fast = prepare_for_inference(model, precision="fp32")
    with torch.no_grad():
        quick = fast(x)
    want = torch.from_numpy(ref[manifest["outputs"][-1]])
    assert float((quick - want).abs().max() / want.abs().max()) <= 1e-3


@pytest.mark.parametrize("name", NETWORKS)
def test_released_file_with_dataparallel_prefix_loads(released, name, tmp_path):
    from segkit.inference.checkpoint import read_checkpoint

    path, *_ = released[name]
    state = torch.load(path, weights_only=True)
    prefixed = tmp_path / "dp.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, prefixed)
    plain, wrapped = read_checkpoint(path), read_checkpoint(prefixed)
    assert wrapped["published"] == plain["published"] == name
    assert wrapped["model"].keys() == plain["model"].keys()
    assert all(torch.equal(wrapped["model"][k], plain["model"][k]) for k in plain["model"])


def test_every_key_of_the_authors_file_is_used(released):
    """Every entry maps onto a segkit module and back to the same name; only the unused ImageNet classifier is
    left out."""
    for name, (path, _, _) in released.items():
        network = PUBLISHED[name]
        state = torch.load(path, weights_only=True)
        expected = network.expected_keys()
        used = {network.keys.to_segkit(k): k for k in state if not network.keys.is_unused(k)}
        assert set(used) == set(expected), name
        assert all(network.keys.to_authors(ours) == theirs for ours, theirs in used.items())
        assert {k for k in state if network.keys.is_unused(k)} <= {k for k in state if ".fc." in f".{k}"}


def test_a_file_of_another_network_is_refused_with_the_closest(released, tmp_path):
    path, *_ = released["pranet-res2net50"]
    state = torch.load(path, weights_only=True)
    del state["ra3_conv2.conv.weight"]
    state["extra_head.weight"] = torch.zeros(1)
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(SegkitError) as err:
        segkit.load_model(broken)
    message = str(err.value)
    assert "closest is 'pranet-res2net50'" in message
    assert "missing: ra3_conv2.conv.weight" in message
    assert "unexpected: extra_head.weight" in message
    assert str(broken) in message


def test_a_backbone_file_is_not_taken_for_a_network(tmp_path):
    from segkit.models import create_backbone

    path = tmp_path / "res2net.pth"
    torch.save(create_backbone("res2net50_v1b_26w_4s").state_dict(), path)
    with pytest.raises(SegkitError, match="not the state dict of a network segkit knows"):
        segkit.load_model(path)


@pytest.mark.slow
def test_cli_runs_on_the_authors_file(released, tmp_path, capsys):
    """predict, eval --checkpoint, render --checkpoint and both exports on the released PraNet file."""
    import cv2

    from segkit.cli import main

    path, *_ = released["pranet-res2net50"]
    images, masks = tmp_path / "data" / "Kvasir" / "images", tmp_path / "data" / "Kvasir" / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(images / f"{i}.jpg"), rng.integers(0, 255, (200, 260, 3), dtype=np.uint8))
        cv2.imwrite(str(masks / f"{i}.png"), (rng.random((200, 260)) > 0.7).astype(np.uint8) * 255)
    out = tmp_path / "pred"
    args = ["predict", "--checkpoint", str(path), "--input", str(images), "--output", str(out), "--precision", "fp32"]
    assert main(args) == 0
    written = cv2.imread(str(out / "0.png"), cv2.IMREAD_GRAYSCALE)
    assert written.shape == (200, 260) and written.min() == 0 and written.max() == 255  # min-max per image
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(path), "--data", str(tmp_path / "data")]) == 0
    printed = capsys.readouterr().out
    assert "mDice" in printed and "Kvasir" in printed
    figure = tmp_path / "fig.png"
    args = ["render", "--task", "polyp", "--images", str(images), "--gt", str(masks), "--checkpoint", f"PraNet={path}"]
    assert main([*args, "--output", str(figure)]) == 0
    assert figure.is_file()
    folder = tmp_path / "folder"
    assert main(["export", "--checkpoint", str(path), "--format", "folder", "--output", str(folder)]) == 0
    card = (folder / "README.md").read_text()
    for fact in ("PraNet", "MICCAI 2020", "research and education", "PraNet-19.pth"):
        assert fact in card
    onnx = tmp_path / "pranet.onnx"
    assert main(["export", "--checkpoint", str(path), "--output", str(onnx)]) == 0
    onnx_out = tmp_path / "onnx"
    assert main(["predict", "--model", str(onnx), "--input", str(images / "0.jpg"), "--output", str(onnx_out)]) == 0
    from_onnx = cv2.imread(str(onnx_out / "0.png"), cv2.IMREAD_GRAYSCALE)
    assert np.abs(from_onnx.astype(int) - written.astype(int)).max() <= 1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["poolnet-res2net50", "sinet-v2-res2net50"])
def test_the_other_released_networks_export_to_onnx(released, name, tmp_path):
    """ONNX with dynamic sizes, checked by segkit's export against PyTorch at a second size (PraNet: above)."""
    from segkit.inference.export import export_onnx

    path, *_ = released[name]
    result = export_onnx(path, tmp_path / f"{name}.onnx")  # raises when onnxruntime and PyTorch disagree
    assert (tmp_path / f"{name}.onnx").is_file() and result["max_abs_diff"] < 1e-3
