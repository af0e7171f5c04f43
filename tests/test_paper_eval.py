"""Evaluation as papers report it: methods x datasets in one command, checked cell by cell against single-pair
`segkit eval` runs and PySODMetrics, the LaTeX marks, the curve data, the metric card, --save-preds, bad input."""

import json
import re

import cv2
import numpy as np
import pytest
from test_metrics_saliency import KEYS, assert_close, oracle

from segkit.cli import main

# Three test sets in their distributed layouts, plus a training set that must be skipped.
LAYOUTS = {
    "ECSSD": ("images", "ground_truth_mask"),
    "HKU-IS": ("imgs", "gt"),
    "PASCAL-S": ("Imgs", "GT"),
    "DUTS-TR": ("DUTS-TR-Image", "DUTS-TR-Mask"),
}
# Three methods of distinct quality (blur); C lacks HKU-IS. A's maps for PASCAL-S are saved at half size.
METHODS = {"A": 2.0, "B": 6.0, "C": 12.0}


def write_layout(root, n=4, seed=0):
    rng = np.random.default_rng(seed)
    data, preds = root / "data", root / "preds"
    for ds, (img_dir, gt_dir) in LAYOUTS.items():
        (data / ds / img_dir).mkdir(parents=True)
        (data / ds / gt_dir).mkdir(parents=True)
        for i in range(n):
            h, w = 48 + 8 * i, 64
            gt = np.zeros((h, w), np.uint8)
            cv2.ellipse(gt, (int(rng.integers(20, 44)), h // 2), (int(rng.integers(8, 18)), 12), 0, 0, 360, 255, -1)
            if ds == "PASCAL-S":
                gt[gt > 0] = rng.choice([100, 200, 255])  # grey levels, binarised at > 128
            stem = f"{ds.lower()}_{i}"
            cv2.imwrite(str(data / ds / img_dir / f"{stem}.jpg"), np.full((h, w, 3), 90, np.uint8))
            cv2.imwrite(str(data / ds / gt_dir / f"{stem}.png"), gt)
            for method, blur in METHODS.items():
                if method == "C" and ds == "HKU-IS":
                    continue
                pred = cv2.GaussianBlur((gt > 128).astype(np.float32) * 255, (0, 0), blur)
                pred = np.clip(pred + rng.normal(0, 8, gt.shape), 0, 255).astype(np.uint8)
                if method == "A" and ds == "PASCAL-S":
                    pred = cv2.resize(pred, (w // 2, h // 2))
                folder = preds / method / ds
                folder.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(folder / f"{stem}.png"), pred)
    (preds / "A" / "NotADataset").mkdir()
    return data, preds


def pred_args(preds):
    return [arg for m in METHODS for arg in ("--pred", f"{m}={preds / m}")]


@pytest.fixture(scope="module")
def scored(module_tmp):
    root = module_tmp
    data, preds = write_layout(root)
    out = root / "all.json"
    args = ["eval", "--task", "saliency", "--data", str(data), *pred_args(preds), "--json", str(out)]
    args += ["--curves-data", str(root / "curves.json")]
    assert main(args) == 0
    return root, data, preds, json.loads(out.read_text())


def test_every_cell_equals_its_single_pair_run_and_pysodmetrics(scored, tmp_path):
    root, data, preds, result = scored
    assert list(result["datasets"]) == ["ECSSD", "HKU-IS", "PASCAL-S"]  # the papers' order; DUTS-TR skipped
    assert result["datasets"]["HKU-IS"]["C"] is None  # C has no HKU-IS maps: an empty cell
    for ds, (_, gt_dir) in LAYOUTS.items():
        if ds == "DUTS-TR":
            continue
        for method in METHODS:
            cell = result["datasets"][ds][method]
            if method == "C" and ds == "HKU-IS":
                continue
            single = tmp_path / f"{ds}-{method}.json"
            gt = data / ds / gt_dir
            args = ["eval", "--task", "saliency", "--pred", str(preds / method / ds), "--gt", str(gt)]
            assert main([*args, "--json", str(single)]) == 0
            alone = json.loads(single.read_text())
            assert list(alone["metric_card"]["datasets"]) == [ds]  # the mask folder named after its dataset
            for key in KEYS:  # identical: the same sums in the same order, every step deterministic
                assert cell[key] == alone[key], (ds, method, key)
            pairs = []
            for p in sorted(gt.glob("*.png")):
                pred = cv2.imread(str(preds / method / ds / p.name), cv2.IMREAD_GRAYSCALE)
                truth = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
                pairs.append((cv2.resize(pred, truth.shape[::-1]) if pred.shape != truth.shape else pred, truth))
            assert_close(cell, oracle(pairs), tol=1e-9)


def test_json_carries_the_metric_card_and_card_prints_it(scored, capsys):
    root, data, preds, result = scored
    card = result["metric_card"]
    assert card["format"] == "segkit-metric-card/1" and card["task"] == "saliency"
    assert "> 128" in card["ground_truth"] and "beta^2 = 0.3" in card["f_measure"] and ">=" in card["thresholds"]
    assert "bilinear" in card["size_mismatch"]
    pascal = card["datasets"]["PASCAL-S"]
    assert pascal["ground_truths"] == 4 and len(pascal["methods"]["A"]["resized"]) == 4
    assert card["datasets"]["HKU-IS"]["methods"]["C"] is None
    capsys.readouterr()
    assert main(["eval", "--card", str(root / "all.json")]) == 0
    text = capsys.readouterr().out
    assert "PASCAL-S (4 ground truths)" in text and "A: 4, 0, 4, 0" in text and "C: no folder" in text
    assert main(["eval", "--card"]) == 0 and "thresholds" in capsys.readouterr().out
    assert main(["eval", "--card", str(root / "nothing.json")]) == 2


def test_latex_marks_best_and_second_with_each_metrics_direction(scored, capsys):
    root, data, preds, result = scored
    capsys.readouterr()
    args = ["eval", "--task", "saliency", "--data", str(data), *pred_args(preds), "--format", "latex"]
    assert main([*args, "--metrics", "max_fm,mae,sm"]) == 0
    tex = capsys.readouterr().out
    assert r"\multicolumn{3}{c}{ECSSD}" in tex and r"\toprule" in tex and r"\cmidrule(lr){2-4}" in tex
    rows = {
        line.split(" & ")[0]: line.removesuffix(r" \\").split(" & ")[1:]
        for line in tex.splitlines()
        if line[:2] in ("A ", "B ", "C ")
    }
    columns = [(ds, m) for ds in ("ECSSD", "HKU-IS", "PASCAL-S") for m in ("max_fm", "mae", "sm")]
    for j, (ds, metric) in enumerate(columns):
        values = {m: result["datasets"][ds][m] and round(result["datasets"][ds][m][metric], 3) for m in METHODS}
        present = sorted({v for v in values.values() if v is not None}, reverse=metric != "mae")
        for method, v in values.items():
            cell = rows[method][j]
            if v is None:
                assert cell == "-"
            elif v == present[0]:
                assert cell == rf"\textbf{{{v:.3f}}}", (ds, metric, method)
            elif v == present[1]:
                assert cell == rf"\underline{{{v:.3f}}}", (ds, metric, method)
            else:
                assert cell == f"{v:.3f}"
    # the lowest MAE is the bold one: A (least blur) has the lowest MAE and the highest max F on ECSSD
    assert rows["A"][0].startswith(r"\textbf") and rows["A"][1].startswith(r"\textbf")
    assert rows["C"][1] == f"{round(result['datasets']['ECSSD']['C']['mae'], 3):.3f}"  # worst MAE: unmarked


def test_curve_data_replots_the_tables_maxima(scored, tmp_path):
    root, data, preds, result = scored
    from segkit.evaluation.curves import read_curves_data

    npz = tmp_path / "curves.npz"
    args = ["eval", "--task", "saliency", "--data", str(data), *pred_args(preds), "--curves-data", str(npz)]
    assert main([*args, "--curves", str(tmp_path / "figs")]) == 0
    for path in (root / "curves.json", npz):
        curves = read_curves_data(path)
        for ds, methods in result["datasets"].items():
            for method, cell in methods.items():
                if cell is None:
                    assert method not in curves[ds]
                    continue
                c = curves[ds][method]
                assert float(np.max(c["fmeasure"])) == cell["max_fm"] and float(
                    np.mean(c["fmeasure"])
                ) == pytest.approx(cell["mean_fm"], abs=1e-15)
                assert c["precision"].shape == c["recall"].shape == (256,) and c["count"] == cell["count"]
    figures = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert figures == [f"{ds}.{ext}" for ds in ("ECSSD", "HKU-IS", "PASCAL-S") for ext in ("pdf", "png")]


def test_bad_inputs_are_said_and_exit_only_when_nothing_was_scored(tmp_path, capsys):
    data, preds = write_layout(tmp_path, n=2)
    base = ["eval", "--task", "saliency", "--data", str(data)]
    # a method missing a dataset and a folder named after none: said, exit 0
    assert main([*base, *pred_args(preds)]) == 0
    err = capsys.readouterr().err
    assert "HKU-IS: no maps from C" in err and "NotADataset" in err and "skipped training set(s): DUTS-TR" in err
    # a test set whose ground-truth folder holds no image: skipped with a line, the others scored
    for p in (data / "HKU-IS" / "gt").iterdir():
        p.unlink()
    assert main([*base, *pred_args(preds)]) == 0
    assert "HKU-IS" in capsys.readouterr().err
    # --strict-size: A's half-size PASCAL-S maps are errors, listed, exit 1
    assert main([*base, *pred_args(preds), "--strict-size"]) == 1
    assert "differs from its ground truth's" in capsys.readouterr().err
    # nothing scored: exit 1 with a reason
    empty = tmp_path / "empty"
    (empty / "ECSSD").mkdir(parents=True)
    assert main([*base, "--pred", f"E={empty}"]) == 1
    assert "nothing could be scored" in capsys.readouterr().err
    # duplicate names, --gt with --data, an unknown metric: usage errors naming the flag
    assert main([*base, "--pred", f"A={preds / 'A'}", "--pred", f"A={preds / 'B'}"]) == 2
    assert "given twice" in capsys.readouterr().err
    assert main([*base, *pred_args(preds), "--gt", str(data)]) == 2
    assert "--gt" in capsys.readouterr().err
    assert main([*base, *pred_args(preds), "--metrics", "max_fm,nope"]) == 2
    assert "'nope'" in capsys.readouterr().err
    assert main([*base, "--pred", f"X={tmp_path / 'missing'}"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_text_table_marks_and_markdown(scored, capsys):
    root, data, preds, result = scored
    capsys.readouterr()
    assert main(["eval", "--task", "saliency", "--data", str(data), *pred_args(preds), "--metrics", "MAE"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ECSSD", "HKU-IS", "PASCAL-S"] and lines[1].split()[0] == "method"
    a_row = lines[2].split()
    assert a_row[0] == "A" and a_row[1].endswith("*") and lines[-1].startswith("* best")
    c_row = lines[4].split()
    assert c_row[2] == "-"  # C on HKU-IS
    assert main(["eval", "--task", "saliency", "--data", str(data), *pred_args(preds), "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert re.search(r"\| A \| \*\*0\.\d{3}\*\* \|", md) and "<u>" in md


def test_render_worst_picks_the_failures(tmp_path, capsys):
    """One method: the K images where it scores worst; two: where they differ most; ranks from SaliencyMetrics
    run on each image alone."""
    from test_page import render_args, three_images

    from segkit.metrics import SaliencyMetrics

    three_images(tmp_path)

    def mae(method, name):
        m = SaliencyMetrics()
        read = lambda d: cv2.imread(str(tmp_path / d / f"{name}.png"), cv2.IMREAD_GRAYSCALE)  # noqa: E731
        m.update(read(method), read("gt"))
        return m.compute().mae

    names = ["im0", "im1", "im2"]
    args = ["render", "--task", "saliency", "--images", str(tmp_path / "img"), "--gt", str(tmp_path / "gt")]
    out = ["--output", str(tmp_path / "w.png"), "--html", str(tmp_path / "page")]
    assert main([*args, "--pred", f"A={tmp_path / 'a'}", *out, "--worst", "2", "--by", "MAE"]) == 0
    page = (tmp_path / "page" / "index.html").read_text()
    assert re.findall(r"data-name='(im\d)'", page) == sorted(names, key=lambda n: -mae("a", n))[:2]
    assert "scores worst on mae" in capsys.readouterr().err
    assert main([*render_args(tmp_path)[:-4], *out, "--worst", "1", "--by", "mae"]) == 0
    page = (tmp_path / "page" / "index.html").read_text()
    assert re.findall(r"data-name='(im\d)'", page) == [max(names, key=lambda n: abs(mae("a", n) - mae("b", n)))]
    assert "differ most in mae" in capsys.readouterr().err
    assert main([*args, "--pred", f"A={tmp_path / 'a'}", *out, "--worst", "2", "--by", "nope"]) == 2
    assert "'nope'" in capsys.readouterr().err
    assert main([*args[:4], *args[6:], "--pred", f"A={tmp_path / 'a'}", *out, "--worst", "2"]) == 2
    assert "--gt" in capsys.readouterr().err


def test_saved_predictions_rescore_as_the_checkpoint(tmp_path, capsys):
    from segkit.config import load_config
    from segkit.training.train import train

    data, _ = write_layout(tmp_path, n=2)
    tiny = ["data.image_size=64", "data.batch_size=2", "data.workers=0", "eval.max_images=2"]
    tiny += ["model.backbone=res2net50_14w_8s", "model.decoder_channels=16", "schedule.max_steps=1"]
    run = train(load_config(None, ["task=saliency", f"out_dir={tmp_path}", "name=m", *tiny])).run_dir
    maps, direct, again = tmp_path / "maps", tmp_path / "direct.json", tmp_path / "again.json"
    args = ["eval", "--checkpoint", str(run / "last.pt"), "--data", str(data), "--precision", "fp32"]
    assert main([*args, "--save-preds", str(maps), "--json", str(direct)]) == 0
    assert sorted(p.name for p in (maps / "ECSSD").iterdir()) == ["ecssd_0.png", "ecssd_1.png"]
    assert not (maps / "DUTS-TR").exists()  # training sets are not scored
    assert main(["eval", "--task", "saliency", "--data", str(data), "--pred", f"m={maps}", "--json", str(again)]) == 0
    first, second = json.loads(direct.read_text()), json.loads(again.read_text())
    assert list(first["datasets"]) == list(second["datasets"]) == ["ECSSD", "HKU-IS", "PASCAL-S"]
    for ds in first["datasets"]:
        for key in KEYS:
            assert first["datasets"][ds]["last"][key] == second["datasets"][ds]["m"][key], (ds, key)
    assert first["metric_card"]["model"]["checkpoint"].endswith("last.pt")
    capsys.readouterr()
    assert main([*args, "--split", "val", "--save-preds", str(maps)]) == 2  # one split: no test-set layout
    assert "--save-preds" in capsys.readouterr().err


def test_bench_metrics_table_case_compares_every_cell(tmp_path):
    """The benchmark's own claim: PySODMetrics' loop and segkit eval give the same numbers on its files (speed is
    measured by running it, never asserted)."""
    from segkit.bench.metrics import run_table_bench

    result = run_table_bench(datasets=2, methods=2, count=3, workdir=tmp_path)
    assert result["same_numbers"] and result["max_abs_metric_difference"] < 1e-9
    assert result["segkit_eval_s"] > 0 and result["segkit_eval_one_process_s"] > 0 and result["reference_s"] > 0
    one = result["segkit_eval_one_process_s"]
    assert result["speedup_one_process"] == pytest.approx(result["reference_s"] / one)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["SET0", "SET1"]


def test_bench_metrics_rounds_report_medians_and_each_round(tmp_path):
    """With --rounds the three runs repeat in turn: the times reported are the medians of each round's, the
    speed-up per round is that round's ratio, and every round's numbers are compared."""
    import statistics

    from segkit.bench.metrics import run_metrics_bench

    result = run_metrics_bench(count=4, workdir=tmp_path, rounds=3)
    assert result["rounds"] == 3 and result["same_numbers"]
    for key in ("segkit_eval_s", "segkit_eval_one_process_s", "reference_s"):
        times = result[f"{key}_by_round"]
        assert len(times) == 3 and result[key] == statistics.median(times)
    per_round = [r / o for r, o in zip(result["reference_s_by_round"], result["segkit_eval_s_by_round"], strict=True)]
    assert result["speedup_all_cores_by_round"] == pytest.approx(per_round)
    assert result["speedup_all_cores"] == pytest.approx(result["reference_s"] / result["segkit_eval_s"])
