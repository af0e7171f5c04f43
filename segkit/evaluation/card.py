"""The metric card: the conventions that produced a set of scores, carried inside every result ``segkit eval``
writes, so that a number can be traced to its variant (which binarisation, which thresholds, which E-measure)."""

from __future__ import annotations

from segkit.metrics.conventions import conventions
from segkit.tasks import Task, get_task
from segkit.version import __version__

CARD_FORMAT = "segkit-metric-card/1"


def size_policy(labels: bool, strict_size: bool) -> str:
    """How a prediction of another size is handled; ``labels``: masks hold class ids (resized nearest)."""
    if strict_size:
        return "refused: a prediction of another size than its ground truth is not scored (--strict-size)"
    how = "nearest neighbour" if labels else "bilinear"
    return f"resized to its ground truth's size ({how}, OpenCV), then scored; each such file is listed"


def metric_card(task: Task | str, strict_size: bool = False, num_classes: int = 0) -> dict:
    """The conventions of ``task``'s scores (a Task, or its name) as ``segkit eval`` computes them (per-dataset
    facts are added by the caller under ``datasets``)."""
    task = get_task(task)
    return {
        "format": CARD_FORMAT,
        "segkit_version": __version__,
        "task": task.name,
        **conventions(task.conventions, num_classes),
        **({"table": task.table_note} if task.table_note else {}),
        "size_mismatch": size_policy(task.labels, strict_size),
    }


def card_text(card: dict) -> str:
    """The card as aligned ``key: value`` lines, per-dataset facts as a table."""
    lines = []
    width = max(len(k) for k in card)
    for key, value in card.items():
        if key == "datasets":
            continue
        lines.append(f"{key.replace('_', ' '):<{width}}  {value}")
    datasets = card.get("datasets") or {}
    if datasets:
        lines += ["", "dataset / method: images scored, missing, resized, unreadable"]
        for name, facts in datasets.items():
            lines.append(f"{name} ({facts.get('ground_truths', '?')} ground truths)")
            for method, m in facts.get("methods", {}).items():
                if m is None:
                    lines.append(f"  {method}: no folder")
                    continue
                counts = f"{m['scored']}, {len(m['missing'])}, {len(m['resized'])}, {len(m['bad'])}"
                lines.append(f"  {method}: {counts}")
    return "\n".join(lines)
