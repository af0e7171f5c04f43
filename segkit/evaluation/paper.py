"""Evaluation as saliency papers report it: every method on every test set in one run.

A dataset root holds test sets in the layouts ``segkit.data.saliency`` recognises (ECSSD, HKU-IS, PASCAL-S,
DUT-OMRON, DUTS-TE, or any ``NAME/images`` + ``NAME/masks``); training sets (DUTS-TR) are skipped. A method's folder
holds one sub-folder per test set, named as the dataset (``DIR/ECSSD/*.png``), which is how papers publish their
saliency maps; names match ignoring case and punctuation (``HKU_IS`` is HKU-IS).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from segkit.data.io import list_images
from segkit.data.saliency import SOD, DatasetFamily, SaliencySource, find_saliency_sources
from segkit.errors import SegkitError
from segkit.evaluation.card import metric_card
from segkit.evaluation.folders import FolderScores, Plan, Unscored, plan_dataset, score_plans

TRAINING_SETS = SOD.training_sets  # found under a root, never scored as a test set
# The order saliency papers print their test sets in; other datasets follow, alphabetically (each family its own).
PAPER_ORDER = SOD.paper_order


def dataset_key(name: str) -> str:
    """How dataset names are compared: lower case, letters and digits only (``DUT-OMRON`` = ``dut_omron``)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def dataset_name(gt_dir: Path | str) -> str:
    """What to call one ground-truth folder: its dataset's name when the folder is a known layout's mask folder
    (``ECSSD/ground_truth_mask`` is ECSSD), else the folder's own name."""
    from segkit.data.saliency import detect_layout

    gt_dir = Path(gt_dir)
    found = detect_layout(gt_dir.parent)
    return found.name if found is not None and found.mask_dir.resolve() == gt_dir.resolve() else gt_dir.name


def is_training_set(name: str, family: DatasetFamily = SOD) -> bool:
    return dataset_key(name) in {dataset_key(n) for n in family.training_sets}


def find_test_sets(root: Path | str, family: DatasetFamily = SOD) -> tuple[list[SaliencySource], list[str]]:
    """The test sets under ``root`` (in the family's layouts and paper order) and the training sets skipped."""
    sources = find_saliency_sources(root, family)
    tests = [s for s in sources if not is_training_set(s.name, family)]
    tests.sort(key=lambda s: _paper_rank(s, family))
    skipped = [s.name for s in sources if is_training_set(s.name, family)]
    if not tests:
        raise SegkitError(f"'{root}' holds only training sets ({', '.join(skipped)}); no test set to score")
    return tests, skipped


def _paper_rank(source: SaliencySource, family: DatasetFamily) -> tuple[int, str]:
    keys = [dataset_key(n) for n in family.paper_order]
    key = dataset_key(source.name)
    return (keys.index(key), "") if key in keys else (len(keys), source.name.lower())


@dataclass
class MethodFolders:
    """One method's published maps: its sub-folder for each dataset, and sub-folders named after none."""

    name: str
    folder: Path
    by_dataset: dict[str, Path]
    ignored: list[str] = field(default_factory=list)


def match_method(name: str, folder: Path | str, datasets: list[str], family: DatasetFamily = SOD) -> MethodFolders:
    folder = Path(folder)
    if not folder.is_dir():
        raise SegkitError(f"--pred {name}={folder}: folder does not exist")
    keys = {dataset_key(d): d for d in datasets}
    found = MethodFolders(name, folder, {})
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        dataset = keys.get(dataset_key(sub.name))
        if dataset is None:
            found.ignored.append(sub.name + (" (a training set)" if is_training_set(sub.name, family) else ""))
        elif dataset in found.by_dataset:
            found.ignored.append(f"{sub.name} (a second folder for {dataset}; used {found.by_dataset[dataset].name})")
        else:
            found.by_dataset[dataset] = sub
    return found


Cell = FolderScores | Unscored | None  # None: the method has no folder for the dataset


@dataclass
class Results:
    """Every method on every test set: ``cells[dataset][method]``, the metric card, what was said on the way."""

    task: str
    datasets: list[str]
    methods: list[str]
    cells: dict[str, dict[str, Cell]]
    card: dict
    notes: list[str] = field(default_factory=list)

    def scored(self) -> int:
        return sum(isinstance(c, FolderScores) for row in self.cells.values() for c in row.values())

    def bad_files(self) -> int:
        return sum(len(c.bad) for row in self.cells.values() for c in row.values() if c is not None)

    def value(self, dataset: str, method: str, metric: str) -> float | None:
        cell = self.cells[dataset].get(method)
        return cell.scores.scalars()[metric] if isinstance(cell, FolderScores) else None

    def curves(self) -> dict[str, dict]:
        """dataset -> method -> scores (with their curves), for the scored cells only."""
        out = {d: {m: c.scores for m, c in row.items() if isinstance(c, FolderScores)} for d, row in self.cells.items()}
        return {d: methods for d, methods in out.items() if methods}

    def to_json(self) -> dict:
        datasets = {}
        for d in self.datasets:
            datasets[d] = {m: _cell_json(self.cells[d].get(m)) for m in self.methods}
        return {"metric_card": self.card, "methods": self.methods, "datasets": datasets, "notes": self.notes}


