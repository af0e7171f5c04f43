"""Train -> checkpoints -> eval -> predict -> export -> ONNX predict, exact resume, faults, config errors."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import segkit
from segkit.cli import main
from segkit.config import load_config
from segkit.errors import SegkitError
from segkit.inference.checkpoint import read_checkpoint
from segkit.training.distributed import DistInfo
from segkit.training.train import batches, build_run, save, train, train_one_step

TINY = [
    "data.image_size=64", "data.batch_size=2", "data.workers=0", "schedule.max_steps=4", "eval.max_images=4",
    "model.backbone=res2net50_14w_8s", "model.decoder_channels=32", "eval.checkpoint_interval_steps=2",
]  # fmt: skip


def tiny(task, tmp_path, *extra):
    return load_config(None, [f"task={task}", f"out_dir={tmp_path}", *TINY, *extra])


@pytest.mark.slow
@pytest.mark.parametrize("task", ["saliency", "segmentation"])
def test_end_to_end(tmp_path, task, capsys):
    run_dir = tmp_path / "run"
    sets = sum((["--set", s] for s in TINY), [])
    assert main(["train", "--task", task, "--out", str(run_dir), *sets]) == 0
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.csv", "train.log"):
        assert (run_dir / name).is_file(), name
    assert "next:" in capsys.readouterr().out
    ckpt = read_checkpoint(run_dir / "last.pt")
    assert ckpt["step"] == 4 and ckpt["task"] == task
    scores = tmp_path / "scores.json"
    assert main(["eval", "--checkpoint", str(run_dir / "best.pt"), "--json", str(scores)]) == 0
    keys = {"saliency": {"mae", "sm", "max_fm", "boundary_iou"}, "segmentation": {"miou", "per_class_iou"}}[task]
    assert keys <= set(json.loads(scores.read_text()))
    if task == "segmentation":  # the per-class table names the built-in classes
        assert "astronaut" in capsys.readouterr().out
        # --data without --split: the model is read once, and its task (not saliency) means one split
        args = ["eval", "--checkpoint", str(run_dir / "best.pt"), "--data", str(tmp_path / "nowhere")]
        assert main([*args, "--save-preds", str(tmp_path / "maps")]) == 2
        assert "--save-preds does not apply to a segmentation model" in capsys.readouterr().err
        assert main(args) == 2 and "nowhere" in capsys.readouterr().err  # the split's data is looked for
    # inputs: two built-in validation images of odd sizes
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, (h, w) in enumerate([(70, 90), (100, 64)]):
        img = np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8)
        cv2.imwrite(str(inputs / f"im {i}.jpg"), img)
    out = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(run_dir / "best.pt"),
                "--input",
                str(inputs),
                "--output",
                str(out),
                "--overlay",
                "--probs",
            ]
        )
        == 0
    )
    from segkit.data.io import read_gray, read_label

    mask = (read_gray if task == "saliency" else read_label)(out / "im 0.png")  # palette indices for segmentation
    assert mask.shape == (70, 90)
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(run_dir / "best.pt"), "--output", str(onnx_path)]) == 0
    assert "max abs difference" in capsys.readouterr().out
    out_onnx = tmp_path / "pred_onnx"
    assert (
        main(["predict", "--model", str(onnx_path), "--input", str(inputs / "*.jpg"), "--output", str(out_onnx)]) == 0
    )
    image = cv2.imread(str(inputs / "im 1.jpg"))[..., ::-1].copy()
    torch_pred = segkit.Predictor(run_dir / "best.pt", precision="fp32").predict_probs(image)  # ONNX runs fp32
    onnx_pred = segkit.Predictor(onnx_path).predict_probs(image)
    assert np.abs(torch_pred - onnx_pred).max() < 1e-3
    model = segkit.load_model(run_dir / "best.pt")
    assert model.task == task


def test_exact_resume_equals_straight_run(tmp_path):
    straight = train(tiny("saliency", tmp_path, "name=straight"))
    cfg = tiny("saliency", tmp_path, "name=stopped")
    out = tmp_path / "stopped"
    out.mkdir()
    from segkit.config import save_config

    save_config(cfg, out / "config.yaml")
    run = build_run(cfg, out, DistInfo())
    stream = batches(run)
    for _ in range(2):
        train_one_step(run, stream)
    save(run, "last.pt")
    resumed = train(cfg, out, resume_run=True)
    a = read_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    b = read_checkpoint(out / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the straight run"
    assert resumed.scores.max_fm == straight.scores.max_fm


@pytest.mark.slow
def test_sigkill_then_resume(tmp_path):
    out = tmp_path / "run"
    sets = sum((["--set", s] for s in TINY), [])
    steps = ["--set", "schedule.max_steps=10", "--set", "eval.checkpoint_interval_steps=1"]
    cmd = [sys.executable, "-m", "segkit", "train", "--task", "saliency", "--out", str(out), *sets, *steps]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "last.pt").exists():
        time.sleep(0.1)
    time.sleep(0.7)  # checkpoints are being written every step: kill in the middle of that
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = read_checkpoint(out / "last.pt")["step"]  # readable: replaced atomically, never torn
    assert 1 <= killed_at < 10
    assert main(["train", "--task", "saliency", "--out", str(out), "--resume"]) == 0
    assert read_checkpoint(out / "last.pt")["step"] == 10


@pytest.mark.slow
def test_ddp_two_processes_gloo(tmp_path):
    script = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29533",
            str(script),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(w0[k], w1[k]) for k in w0), "ranks ended with different weights"
    reduced = json.loads((tmp_path / "eval_ddp.json").read_text())
    single = json.loads((tmp_path / "eval_single.json").read_text())
    for k in ("mae", "sm", "max_fm", "mean_em"):
        assert reduced[k] == pytest.approx(single[k], abs=1e-9), k


def test_predict_corrupt_input_and_overwrite_refusal(tmp_path, capsys):
    cfg = tiny("saliency", tmp_path, "name=p", "schedule.max_steps=1")
    train(cfg)
    ckpt = tmp_path / "p" / "last.pt"
    inputs = tmp_path / "in"
    inputs.mkdir()
    cv2.imwrite(str(inputs / "good.png"), np.zeros((40, 30, 3), np.uint8))
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(ckpt), "--input", str(inputs), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err and (out / "good.png").is_file()
    before = (out / "good.png").read_bytes()
    assert main(["predict", "--checkpoint", str(ckpt), "--input", str(inputs / "good.png"), "--output", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "good.png").read_bytes() == before


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {Path('/tmp/segkit_engine_pwned')}",))


def test_pickled_checkpoint_is_refused(tmp_path, capsys):
    marker = Path("/tmp/segkit_engine_pwned")
    marker.unlink(missing_ok=True)
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"model": {}, "config": {}, "x": Payload()}, f)
    assert main(["eval", "--checkpoint", str(evil)]) == 2
    err = capsys.readouterr().err
    assert "refused" in err or "could not be read" in err
    assert "Traceback" not in err and not marker.exists()
    with pytest.raises(SegkitError):
        segkit.load_model(evil)


@pytest.mark.parametrize(
    "override,message",
    [
        ("optim.lrr=0.1", "did you mean 'optim.lr'"),
        ("optim.lr=fast", "'optim.lr' must be float"),
        ("schedule.policy=linear", "schedule.policy"),
        ("data.image_size=100", "multiple of 16"),
        ("bogus=1", "unknown config key 'bogus'"),
    ],
)
def test_config_errors_name_the_key(override, message, capsys):
    code = main(["train", "--task", "segmentation", "--set", override])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_yaml_and_missing_config(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed\n")
    assert main(["train", "--task", "saliency", "--config", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["train", "--task", "saliency", "--config", str(tmp_path / "none.yaml")]) == 2


def test_nan_loss_stops_with_message_and_keeps_checkpoint(tmp_path):
    cfg = tiny(
        "saliency", tmp_path, "name=nan", "optim.lr=1.0e+30", "schedule.max_steps=50", "optim.name=sgd", "amp=false"
    )
    with pytest.raises(SegkitError, match="loss became"):
        train(cfg)


def test_bad_training_sample_is_a_clear_error(tmp_path):
    from segkit.data.builtin import BuiltinSpec
    from segkit.tasks import get_task

    get_task("saliency").make_demo(tmp_path / "d", BuiltinSpec(train_count=4, val_count=2))
    victim = sorted((tmp_path / "d" / "DUTS-TR" / "DUTS-TR-Image").iterdir())[0]
    victim.write_bytes(b"")
    cfg = tiny("saliency", tmp_path, "name=bad", f"data.root={tmp_path / 'd'}")
    with pytest.raises(SegkitError, match=r"(?s)1 of the 6 training and validation pairs cannot be used.*is empty"):
        train(cfg)  # found by the pre-flight, before step 1


def test_float_keys_read_numbers_as_people_write_them(tmp_path):
    """PyYAML (YAML 1.1) reads 1e-4 as a string; the published recipes' learning rates are written so."""
    from segkit.config import load_config
    from segkit.errors import SegkitError

    assert load_config(None, ["optim.lr=1e-4", "optim.weight_decay=5E-4"]).optim.lr == 1e-4
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim:\n  lr: 5e-5\n  weight_decay: 1E3\n")
    cfg = load_config(recipe)
    assert (cfg.optim.lr, cfg.optim.weight_decay) == (5e-5, 1000.0)
    with pytest.raises(SegkitError, match="optim.lr' must be float"):
        load_config(None, ["optim.lr=fast"])
    with pytest.raises(SegkitError, match="data.batch_size' must be int"):
        load_config(None, ["data.batch_size=1e2"])  # an int key takes no float notation
