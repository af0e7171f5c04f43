"""Choices made by measuring are made once per machine and kept: the same input gives the same output."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import segkit.accel.decisions as decisions
from tests.test_precision import TINY


def test_a_measurement_is_made_once_per_machine_and_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("SEGKIT_REMEASURE", raising=False)
    calls = []

    def measure():
        calls.append(1)
        return 1.5 + len(calls)  # every new measurement comes out differently

    assert decisions.measured("probe", measure)[0] == 2.5
    value, how = decisions.measured("probe", measure)
    assert value == 2.5 and len(calls) == 1 and f"kept in {tmp_path / 'decisions.json'}" in how
    monkeypatch.setenv("SEGKIT_REMEASURE", "1")
    assert decisions.measured("probe", measure)[0] == 3.5, "measured again on request, and kept"
    monkeypatch.delenv("SEGKIT_REMEASURE")
    assert decisions.measured("probe", measure)[0] == 3.5
    other = {**decisions.machine(), "cpu": "another CPU"}
    monkeypatch.setattr(decisions, "machine", lambda: other)
    assert decisions.measured("probe", measure)[0] == 4.5, "another machine measures for itself"
    (tmp_path / "decisions.json").write_text("{not json")
    assert decisions.measured("probe", measure)[0] == 5.5, "a damaged cache is measured anew"
    assert json.loads((tmp_path / "decisions.json").read_text())  # and replaced


def test_auto_precision_can_be_set_by_the_environment(monkeypatch):
    from segkit.accel.hardware import bf16_supported, resolve_precision
    from segkit.errors import SegkitError

    monkeypatch.setenv("SEGKIT_AUTO_PRECISION", "fp32")
    assert resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setenv("SEGKIT_AUTO_PRECISION", "bf16")
    if bf16_supported("cpu"):
        assert resolve_precision("auto", "cpu") == "bf16"
    else:
        with pytest.raises(SegkitError, match="no native bf16"):
            resolve_precision("auto", "cpu")
    monkeypatch.setenv("SEGKIT_AUTO_PRECISION", "fast")
    with pytest.raises(SegkitError, match="SEGKIT_AUTO_PRECISION must be fp32 or bf16"):
        resolve_precision("auto", "cpu")


@pytest.fixture(scope="module")
def tiny_run(module_tmp):
    from segkit.config import load_config
    from segkit.training.train import train

    out = module_tmp
    return train(load_config(None, ["task=segmentation", f"out_dir={out}", "name=t", "schedule.max_steps=1",
                                    *TINY])).run_dir  # fmt: skip


def test_predict_gives_the_same_bytes_run_after_run_on_a_busy_machine(tiny_run, tmp_path):
    """Three `segkit predict` runs with default settings, while another process keeps a core busy, write the same
    PNGs byte for byte; the checkpoint records the precision it was trained in."""
    from segkit.inference.checkpoint import read_checkpoint

    assert read_checkpoint(tiny_run / "best.pt")["trained_precision"] in ("fp32", "bf16")
    images = tmp_path / "photos"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i, size in enumerate([(70, 90), (64, 64), (50, 120)]):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(images / f"{i}.png")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        outputs = []
        for run in range(3):
            out = tmp_path / f"out{run}"
            cmd = [sys.executable, "-m", "segkit", "predict", "--checkpoint", str(tiny_run / "best.pt"), "--input",
                   str(images), "--output", str(out)]  # fmt: skip
            res = subprocess.run(cmd, capture_output=True, text=True)
            assert res.returncode == 0, res.stderr[-2000:]
            outputs.append({p.name: p.read_bytes() for p in sorted(out.glob("*.png"))})
    finally:
        busy.kill()
        busy.wait()
    assert len(outputs[0]) == 3 and outputs[0] == outputs[1] == outputs[2]
