"""segkit eval --pred/--gt on folders the tests write."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from segkit.cli import main
from segkit.evaluation.folders import evaluate_folders, pair_by_stem
from segkit.metrics import SaliencyMetrics, SegmentationMetrics


def test_reference_folder_via_cli_matches_reference_json(tmp_path, capsys, sod_reference):
    REF = sod_reference / "ecssd-pascals-soc"
    out = tmp_path / "scores.json"
    assert (
        main(
            [
                "eval",
                "--task",
                "saliency",
                "--pred",
                str(REF / "pred"),
                "--gt",
                str(REF / "gt"),
                "--json",
                str(out),
                "--workers",
                "1",
            ]
        )
        == 0
    )
    got = json.loads(out.read_text())
    ref = json.loads((REF.parent / "REFERENCE.json").read_text())["ecssd-pascals-soc"]["pysodmetrics_1_6"]
    for k, v in ref.items():
        assert abs(got[k] - v) <= 1e-6, k
    assert set(got) >= {
        "mae",
        "sm",
        "wfm",
        "adp_fm",
        "mean_fm",
        "max_fm",
        "adp_em",
        "mean_em",
        "max_em",
        "boundary_iou",
    }
    assert "max_fm" in capsys.readouterr().out


def _write_sal(folder: Path, stems, rng, suffix="", size=(48, 64)):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for s in stems:
        a = (rng.random(size) * 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{s}{suffix}.png"), a)
        arrays[s] = a
    return arrays


def test_suffix_pairing_missing_listed_and_parallel_equals_serial(tmp_path, capsys):
    rng = np.random.default_rng(0)
    stems = [f"img {i:03d}" for i in range(40)] + ["ünïcode"]  # spaces and non-ASCII names
    gts = _write_sal(tmp_path / "gt", stems, rng)
    preds = _write_sal(tmp_path / "pred", stems[:-3], rng, suffix="_sal_fuse")
    (tmp_path / "pred" / "notes.txt").write_text("not an image")
    pairing = pair_by_stem(tmp_path / "pred", tmp_path / "gt")
    assert len(pairing.pairs) == len(stems) - 3
    assert sorted(pairing.missing) == sorted(stems[-3:])
    serial = evaluate_folders("saliency", tmp_path / "pred", tmp_path / "gt", workers=1)
    parallel = evaluate_folders("saliency", tmp_path / "pred", tmp_path / "gt", workers=2)
    direct = SaliencyMetrics()
    for s in stems[:-3]:
        direct.update(preds[s], gts[s])
    want = direct.compute()
    for k in ("mae", "sm", "wfm", "max_fm", "mean_em"):
        assert getattr(serial.scores, k) == pytest.approx(getattr(want, k), abs=1e-12)
        assert getattr(parallel.scores, k) == pytest.approx(getattr(want, k), abs=1e-9)
    cv2.imwrite(str(tmp_path / "pred" / "stray.png"), np.zeros((8, 8), np.uint8))  # no ground truth has this
    args = ["eval", "--task", "saliency", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]
    assert main(args) == 1, "a ground truth without a prediction: the command could not do all it was asked"
    out, err = capsys.readouterr()
    assert "3 ground-truth files have no prediction" in err and "ünïcode" in err
    assert "1 predictions have no ground truth and were not scored: stray.png" in err
    assert "38 of 41 ground truths scored" in err and "--allow-missing" in err and "pred*" in out
    assert main([*args, "--allow-missing"]) == 0
    out, err = capsys.readouterr()
    assert "pred*" in out and "38 of 41 ground truths scored" in err, "the partial row stays marked"


def test_size_mismatch_resized_and_said_or_strict_error(tmp_path, capsys):
    rng = np.random.default_rng(1)
    _write_sal(tmp_path / "gt", ["a", "b"], rng, size=(40, 40))
    _write_sal(tmp_path / "pred", ["a"], rng, size=(40, 40))
    _write_sal(tmp_path / "pred", ["b"], rng, size=(20, 30))
    res = evaluate_folders("saliency", tmp_path / "pred", tmp_path / "gt", workers=1)
    assert len(res.resized) == 1 and res.count == 2
    strict = evaluate_folders("saliency", tmp_path / "pred", tmp_path / "gt", strict_size=True, workers=1)
    assert strict.count == 1 and "size 30x20 differs from its ground truth's 40x40" in strict.bad[0]["problem"]
    main(["eval", "--task", "saliency", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")])
    err = capsys.readouterr().err
    assert "were resized" in err and f"{tmp_path / 'pred' / 'b.png'} (30x20 -> 40x40)" in err, "names the file"


def test_corrupt_prediction_is_listed_not_fatal(tmp_path, capsys):
    rng = np.random.default_rng(2)
    _write_sal(tmp_path / "gt", ["a", "b"], rng)
    _write_sal(tmp_path / "pred", ["a"], rng)
    (tmp_path / "pred" / "b.png").write_bytes(b"")
    assert main(["eval", "--task", "saliency", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]) == 1
    captured = capsys.readouterr()
    assert "b.png: is empty" in captured.err and "could not be scored" in captured.err
    assert captured.out.splitlines()[1].split()[-1] == "1"  # the table's n column: one image scored


def test_pairing_exact_stem_then_documented_suffixes_only(tmp_path, capsys):
    rng = np.random.default_rng(5)
    _write_sal(tmp_path / "gt", ["cat", "dog", "0000", "bird"], rng)
    _write_sal(tmp_path / "pred", ["cat_2", "dog_sal_fuse", "bird", "bird_pred"], rng)
    _write_sal(tmp_path / "pred", ["0000"], rng)
    cv2.imwrite(str(tmp_path / "pred" / "0000.jpg"), np.zeros((48, 64), np.uint8))  # one stem, two formats
    pairing = pair_by_stem(tmp_path / "pred", tmp_path / "gt")
    pairs = {gt.stem: pred.name for pred, gt in pairing.pairs}
    assert pairs == {"dog": "dog_sal_fuse.png", "0000": "0000.png", "bird": "bird.png"}
    assert pairing.missing == ["cat"]  # cat_2.png is another image, not cat's prediction
    assert any("0000" in n and "ignored 0000.jpg" in n for n in pairing.notes)
    assert any("bird has several predictions" in n for n in pairing.notes)
    assert len({pred for pred, _ in pairing.pairs}) == len(pairing.pairs)  # never one file for two
    assert main(["eval", "--task", "saliency", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]) == 1
    err = capsys.readouterr().err
    assert "1 ground-truth files have no prediction: cat" in err and "2 formats" in err
    assert "2 predictions have no ground truth and were not scored: bird_pred.png, cat_2.png" in err
    assert pairing.extra == ["bird_pred.png", "cat_2.png"]


def test_missing_folder_and_no_matches_are_clear_errors(tmp_path, capsys):
    assert main(["eval", "--task", "saliency", "--pred", str(tmp_path / "x"), "--gt", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    rng = np.random.default_rng(3)
    _write_sal(tmp_path / "gt", ["a"], rng)
    _write_sal(tmp_path / "pred", ["zzz"], rng)
    assert main(["eval", "--task", "saliency", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]) == 2
    assert "matches" in capsys.readouterr().err


def _palette_png(path: Path, labels: np.ndarray) -> None:
    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    im.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 13) % 256)])
    im.save(path)


def test_segmentation_folders_read_palette_indices(tmp_path):
    rng = np.random.default_rng(4)
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    direct = SegmentationMetrics(4)
    for i in range(3):
        g = rng.choice([0, 1, 2, 255], size=(32, 32)).astype(np.uint8)
        p = rng.integers(0, 4, size=(32, 32)).astype(np.uint8)
        _palette_png(tmp_path / "gt" / f"{i}.png", g)
        _palette_png(tmp_path / "pred" / f"{i}.png", p)
        direct.update(p, g)
    out = tmp_path / "s.json"
    assert (
        main(
            [
                "eval",
                "--task",
                "segmentation",
                "--pred",
                str(tmp_path / "pred"),
                "--gt",
                str(tmp_path / "gt"),
                "--num-classes",
                "4",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    got = json.loads(out.read_text())
    want = direct.compute()
    assert set(got) >= {"miou", "aacc", "macc", "fwiou", "mdice", "per_class_iou", "boundary_iou"}
    assert got["miou"] == pytest.approx(want.miou) and got["boundary_iou"] == pytest.approx(want.boundary_iou)


def test_segmentation_needs_num_classes(tmp_path, capsys):
    assert main(["eval", "--task", "segmentation", "--pred", str(tmp_path), "--gt", str(tmp_path)]) == 2
    assert "--num-classes" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["md", "csv", "latex"])
def test_table_formats_and_curves_with_two_methods(tmp_path, capsys, fmt):
    rng = np.random.default_rng(7)
    _write_sal(tmp_path / "ref" / "gt", ["a", "b", "c"], rng)
    _write_sal(tmp_path / "ref" / "pred", ["a", "b", "c"], rng)
    curves = tmp_path / "curves.png"
    assert (
        main(
            [
                "eval",
                "--task",
                "saliency",
                "--pred",
                f"A={tmp_path / 'ref' / 'pred'}",
                "--pred",
                f"B={tmp_path / 'ref' / 'gt'}",
                "--gt",
                str(tmp_path / "ref" / "gt"),
                "--format",
                fmt,
                "--curves",
                str(curves),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert {"md": "| A |", "csv": "A,", "latex": r"\toprule"}[fmt] in out and "B" in out
    assert curves.stat().st_size > 1000


def test_scoring_saved_maps_loads_no_torch_and_keeps_freed_memory():
    """``segkit eval`` on saved maps forks its workers cheaply only while torch is not loaded (folders._pool_context),
    so the scoring modules, the allocator setting among them, must not import it."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, segkit.evaluation.folders, segkit.accel.memory as m\n"
        "print('torch' in sys.modules, m.keep_freed_memory())\n"
    )
    env = {**os.environ, "SEGKIT_KEEP_FREED_MEMORY": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["False", str(sys.platform == "linux")]
    env["SEGKIT_KEEP_FREED_MEMORY"] = "0"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["False", "False"], "the variable turns it off"


def test_read_ahead_hint_is_harmless_for_missing_unreadable_and_real_files(tmp_path):
    """``will_read`` only advises the operating system: a missing path or a folder in the list raises nothing, and
    the files read afterwards are what was written."""
    from segkit.data.io import read_gray, will_read

    image = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    will_read([tmp_path / "a.png", tmp_path / "missing.png", tmp_path])
    assert np.array_equal(read_gray(tmp_path / "a.png"), image)


def test_scoring_a_table_of_saved_maps_never_imports_scipy(tmp_path):
    """SciPy's import (0.2 s, a twentieth of a 3 x 3 x 300 table) is only for ground truths with distances beyond
    1000 px: scoring ordinary maps, table command included, leaves it unloaded."""
    import subprocess
    import sys

    rng = np.random.default_rng(4)
    for name in ("ECSSD", "HKU-IS"):
        (tmp_path / "data" / name / "images").mkdir(parents=True)
        _write_sal(tmp_path / "data" / name / "masks", ["a", "b", "c"], rng)
        _write_sal(tmp_path / "maps" / name, ["a", "b", "c"], rng)
    code = (
        "import sys\nfrom segkit.cli import main\n"
        f"rc = main(['eval', '--task', 'saliency', '--data', {str(tmp_path / 'data')!r}, '--pred', "
        f"{str(tmp_path / 'maps')!r}, '--workers', '1'])\n"
        "print(rc, 'scipy' in sys.modules, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[-3:] == ["0", "False", "False"], out


def test_files_are_asked_for_ahead_in_a_window_each_once(tmp_path, monkeypatch):
    """Each file of a chunk is asked for ahead exactly once, before it is read, and never more than
    ``READ_AHEAD`` ground truths' files ahead of the one being scored (a chunk of large files cannot flood the
    page cache)."""
    from segkit.evaluation import folders

    rng = np.random.default_rng(5)
    stems = [f"{i:03d}" for i in range(40)]
    _write_sal(tmp_path / "gt", stems, rng)
    _write_sal(tmp_path / "a", stems, rng)
    _write_sal(tmp_path / "b", stems, rng)
    plan = folders.plan_dataset("set", tmp_path / "gt", {"a": tmp_path / "a", "b": tmp_path / "b"})
    job = folders.Job("saliency", folders._items_by_gt(plan), ("a", "b"))
    asked: list[Path] = []
    read: list[Path] = []
    monkeypatch.setattr(folders, "will_read", lambda paths: asked.extend(paths))
    task = folders.get_task("saliency")
    original = type(task).read_mask

    def reading(self, path):
        assert Path(path) in asked, f"{path} read before it was asked for"
        read.append(Path(path))
        ahead = {p.stem for p in asked} - {p.stem for p in read}
        assert len(ahead) <= folders.READ_AHEAD + 1, "asked for more than the window"
        return original(self, path)

    monkeypatch.setattr(type(task), "read_mask", reading)
    _, out = folders._score_chunk(job)
    assert sorted(asked) == sorted(read) and len(asked) == 3 * 40 == len(set(asked))
    assert out["a"].metrics.count == out["b"].metrics.count == 40
