"""``segkit bench metrics``: ``segkit eval --task saliency`` against a plain Python loop over PySODMetrics, on one
folder of pairs or on a methods x datasets table.

Both run as whole processes (start-up and file reading included) over the same folders, and their numbers are
compared: the speed-up only counts when every metric agrees. segkit is timed twice: in one process (``--workers 1``,
the loop's own terms) and with its default worker processes (every core), so both ratios are reported. With
``rounds`` above 1 the three runs are repeated in turn (segkit on every core, segkit in one process, the reference),
so that a machine's drift falls on all three alike: the times reported are the medians, each round's ratio is kept.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from segkit.errors import SegkitError

# A plain loop over PySODMetrics, the way its README shows: read each pair with OpenCV, step every metric.
ORACLE_LOOP = r"""
import json, sys
from pathlib import Path
import cv2
import py_sod_metrics as psm
pred_dir, gt_dir = Path(sys.argv[1]), Path(sys.argv[2])
fm, wfm, sm, em, mae = psm.Fmeasure(), psm.WeightedFmeasure(), psm.Smeasure(), psm.Emeasure(), psm.MAE()
for gt_path in sorted(gt_dir.glob("*.png")):
    gt = cv2.imread(str(gt_path), cv2.IMREAD_GRAYSCALE)
    pred = cv2.imread(str(pred_dir / gt_path.name), cv2.IMREAD_GRAYSCALE)
    for m in (fm, wfm, sm, em, mae):
        m.step(pred=pred, gt=gt)
f, e = fm.get_results()["fm"], em.get_results()["em"]
print(json.dumps({"mae": mae.get_results()["mae"], "sm": sm.get_results()["sm"], "wfm": wfm.get_results()["wfm"],
    "adp_fm": f["adp"], "mean_fm": f["curve"].mean(), "max_fm": f["curve"].max(),
    "adp_em": e["adp"], "mean_em": e["curve"].mean(), "max_em": e["curve"].max()}, default=float))
