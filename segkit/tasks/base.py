"""The interface every task fills in (``Task``), and the behaviour tasks share."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from segkit.errors import SegkitError

if TYPE_CHECKING:
    import torch

    from segkit.data.builtin import BuiltinSpec
    from segkit.data.check import CheckReport
    from segkit.data.datasets import FileSource, SampleSource


class Task:
    """The interface every task fills in; shared behaviour lives here."""

    name: ClassVar[str]
    primary_metric: ClassVar[str]  # the score that picks best.pt (higher is better)
    metric_keys: ClassVar[tuple[str, ...]]  # the scores reported in tables, in order
    default_loss: ClassVar[str]  # the loss of `loss: auto` (a name in segkit.models.losses.LOSSES)
    default_config: ClassVar[str]  # file name among the packaged configs (segkit/configs)
    labels: ClassVar[bool]  # masks hold class ids (True) or grey levels (False); the network: class logits or one map

    # ---------------------------------------------------------------- data

    def read_mask(self, path: Path | str) -> np.ndarray:
        raise NotImplementedError

    mask_readings: ClassVar[tuple[str, ...]] = ("standard",)  # names from segkit.data.masks.MASK_READINGS

    def mask_problem(self, mask: np.ndarray, num_classes: int) -> str | None:
        """What is wrong with a ground-truth mask's values, or None."""
        return None

    def mask_surprise(self, mask: np.ndarray, path: Path | str | None = None) -> str | None:
        """A value pattern that reads without error but silently changes the mask's meaning, or None (``path``,
        when known, lets the file's format be asked too)."""
        return None

    def mask_checks(self, reading: str = "standard"):
        """The check a training source applies to each mask: problems always, surprises unless the user chose
        how to read the values (``data.mask_values``)."""
        return _MaskCheck(self, reading)

    def resize_mask(self, mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """A mask brought to ``shape`` (H, W): nearest for class ids, bilinear for grey levels."""
        from segkit.conventions import resize_mask

        return resize_mask(mask, shape, labels=self.labels)

    def builtin_sample(self, split: str, index: int, spec: BuiltinSpec) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def builtin_classes(self) -> tuple[str, ...]:
        raise NotImplementedError

    def make_demo(self, out: Path | str, spec: BuiltinSpec | None = None) -> Path:
        """Write the built-in dataset to disk in this task's standard layout."""
        raise NotImplementedError

    def dataset_source(self, root: Path | str, split: str, reading: str = "standard") -> SampleSource:
        """``split`` ("train" or "val") of the dataset in its standard layout under ``root``."""
        raise NotImplementedError

    def check_dataset(self, root: Path | str) -> CheckReport:
        """Read every file of the dataset under ``root`` and report problems (``segkit data check``)."""
        raise NotImplementedError

    def train_transform(self, size_px: int):
        """The albumentations training pipeline."""
        raise NotImplementedError

    def target(self, mask: np.ndarray) -> torch.Tensor:
        """An augmented mask as the loss's target tensor."""
        raise NotImplementedError

    def source(self, root: Path | str | None, split: str, reading: str = "standard") -> SampleSource:
        """The samples of ``split``: the built-in data when ``root`` is None, else the dataset under ``root``
        with its mask values read as ``reading`` says (``data.mask_values``)."""
        if root is None:
            from segkit.data.builtin import BuiltinSpec
            from segkit.data.datasets import BuiltinSource

            return BuiltinSource(self.builtin_sample, split, self.builtin_classes(), BuiltinSpec())
        return self.dataset_source(root, split, reading)

    def folder_classes(self, num_classes: int | None) -> tuple[str, ...]:
        """Class names of a plain image/mask folder pair (no dataset to name them)."""
        raise NotImplementedError

    def file_source(
        self, pairs: list[tuple[Path, Path]], where: str, classes: tuple[str, ...], reading: str = "standard"
    ) -> FileSource:
        """Image/mask file pairs read with this task's reader (values read as ``reading``) and checks."""
        from segkit.data.datasets import FileSource
        from segkit.data.masks import MaskReader

        if reading not in self.mask_readings:
            raise SegkitError(
                f"config key 'data.mask_values' is '{reading}', which {self.name} does not read; "
                f"valid: {', '.join(self.mask_readings)}"
            )
        if not pairs:
            raise SegkitError(f"no image/mask pairs found in {where}")
        return FileSource(pairs, MaskReader(self.read_mask, reading), classes, self.mask_checks(reading))

    # ---------------------------------------------------------------- network

    # The network's architecture when ``model.arch`` is unset (``segkit.models.create_model`` builds it; whether
    # it outputs class logits or one map follows ``labels``).
    default_arch: ClassVar[str]

    # ---------------------------------------------------------------- predictions

    def to_mask(self, probs: np.ndarray) -> np.ndarray:
        """Probabilities at the image's size -> the saved mask (uint8)."""
        raise NotImplementedError

    def confidence(self, probs: np.ndarray) -> np.ndarray:
        """(H, W) probability map written by ``predict --probs``."""
        raise NotImplementedError

    def write_mask(self, path: Path | str, mask: np.ndarray) -> None:
        raise NotImplementedError

    def foreground(self, mask: np.ndarray) -> np.ndarray:
        """bool (H, W): the pixels a mask marks as object (for boundaries and overlays)."""
        raise NotImplementedError

    def error_maps(self, pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(false positives, false negatives) of a saved prediction against its ground truth."""
        raise NotImplementedError

    def decisions(self, mask: np.ndarray) -> np.ndarray:
        """What two methods' masks are compared on: the binary decision or the class id."""
        raise NotImplementedError

    def mask_rgb(self, mask: np.ndarray) -> np.ndarray:
        """A mask as an RGB uint8 image."""
        raise NotImplementedError

    def overlay(self, image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """The mask blended over the RGB image."""
        raise NotImplementedError

    # ---------------------------------------------------------------- scores

    def metrics(self, num_classes: int, **options):
        """A fresh metrics accumulator (``update``, ``merge``, ``compute``, ``reduce_from_all_processes``)."""
        raise NotImplementedError

    caption_keys: ClassVar[dict[str, str]]  # label printed under a comparison panel -> score key
    # ``segkit eval --data ROOT`` scores every test set under ROOT (methods x datasets, as saliency papers do)
    scores_test_sets: ClassVar[bool] = False
    image_metric_options: ClassVar[dict] = {}  # options of ``metrics`` for one image's scores

    def image_scores(self, pred: np.ndarray, gt: np.ndarray, num_classes: int) -> dict[str, float]:
        """Every scalar score of one image (``metric_keys``), as ``segkit eval`` would give for it alone."""
        m = self.metrics(num_classes, **self.image_metric_options)
        m.update(pred, gt)
        return m.compute().scalars()

    def truth(self, gt: np.ndarray):
        """A ground truth as ``metrics().update`` takes it, prepared once for every method scored against it."""
        return gt

    # The conventions of this task's scores on the metric card: groups of ``segkit.metrics.conventions.CONVENTIONS``,
    # and the papers' table the default columns follow (None: no paper's).
    conventions: ClassVar[tuple[str, ...]]
    table_note: ClassVar[str | None] = None

    def caption_scores(self, pred: np.ndarray, gt: np.ndarray, num_classes: int) -> dict[str, float]:
        """The per-image scores a comparison figure prints under a panel (``caption_keys``)."""
        scores = self.image_scores(pred, gt, num_classes)
        return {label: scores[key] for label, key in self.caption_keys.items()}

    def details_table(self, scores, class_names: tuple[str, ...]) -> str | None:
        """A table printed under the scores by ``segkit eval --checkpoint`` (per class), or None."""
        return None

    def summary(self, scores) -> str:
        """One line of the headline scores, for the end of a training run."""
        return f"{self.primary_metric} {getattr(scores, self.primary_metric):.4f}"

    def __repr__(self) -> str:
        return f"<task {self.name}>"


class _MaskCheck:
    """A training source's mask check (picklable, as its task is): the task's problems, and its surprises
    while the values are read the standard way."""

    def __init__(self, task: Task, reading: str) -> None:
        self.task, self.reading = task, reading

    def __call__(self, mask: np.ndarray, num_classes: int, path: Path | str | None = None) -> str | None:
        task = self.task
        problem = task.mask_problem(mask, num_classes)
        if problem is None and self.reading == "standard":
            problem = task.mask_surprise(mask, path)
        return problem
