"""The training data: train and validation sources, a resumable sample stream, one DataLoader for the run.

Determinism: the sample order of epoch e is a permutation seeded by (seed, e), and every sample's augmentation
is seeded by (seed, e, index), so a resumed run sees exactly the batches the uninterrupted run would have seen,
whatever the number of loader workers.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Sampler

from segkit.data.datasets import SampleSource, TrainDataset, collate
from segkit.errors import SegkitError
from segkit.tasks import Task
from segkit.training.distributed import DistInfo


@dataclass
class Sources:
    train: SampleSource
    val: SampleSource
    note: str | None = None  # said once in the log: how the validation data was chosen, what was left out


def folder_pairs(images: str, masks: str) -> tuple[list, list[str]]:
    """Image/mask pairs of two folders by file stem, and a note per kind of unpaired file (by name)."""
    from segkit.data.saliency import pair_files

    found = pair_files(Path(images), Path(masks))
    notes = [
        _unpaired_note(found.images_without_mask, f"images in '{images}' have no mask"),
        _unpaired_note(found.masks_without_image, f"masks in '{masks}' have no image"),
    ]
    return found.pairs, [n for n in notes if n]


def _unpaired_note(paths: list[Path], what: str, shown: int = 10) -> str | None:
    if not paths:
        return None
    more = " ..." if len(paths) > shown else ""
    return f"{len(paths)} {what} and are left out: {', '.join(p.name for p in paths[:shown])}{more}"


def hold_out(pairs: list, fraction: float, seed: int) -> tuple[list, list]:
    """(train, val): a seeded ``fraction`` of the pairs (at least one, at most all but one) held out."""
    if len(pairs) < 2:
        raise SegkitError(
            f"--images/--masks hold {len(pairs)} pair(s): too few to hold out validation images; add images or "
            "pass --val-images DIR --val-masks DIR"
        )
    count = min(max(1, round(len(pairs) * fraction)), len(pairs) - 1)
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed)).tolist()
    held = set(order[:count])
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]


def check_before_training(sources: Sources, limit: int = 30) -> None:
    """The pre-flight: every training and validation pair of file sources read as training reads it (image
    headers, masks, sizes, mask values), with a progress bar on a terminal; every problem is listed at once,
    before step 1, instead of one per attempt as samples are drawn."""
    from segkit.data.check import preflight
    from segkit.data.datasets import FileSource

    checked = [(name, s) for name, s in (("training", sources.train), ("validation", sources.val))
               if isinstance(s, FileSource)]  # fmt: skip
    if not checked:
        return
    total = sum(len(s.pairs) for _, s in checked)
    from tqdm import tqdm

    with tqdm(total=total, desc="checking the data", unit="pair", disable=not sys.stderr.isatty(), leave=False) as bar:
        problems = [p for _, s in checked for p in preflight(s, bar.update)]
    if problems:
        shown = "\n  ".join(problems[:limit]) + (f"\n  ... and {len(problems) - limit} more" if len(problems) > limit
                                                  else "")  # fmt: skip
        raise SegkitError(
            f"{len(problems)} of the {total} training and validation pairs cannot be used; nothing was trained. Fix "
            f"or remove these files:\n  {shown}"
        )


def build_sources(task: Task, data, seed: int, num_classes: int | None = None) -> Sources:
    """Training and validation samples from a ``DataConfig``: a dataset root (or the built-in data), or image and
    mask folders (``num_classes``: ``model.num_classes``, needed for class-id masks). Folders without validation
    folders give up ``data.val_fraction`` of their pairs to validation, and the run says so."""
    if not (data.images or data.masks):
        if data.val_images or data.val_masks:
            raise SegkitError("--val-images/--val-masks go with --images/--masks; a dataset root has its own val split")
        reading = data.mask_values
        return Sources(task.source(data.root, "train", reading), task.source(data.root, "val", reading))
    if not (data.images and data.masks):
        raise SegkitError("--images and --masks go together: pass both folders")
    classes = task.folder_classes(num_classes)
    pairs, notes = folder_pairs(data.images, data.masks)
    if data.val_images or data.val_masks:
        if not (data.val_images and data.val_masks):
            raise SegkitError("--val-images and --val-masks go together: pass both folders")
        val_pairs, val_notes = folder_pairs(data.val_images, data.val_masks)
        notes += val_notes
        where = f"validation on {data.val_images} + {data.val_masks} ({len(val_pairs)} pairs)"
    else:
        total = len(pairs)
        pairs, val_pairs = hold_out(pairs, data.val_fraction, seed)
        where = (
            f"validation on {len(val_pairs)} of the {total} pairs of --images, held out (data.val_fraction="
            f"{data.val_fraction}; pass --val-images/--val-masks to validate on your own split)"
        )
    train = task.file_source(pairs, f"{data.images} + {data.masks}", classes, data.mask_values)
    val = task.file_source(val_pairs, "the validation folders", classes, data.mask_values)
    return Sources(train, val, "; ".join([where, *notes]))


class StreamSampler(Sampler):
    """(epoch, index) pairs from a given epoch and position on, forever.

    Epoch e is a permutation seeded by (seed, e), sharded equally across processes and cut to whole optimiser
    steps, so batches never straddle epochs and every process runs the same number of steps.
    """

    def __init__(self, size: int, seed: int, info: DistInfo, samples_per_step: int) -> None:
        self.size, self.seed, self.info = size, seed, info
        per_rank = size // info.world_size
        self.per_epoch = per_rank - per_rank % samples_per_step
        self.start_epoch, self.start_offset = 0, 0

    def epoch_indices(self, epoch: int) -> list[int]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(self.size, generator=gen).tolist()
        shard = order[self.info.rank :: self.info.world_size]
        return shard[: self.per_epoch]

    def __iter__(self):
        epoch, offset = self.start_epoch, self.start_offset
        while True:
            for index in self.epoch_indices(epoch)[offset:]:
                yield epoch, index
            epoch, offset = epoch + 1, 0


class SeededTrainDataset(TrainDataset):
    """Takes (epoch, index) keys and seeds each sample's augmentation by (seed, epoch, index)."""

    def __init__(self, source: SampleSource, task: Task, image_size_px: int, seed: int, augment: str = "task") -> None:
        from segkit.data.transforms import published_train

        transform = (
            task.train_transform(image_size_px) if augment == "task" else published_train(augment, image_size_px)
        )
        super().__init__(source, transform, task.target)
        self.seed = seed

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        self.transform.set_random_seed((self.seed * 1_000_003 + epoch * 100_003 + index) % 2**32)
        return super().__getitem__(index)


def _worker_init(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)  # the loader's parallelism is its worker processes


def batch_stream(dataset: SeededTrainDataset, sampler: StreamSampler, batch_size: int, workers: int, pin: bool):
    """An endless iterator of batches (one loader for the whole run, its workers kept alive)."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin,
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=4 if workers else None,
        # forkserver: forking a process that already runs CUDA and OpenMP threads can deadlock the workers
        multiprocessing_context="forkserver" if workers and sys.platform != "win32" else None,
    )
    return iter(loader)
