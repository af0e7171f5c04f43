"""A model folder to share without pickle: export, load, predict exactly what the checkpoint predicts, refuse a
folder whose config does not match its weights, and say in one line why hf:// cannot be reached offline."""

import json

import numpy as np
import pytest
import torch

import segkit
from segkit.cli import main
from segkit.config import load_config
from segkit.errors import SegkitError

TINY = ["data.image_size=64", "data.batch_size=2", "data.workers=0", "schedule.max_steps=2", "eval.max_images=2",
        "model.backbone=res2net50_14w_8s"]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(module_tmp):
    from segkit.training.train import train

    out = module_tmp
    cfg = load_config(None, ["task=segmentation", f"out_dir={out}", "name=r", "model.arch=unet", *TINY])
    return train(cfg).run_dir


@pytest.fixture(scope="module")
def folder(run_dir, module_tmp):
    out = module_tmp / "model"
    assert main(["export", "--checkpoint", str(run_dir / "best.pt"), "--format", "folder", "--output", str(out)]) == 0
    return out


def test_folder_holds_weights_config_and_card(folder, run_dir):
    import safetensors.torch

    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["task"] == "segmentation" and config["architecture"] == "unet"
    assert config["backbone"] == "res2net50_14w_8s" and config["num_classes"] == len(config["class_names"])
    assert config["input"]["mean"] == [0.485, 0.456, 0.406] and config["inference"]["size_multiple"] == 32
    weights = safetensors.torch.load_file(str(folder / "model.safetensors"))
    assert weights.keys() == segkit.load_model(run_dir / "best.pt").state_dict().keys()
    card = (folder / "README.md").read_text()
    assert "| miou |" in card and "segkit predict --model" in card
    assert "dataset-wide confusion matrix" in card, "the conventions segkit eval's metric card states"
    from huggingface_hub import ModelCard

    hub = ModelCard(card).data  # the Hub's reading of the card's metadata
    assert hub.library_name == "segkit" and hub.pipeline_tag == "image-segmentation"
    assert {"segmentation", "unet", "res2net50_14w_8s"} <= set(hub.tags)


def test_folder_predicts_exactly_what_the_checkpoint_predicts(folder, run_dir, tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    want = segkit.Predictor(run_dir / "best.pt", precision="fp32").predict_probs(image)
    got = segkit.Predictor(folder, precision="fp32").predict_probs(image)
    assert np.array_equal(want, got)
    a, b = segkit.load_model(folder), segkit.load_model(run_dir / "best.pt")
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    inputs = tmp_path / "in"
    inputs.mkdir()
    from PIL import Image

    Image.fromarray(image).save(inputs / "x.png")
    assert main(["predict", "--model", str(folder), "--input", str(inputs), "--output", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "x.png").is_file()


def test_a_folder_whose_config_does_not_match_its_weights_is_refused(folder, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    config = json.loads((bad / "config.json").read_text())
    config["experiment"]["model"]["backbone"] = "res2net50_26w_4s"  # other widths than the weights
    config["backbone"] = "res2net50_26w_4s"  # the metadata edited to agree
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(SegkitError, match="do not match model.safetensors.*of another shape"):
        segkit.load_model(bad)
    from PIL import Image

    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "x.png")
    assert (
        main(["predict", "--model", str(bad), "--input", str(tmp_path / "x.png"), "--output", str(tmp_path / "o")]) == 2
    )
    assert "do not match" in capsys.readouterr().err


def test_metadata_that_disagrees_with_the_experiment_config_is_refused(folder, tmp_path):
    """config.json's top-level facts are derived from the nested experiment config and checked against it: an edit
    of one without the other is refused, naming the key and the file; so is an unknown backbone inside it."""
    import shutil

    edits = (
        ("backbone", "res2net50_26w_4s", "\"backbone\" is 'res2net50_26w_4s' but the experiment config"),
        ("task", "saliency", "\"task\" is 'saliency' but the experiment config"),
        ("num_classes", 99, "5 class_names for a network of 99 classes"),  # the classes are the folder's own fact
    )
    for key, value, message in edits:
        bad = tmp_path / key
        shutil.copytree(folder, bad)
        config = json.loads((bad / "config.json").read_text())
        config[key] = value
        (bad / "config.json").write_text(json.dumps(config))
        with pytest.raises(SegkitError, match=f"{key}/config.json': {message}"):
            segkit.load_model(bad)
    bad = tmp_path / "unknown"
    shutil.copytree(folder, bad)
    config = json.loads((bad / "config.json").read_text())
    config["experiment"]["model"]["backbone"] = "res2net50_99w"
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(SegkitError, match=r"unknown\'?/config.json'.*backbone|config.json'.*res2net50_99w"):
        segkit.load_model(bad)


def test_every_file_of_a_folder_is_readable_by_all(folder):
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in folder.iterdir()} == {
        "README.md": "0o644", "config.json": "0o644", "model.safetensors": "0o644"
    }  # fmt: skip


def test_export_refuses_a_folder_that_is_not_empty(run_dir, tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    code = main(["export", "--checkpoint", str(run_dir / "best.pt"), "--format", "folder", "--output", str(tmp_path)])
    assert code == 2 and "not an empty folder" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_hf_offline_fails_in_one_clear_line(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import; the test stays offline
    with pytest.raises(SegkitError, match="could not download 'hf://nobody/no-such-model' from the Hugging Face") as e:
        segkit.load_model("hf://nobody/no-such-model")
    assert "\n" not in str(e.value)