def _cell_json(cell: Cell) -> dict | None:
    if cell is None:
        return None
    if isinstance(cell, Unscored):
        return {"unscored": cell.reason, "missing": cell.missing, "bad": cell.bad, "notes": cell.notes}
    return cell.to_json()


def plan_benchmark(
    sources: list[SaliencySource], methods: dict[str, Path | str], family: DatasetFamily = SOD
) -> tuple[list[Plan], dict[str, MethodFolders], list[str]]:
    """Match every method's sub-folders to the test sets and pair their files; returns the plans, the matches
    and the notes to say (folders named after no dataset, methods lacking a dataset)."""
    names = [s.name for s in sources]
    matched = {m: match_method(m, folder, names, family) for m, folder in methods.items()}
    notes = []
    for m in matched.values():
        if m.ignored:
            notes.append(f"{m.name}: ignored {', '.join(m.ignored)} (named after no test set: {', '.join(names)})")
        if not m.by_dataset:
            notes.append(f"{m.name}: '{m.folder}' has no sub-folder named after a test set ({', '.join(names)})")
    plans = []
    for source in sources:
        if not list_images(source.mask_dir):
            notes.append(f"{source.name}: '{source.mask_dir}' holds no ground-truth image; dataset skipped")
            continue
        having = {m: f.by_dataset[source.name] for m, f in matched.items() if source.name in f.by_dataset}
        lacking = [m for m in methods if m not in having]
        if lacking:
            notes.append(f"{source.name}: no maps from {', '.join(lacking)} (empty cells)")
        plans.append(plan_dataset(source.name, source.mask_dir, having))
    return plans, matched, notes


def evaluate_benchmark(
    task: str,
    root: Path | str,
    methods: dict[str, Path | str],
    strict_size: bool = False,
    workers: int | None = None,
    progress: Callable[[int], Callable[[str, int], None]] | None = None,
    family: DatasetFamily = SOD,
) -> Results:
    """Score every method (name -> folder of per-dataset sub-folders) on every test set under ``root`` with
    ``task``'s metrics (a task whose ``scores_test_sets``; ``family``: the task's datasets).
    ``progress(total)`` is called once with the number of ground truth x method pairs and returns the callback
    that is told, as work finishes, which dataset and how many pairs."""
    sources, skipped = find_test_sets(root, family)
    plans, _, notes = plan_benchmark(sources, methods, family)
    if skipped:
        notes.insert(0, f"skipped training set(s): {', '.join(skipped)}")
    if not plans:
        raise SegkitError(f"no test set under '{root}' holds ground-truth images")
    tick = progress(work_items(plans)) if progress else None
    scored = score_plans(task, plans, 0, strict_size, workers, tick)
    cells: dict[str, dict[str, Cell]] = {}
    for plan in plans:
        cells[plan.dataset] = {m: scored[plan.dataset].get(m) for m in methods}
    card = metric_card(task, strict_size)
    card["datasets"] = {p.dataset: dataset_facts(p.gt_dir, cells[p.dataset]) for p in plans}
    return Results(card["task"], [p.dataset for p in plans], list(methods), cells, card, notes)


def dataset_facts(gt_dir: Path | str, cells: dict[str, Cell]) -> dict:
    """The metric card's facts about one test set: its ground truths, and per method the files scored, missing,
    resized and unreadable (None: the method has no maps for it)."""
    methods = {}
    for method, cell in cells.items():
        if cell is None:
            methods[method] = None
            continue
        scored = cell.count if isinstance(cell, FolderScores) else 0
        resized = cell.resized if isinstance(cell, FolderScores) else []
        methods[method] = {"scored": scored, "missing": cell.missing, "resized": resized, "bad": cell.bad}
    return {"ground_truth": str(gt_dir), "ground_truths": len(list_images(gt_dir)), "methods": methods}


def work_items(plans: list[Plan]) -> int:
    """Ground truth x method pairs to score (the progress bar's total)."""
    return sum(len(p.pairs) for plan in plans for p in plan.pairings.values())
