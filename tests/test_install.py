"""segkit as a user installs it: a built wheel in a fresh environment, run from an empty folder."""

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert res.returncode == 0, f"{cmd}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.mark.slow
def test_wheel_install_trains_from_an_empty_folder(tmp_path):
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)])
    (wheel,) = wheels.glob("segkit-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # reuse this environment's installed dependencies (torch and the rest) instead of downloading them again
    (site / "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)])
    where = _run([str(python), "-c", "import segkit; print(segkit.__file__)"], cwd=tmp_path).stdout.strip()
    assert where.startswith(str(site)), f"segkit imported from {where}, not from the wheel"
    empty = tmp_path / "empty"
    empty.mkdir()
    sets = [
        "data.image_size=64", "data.workers=0", "model.backbone=res2net50_14w_8s", "model.decoder_channels=16",
        "eval.max_images=2", "data.batch_size=2",
    ]  # fmt: skip
    cmd = [str(venv / "bin" / "segkit"), "train", "--task", "saliency", "--max-steps", "2"]
    res = _run([*cmd, *sum((["--set", s] for s in sets), [])], cwd=empty)
    assert "finished: max_fm" in res.stdout
    (run,) = (empty / "runs").iterdir()
    assert (run / "best.pt").is_file() and (run / "last.pt").is_file()
    config = (run / "config.yaml").read_text()
    assert "warmup_steps: 15" in config  # the packaged demo_saliency.yaml was used
    # the next commands are spelled the way this shell can run them: segkit is not on PATH, its path is
    assert "\n  ../venv/bin/segkit eval --checkpoint " in res.stdout, res.stdout[-800:]


def test_packaged_configs_are_the_repository_configs():
    """configs/ at the top of the repository is the packaged segkit/configs (a link), not a second copy."""
    top, packaged = ROOT / "configs", ROOT / "segkit" / "configs"
    assert top.resolve() == packaged.resolve()
    names = sorted(p.name for p in packaged.glob("*.yaml"))
    assert "demo_saliency.yaml" in names and "demo_segmentation.yaml" in names
    from segkit.config import default_config_path

    assert default_config_path("saliency").read_text() == (top / "demo_saliency.yaml").read_text()


def test_export_without_onnx_says_what_to_install(tmp_path, monkeypatch, capsys):
    from segkit.cli import main

    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    assert main(["export", "--checkpoint", str(tmp_path / "x.pt"), "--output", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'segkit[onnx]'" in err and len(err.strip().splitlines()) == 1
