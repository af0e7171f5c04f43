"""Loading official-style, timm and wrapped checkpoints; refusing bad ones clearly."""

import os
import pickle

import pytest
import timm
import torch

from segkit.errors import SegkitError
from segkit.models import create_backbone

NAME = "res2net50_14w_8s"


def _official_state(v1b: bool = False):
    """A state_dict in the official layout: timm's module built independently, plus an ImageNet fc."""
    model = timm.create_model("res2net50d" if v1b else NAME, num_classes=1000)
    state = model.state_dict()
    assert "fc.weight" in state
    return state


@pytest.mark.parametrize("v1b", [False, True])
@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: s,
        lambda s: {"state_dict": {"module." + k: v for k, v in s.items()}},
        lambda s: {"model": s, "epoch": 90},
        lambda s: {"module." + k: v for k, v in s.items()},
    ],
    ids=["plain", "state_dict+module", "model", "module"],
)
def test_official_layouts_load(tmp_path, wrap, v1b):
    state = _official_state(v1b)
    path = tmp_path / "weights.pth"
    torch.save(wrap(state), path)
    name = "res2net50_v1b_26w_4s" if v1b else NAME
    backbone = create_backbone(name, pretrained=path)
    got = backbone.state_dict()
    for key, value in got.items():
        assert torch.equal(value, state[key]), key


def test_wrong_keys_fail_with_the_list(tmp_path):
    state = _official_state()
    state["layer9.0.conv1.weight"] = torch.zeros(1)
    del state["layer1.0.bns.2.running_var"]
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(SegkitError) as err:
        create_backbone(NAME, pretrained=path)
    msg = str(err.value)
    assert "layer1.0.bns.2.running_var" in msg and "layer9.0.conv1.weight" in msg and str(path) in msg


def test_wrong_variant_fails_with_shapes(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(create_backbone("res2net50_26w_4s").state_dict(), path)
    with pytest.raises(SegkitError, match="res2net|missing|shape"):
        create_backbone(NAME, pretrained=path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(SegkitError, match="does not exist"):
        create_backbone(NAME, pretrained=tmp_path / "nope.pth")
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(b"\x80\x04not a checkpoint at all")
    with pytest.raises(SegkitError, match="corrupt.pth"):
        create_backbone(NAME, pretrained=bad)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/segkit_pwned",))


def test_pickled_payload_is_refused_and_not_run(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {}, "x": Payload()}, f)
    marker = "/tmp/segkit_pwned"
    if os.path.exists(marker):
        os.remove(marker)
    with pytest.raises(SegkitError, match="refused|could not be read"):
        create_backbone(NAME, pretrained=path)
    assert not os.path.exists(marker)


def test_pretrained_timm_without_network_fails_clearly(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub reads this at import: set its constant too
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SegkitError, match="--set model.pretrained_backbone=/path/to/weights.pth"):
        create_backbone(NAME, pretrained="timm")


@pytest.mark.parametrize(
    "content, said",
    [
        (b"", "is empty"),
        (b"<html>not found</html>\n", "starts with neither a zip nor a pickle header"),
        ("truncated", "damaged (truncated, or still being written)"),
        ("module", "refers to the Python object torch.nn.modules.linear.Linear"),
    ],
)
def test_unreadable_checkpoints_say_what_the_file_is(tmp_path, content, said):
    """An empty file, a saved web page, a torn download and a pickled module each get their own reason, and none
    is told to load with weights_only=False (torch's own advice for the last)."""
    from segkit.models.checkpoint import read_checkpoint

    path = tmp_path / "weights.pth"
    if content == "truncated":
        torch.save({"w": torch.zeros(64)}, path)
        path.write_bytes(path.read_bytes()[:200])
    elif content == "module":
        torch.save({"m": torch.nn.Linear(2, 2)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(SegkitError) as err:
        read_checkpoint(path)
    message = str(err.value)
    assert said in message and "weights.pth" in message and "weights_only=False" not in message