"""
COMPARED = ("mae", "sm", "wfm", "adp_fm", "mean_fm", "max_fm", "adp_em", "mean_em", "max_em")


def _synthetic_gt(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    gt = np.zeros((height, width), np.uint8)
    for _ in range(rng.integers(1, 4)):
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(10, width // 3)), int(rng.integers(10, height // 3)))
        cv2.ellipse(gt, center, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    return gt


def _synthetic_prediction(rng: np.random.Generator, gt: np.ndarray) -> np.ndarray:
    shift = np.roll(gt, int(rng.integers(-8, 9)), axis=int(rng.integers(0, 2))).astype(np.float32)
    soft = cv2.GaussianBlur(shift, (0, 0), float(rng.uniform(1, 6)))
    return np.clip(soft + rng.normal(0, 12, gt.shape), 0, 255).astype(np.uint8)


def make_pairs(out: Path, count: int, height: int = 300, width: int = 400, seed: int = 0) -> tuple[Path, Path]:
    """``count`` synthetic saliency predictions and masks (ellipses, blur, noise) as PNGs under ``out``."""
    rng = np.random.default_rng(seed)
    pred_dir, gt_dir = out / "pred", out / "gt"
    pred_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        gt = _synthetic_gt(rng, height, width)
        cv2.imwrite(str(gt_dir / f"{i:05d}.png"), gt)
        cv2.imwrite(str(pred_dir / f"{i:05d}.png"), _synthetic_prediction(rng, gt))
    return pred_dir, gt_dir


def make_benchmark(out: Path, datasets: int, methods: int, count: int, seed: int = 0) -> tuple[Path, list[str]]:
    """A dataset root of ``datasets`` test sets (``SET{i}/images`` + ``SET{i}/masks``, ``count`` 400x300 masks
    each; the images folders stay empty, scoring saved maps never reads them) and, per method, a folder of
    per-dataset maps (``M{j}/SET{i}/*.png``) as papers publish them. Returns the root and the method folders."""
    rng = np.random.default_rng(seed)
    root = out / "data"
    for d in range(datasets):
        (root / f"SET{d}" / "images").mkdir(parents=True, exist_ok=True)
        (root / f"SET{d}" / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            gt = _synthetic_gt(rng, 300, 400)
            cv2.imwrite(str(root / f"SET{d}" / "masks" / f"{i:05d}.png"), gt)
            for m in range(methods):
                folder = out / f"M{m}" / f"SET{d}"
                folder.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(folder / f"{i:05d}.png"), _synthetic_prediction(rng, gt))
    return root, [str(out / f"M{m}") for m in range(methods)]


# The plain loop a user would write for a results table: every method on every dataset, pair by pair.
ORACLE_TABLE_LOOP = r"""
import json, sys
from pathlib import Path
import cv2
import py_sod_metrics as psm
root, methods = Path(sys.argv[1]), sys.argv[2:]
table = {}
for method in methods:
    for dataset in sorted(p.name for p in root.iterdir()):
        fm, wfm, sm, em, mae = psm.Fmeasure(), psm.WeightedFmeasure(), psm.Smeasure(), psm.Emeasure(), psm.MAE()
        for gt_path in sorted((root / dataset / "masks").glob("*.png")):
            gt = cv2.imread(str(gt_path), cv2.IMREAD_GRAYSCALE)
            pred = cv2.imread(str(Path(method) / dataset / gt_path.name), cv2.IMREAD_GRAYSCALE)
            for m in (fm, wfm, sm, em, mae):
                m.step(pred=pred, gt=gt)
        f, e = fm.get_results()["fm"], em.get_results()["em"]
        table.setdefault(dataset, {})[Path(method).name] = {"mae": mae.get_results()["mae"],
            "sm": sm.get_results()["sm"], "wfm": wfm.get_results()["wfm"], "adp_fm": f["adp"],
            "mean_fm": f["curve"].mean(), "max_fm": f["curve"].max(), "adp_em": e["adp"],
            "mean_em": e["curve"].mean(), "max_em": e["curve"].max()}
print(json.dumps(table, default=float))
"""


TOOLKIT_ENV = "PYSODEVALTOOLKIT"  # a checkout of PySODEvalToolkit (its eval.py); else the plain PySODMetrics loop
TOOLKIT_KEYS = {"mae": "mae", "sm": "sm", "wfm": "wfm", "adp_fm": "adpfmeasure", "mean_fm": "avgfmeasure",
                "max_fm": "maxfmeasure", "adp_em": "adpem", "mean_em": "avgem", "max_em": "maxem"}  # fmt: skip


def toolkit_dir(given: str | Path | None = None) -> Path | None:
    """PySODEvalToolkit's checkout: ``given``, else ``$PYSODEVALTOOLKIT``; None when neither names a folder with
    its eval.py (it is a repository, not a package on PyPI)."""
    import os

    folder = given or os.environ.get(TOOLKIT_ENV)
    if not folder:
        return None
    if not (Path(folder) / "eval.py").is_file():
        raise SegkitError(f"'{folder}' is not a PySODEvalToolkit checkout (no eval.py in it)")
    return Path(folder)


def _toolkit_run(toolkit: Path, out: Path, root: Path, method_dirs: list[str], workers: int) -> tuple[float, dict]:
    """PySODEvalToolkit's own eval.py over the same files, as its README runs it (the five metrics, its worker
    pool); (seconds, {dataset: {method: {segkit key: value}}})."""
    datasets = sorted(p.name for p in root.iterdir())
    dataset_json, method_json = out / "toolkit_datasets.json", out / "toolkit_methods.json"
    dataset_json.write_text(json.dumps({d: {"image": {"path": str(root / d / "images"), "suffix": ".jpg"},
                                            "mask": {"path": str(root / d / "masks"), "suffix": ".png"}}
                                        for d in datasets}))  # fmt: skip
    method_json.write_text(json.dumps({Path(m).name: {d: {"path": str(Path(m) / d), "suffix": ".png"} for d in datasets}
                                       for m in method_dirs}))  # fmt: skip
    npy = out / "toolkit" / "metrics.npy"
    cmd = [sys.executable, str(toolkit / "eval.py"), "--dataset-json", str(dataset_json), "--method-json",
           str(method_json), "--metric-names", "sm", "wfm", "mae", "fmeasure", "em", "--num-workers", str(workers),
           "--num-bits", "10", "--metric-npy", str(npy)]  # fmt: skip
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=toolkit)
    seconds = time.perf_counter() - start
    if res.returncode != 0:
        raise SegkitError(f"PySODEvalToolkit's eval.py failed:\n{res.stderr[-2000:]}")
    # the toolkit saves a pickled dict of its own numbers, written a moment ago into this private folder
    raw = np.load(npy, allow_pickle=True).item()
    table = {d: {m: {ours: float(v[theirs]) for ours, theirs in TOOLKIT_KEYS.items()} for m, v in row.items()}
             for d, row in raw.items()}  # fmt: skip
    return seconds, table


def run_table_bench(
    datasets: int = 3,
    methods: int = 3,
    count: int = 300,
    workdir: Path | None = None,
    toolkit: Path | None = None,
    rounds: int = 1,
) -> dict:
    """``segkit eval --data ROOT --pred ...`` (methods x datasets) against PySODEvalToolkit's eval.py when a
    checkout is given (``toolkit_dir``), else the plain PySODMetrics loop, over the same files; whole processes on
    the same cores, numbers compared cell by cell in every round."""
    import os

    _need_pysodmetrics()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(workdir or tmp)
        root, method_dirs = make_benchmark(out, datasets, methods, count)
        ours_json = out / "ours.json"
        ours_cmd = [sys.executable, "-m", "segkit", "eval", "--task", "saliency", "--data", str(root)]
        ours_cmd += [arg for m in method_dirs for arg in ("--pred", m)] + ["--json", str(ours_json)]
        if toolkit is not None:
            against = f"PySODEvalToolkit's eval.py ({toolkit}, --num-workers {os.cpu_count()})"

            def reference() -> tuple[float, dict]:
                return _toolkit_run(toolkit, out, root, method_dirs, os.cpu_count() or 1)
        else:
            against = "a plain PySODMetrics loop (PySODEvalToolkit not given: --toolkit DIR or $PYSODEVALTOOLKIT)"

            def reference() -> tuple[float, dict]:
                seconds, printed = _timed([sys.executable, "-c", ORACLE_TABLE_LOOP, str(root), *method_dirs])
                return seconds, json.loads(printed)

        def differences(ours: dict, oracle: dict) -> float:
            ours = ours["datasets"]
            return max(abs(ours[d][m][k] - oracle[d][m][k]) for d in oracle for m in oracle[d] for k in COMPARED)

        times = _in_turn(ours_cmd, ours_json, reference, differences, rounds)
    case = {"datasets": datasets, "methods": methods, "pairs_per_dataset": count, "against": against}
    return {**case, **_side_by_side(*times)}


def _in_turn(ours_cmd: list[str], ours_json: Path, reference, differences, rounds: int):
    """``rounds`` rounds of: segkit on every core, segkit in one process (``--workers 1``), the reference
    (``reference()`` -> (seconds, its numbers)); each round's numbers compared (``differences(ours, theirs)``).
    (segkit's times, its one-process times, the reference's times, the largest difference over the rounds)."""
    ours_s, ours_one_s, oracle_s, max_diff = [], [], [], 0.0
    for _ in range(rounds):
        ours_json.unlink(missing_ok=True)
        ours_s.append(_timed(ours_cmd)[0])
        ours = json.loads(ours_json.read_text())
        ours_json.unlink()  # what the one-process run writes, not the file above, is compared next
        ours_one_s.append(_timed([*ours_cmd, "--workers", "1"])[0])
        ours_one = json.loads(ours_json.read_text())
        seconds, oracle = reference()
        oracle_s.append(seconds)
        max_diff = max(max_diff, differences(ours, oracle), differences(ours_one, oracle))
    return ours_s, ours_one_s, oracle_s, max_diff


def _side_by_side(ours_s: list[float], ours_one_s: list[float], oracle_s: list[float], max_diff: float) -> dict:
    """The timings (medians over the rounds), both speed-ups (segkit on every core, and in one process as the loop
    runs), and whether the numbers agree (the speed-ups only count when they do); with several rounds, each
    round's times and speed-ups too."""
    import os
    import statistics
    from datetime import datetime, timezone

    from segkit.bench.backbone import cpu_line

    ours, ours_one, oracle = (statistics.median(v) for v in (ours_s, ours_one_s, oracle_s))
    result = {
        "machine": cpu_line(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "size": "400x300",
        "cores": os.cpu_count(),
        "rounds": len(ours_s),
        "segkit_eval_s": ours,
        "segkit_eval_one_process_s": ours_one,
        "reference_s": oracle,  # PySODEvalToolkit or the PySODMetrics loop ("against")
        "speedup_all_cores": oracle / ours,
        "speedup_one_process": oracle / ours_one,
        "max_abs_metric_difference": max_diff,
        "same_numbers": max_diff <= 1e-6,
    }
    if len(ours_s) > 1:
        result |= {
            "segkit_eval_s_by_round": ours_s,
            "segkit_eval_one_process_s_by_round": ours_one_s,
            "reference_s_by_round": oracle_s,
            "speedup_all_cores_by_round": [r / o for r, o in zip(oracle_s, ours_s, strict=True)],
        }
    return result


def _need_pysodmetrics() -> None:
    try:
        import py_sod_metrics  # noqa: F401
    except ImportError:
        raise SegkitError("segkit bench metrics compares with PySODMetrics: pip install pysodmetrics") from None


def _timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if res.returncode != 0:
        raise SegkitError(f"'{' '.join(cmd[:4])} ...' failed:\n{res.stderr[-2000:]}")
    return elapsed, res.stdout


def run_metrics_bench(count: int = 1000, workdir: Path | None = None, rounds: int = 1) -> dict:
    _need_pysodmetrics()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(workdir or tmp)
        pred_dir, gt_dir = make_pairs(root, count)
        ours_json = root / "ours.json"
        ours_cmd = [sys.executable, "-m", "segkit", "eval", "--task", "saliency", "--pred", str(pred_dir)]
        ours_cmd += ["--gt", str(gt_dir), "--json", str(ours_json)]

        def reference() -> tuple[float, dict]:
            seconds, printed = _timed([sys.executable, "-c", ORACLE_LOOP, str(pred_dir), str(gt_dir)])
            return seconds, json.loads(printed)

        def differences(ours: dict, oracle: dict) -> float:
            return max(abs(ours[k] - oracle[k]) for k in COMPARED)

        times = _in_turn(ours_cmd, ours_json, reference, differences, rounds)
    return {"pairs": count, "against": "a plain PySODMetrics loop", **_side_by_side(*times)}
