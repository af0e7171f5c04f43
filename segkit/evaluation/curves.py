"""Precision-recall and F-measure curves: drawn (one figure per dataset, every method) and saved as data that
anyone can re-plot without the saliency maps.

Curve data (``--curves-data FILE``, ``.json`` or ``.npz``), format ``segkit-curves/1``:
- JSON: ``{"format", "thresholds": [t/255 for t in 0..255], "metric_card": {...}, "datasets": {DATASET: {METHOD:
  {"precision": [...], "recall": [...], "fmeasure": [...], "emeasure": [...], "count": N}}}}``, every list indexed
  by the threshold (ascending), each value the mean over the dataset's images;
- NPZ: arrays ``thresholds`` and ``DATASET/METHOD/precision`` (``recall``, ``fmeasure``, ``emeasure``, ``count``),
  and ``metric_card``, the card as a JSON string.
The maximum of ``fmeasure`` is the table's max F; its mean is mean F.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from segkit.errors import SegkitError
from segkit.metrics.saliency import NUM_THRESHOLDS, SaliencyScores

CURVES_FORMAT = "segkit-curves/1"
CURVE_KEYS = ("precision", "recall", "fmeasure", "emeasure")
# Okabe & Ito's colour-blind-safe palette (black first), with line styles so that print in grey still separates them
OKABE_ITO = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#D55E00", "#0072B2", "#CC79A7", "#F0E442")
LINE_STYLES = ("-", "--", "-.", ":")


def thresholds() -> np.ndarray:
    return np.arange(NUM_THRESHOLDS) / (NUM_THRESHOLDS - 1)


def plot_curves(rows: dict[str, SaliencyScores], path: Path | str) -> None:
    """Precision-recall and F-measure-vs-threshold curves of every method, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_pr, ax_f) = plt.subplots(1, 2, figsize=(10, 4))
    thresholds = np.arange(256) / 255
    for name, s in rows.items():
        ax_pr.plot(s.curves.recall, s.curves.precision, label=name)
        ax_f.plot(thresholds, s.curves.fmeasure, label=f"{name} (max {s.max_fm:.3f})")
    ax_pr.set(xlabel="recall", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    ax_f.set(xlabel="threshold", ylabel="F-measure (beta^2 = 0.3)", title="F-measure", xlim=(0, 1), ylim=(0, 1.02))
    for ax in (ax_pr, ax_f):
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _style(i: int) -> dict:
    return {"color": OKABE_ITO[i % len(OKABE_ITO)], "linestyle": LINE_STYLES[(i // len(OKABE_ITO) + i) % 4]}


def plot_dataset_curves(curves: dict[str, dict[str, SaliencyScores]], folder: Path | str) -> list[Path]:
    """One figure per dataset (``curves``: dataset -> method -> scores): PR on the left, F-measure against the
    threshold on the right, every method in a colour-blind-safe colour and its own line style, sized for the
    text width of a two-column paper (7 x 2.8 in, a figure* at 8 pt). Written as PDF (for the paper) and PNG;
    returns the PDFs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with plt.rc_context({"font.size": 8, "axes.titlesize": 9, "legend.fontsize": 7}):
        for dataset, methods in curves.items():
            fig, (ax_pr, ax_f) = plt.subplots(1, 2, figsize=(7, 2.8))
            for i, (name, s) in enumerate(methods.items()):
                ax_pr.plot(s.curves.recall, s.curves.precision, label=name, linewidth=1.2, **_style(i))
                ax_f.plot(thresholds(), s.curves.fmeasure, label=f"{name} ({s.max_fm:.3f})", linewidth=1.2, **_style(i))
            ax_pr.set(xlabel="Recall", ylabel="Precision", title=f"{dataset}: precision-recall", xlim=(0, 1))
            ax_f.set(
                xlabel="Threshold", ylabel=r"$F_\beta$ ($\beta^2 = 0.3$)", title=f"{dataset}: F-measure", xlim=(0, 1)
            )
            for ax in (ax_pr, ax_f):
                ax.grid(alpha=0.3, linewidth=0.5)
                ax.legend(loc="lower left", frameon=False)
            fig.tight_layout()
            stem = folder / safe_name(dataset)
            fig.savefig(stem.with_suffix(".pdf"))
            fig.savefig(stem.with_suffix(".png"), dpi=200)
            plt.close(fig)
            written.append(stem.with_suffix(".pdf"))
    return written


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "dataset"


def curves_payload(curves: dict[str, dict[str, SaliencyScores]], card: dict) -> dict:
    datasets = {}
    for dataset, methods in curves.items():
        datasets[dataset] = {
            name: {
                "precision": s.curves.precision.tolist(),
                "recall": s.curves.recall.tolist(),
                "fmeasure": s.curves.fmeasure.tolist(),
                "emeasure": s.curves.emeasure.tolist(),
                "count": s.count,
            }
            for name, s in methods.items()
        }
    return {"format": CURVES_FORMAT, "thresholds": thresholds().tolist(), "metric_card": card, "datasets": datasets}


def write_curves_data(curves: dict[str, dict[str, SaliencyScores]], card: dict, path: Path | str) -> Path:
    """Save every curve (see the module's docstring for the layout); the suffix picks JSON or NPZ."""
    from segkit.data.io import write_bytes

    path = Path(path)
    payload = curves_payload(curves, card)
    if path.suffix.lower() == ".json":
        write_bytes(path, json.dumps(payload).encode())
    elif path.suffix.lower() == ".npz":
        import io

        arrays = {"thresholds": np.asarray(payload["thresholds"]), "metric_card": np.asarray(json.dumps(card))}
        for dataset, methods in payload["datasets"].items():
            for name, c in methods.items():
                for key in (*CURVE_KEYS, "count"):
                    arrays[f"{dataset}/{name}/{key}"] = np.asarray(c[key])
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        write_bytes(path, buffer.getvalue())
    else:
        raise SegkitError(f"--curves-data must end in .json or .npz, got '{path.name}'")
    return path


def read_curves_data(path: Path | str) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """dataset -> method -> {precision, recall, fmeasure, emeasure: arrays; count} from either format."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        payload = json.loads(path.read_text())
        return {
            d: {m: {k: np.asarray(v) if k != "count" else v for k, v in c.items()} for m, c in ms.items()}
            for d, ms in payload["datasets"].items()
        }
    out: dict = {}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            if key.count("/") < 2:
                continue
            dataset, rest = key.split("/", 1)
            method, field = rest.rsplit("/", 1)
            value = data[key]
            out.setdefault(dataset, {}).setdefault(method, {})[field] = int(value) if field == "count" else value
    return out
