"""``segkit bench data``: samples per second of each training pipeline in one process (= per loader worker)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from segkit.data.datasets import FileSource, TrainDataset
from segkit.tasks import get_task


def _voc_like_files(root: Path, count: int, seed: int = 0) -> list[tuple[Path, Path]]:
    """JPEGs of VOC's typical size (500x375) with palette masks, textured so JPEG decoding costs what it does."""
    from segkit.data.voc import save_label_png

    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(count):
        base = cv2.resize(rng.integers(0, 255, (47, 63, 3), dtype=np.uint8), (500, 375), interpolation=cv2.INTER_CUBIC)
        image = np.clip(base.astype(np.int16) + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)
        labels = np.zeros((375, 500), np.uint8)
        cv2.circle(labels, (int(rng.integers(100, 400)), int(rng.integers(80, 300))), 70, int(rng.integers(1, 21)), -1)
        img_path, mask_path = root / f"{i:04d}.jpg", root / f"{i:04d}.png"
        cv2.imwrite(str(img_path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        save_label_png(mask_path, labels)
        pairs.append((img_path, mask_path))
    return pairs


def _rate(dataset: TrainDataset, seconds: float = 3.0) -> float:
    for i in range(3):
        dataset[i % len(dataset)]
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        dataset[n % len(dataset)]
        n += 1
    return n / (time.perf_counter() - start)


def run_data_bench(seconds: float = 3.0) -> dict:
    """Samples/s of the VOC pipeline (decode, scale, pad, crop 512, flip, jitter) and the saliency pipeline
    (decode, resize, crop 320, flip), each in this one process."""
    cv2.setNumThreads(1)  # as in a loader worker
    with tempfile.TemporaryDirectory() as tmp:
        pairs = _voc_like_files(Path(tmp), 32)
        return {
            "voc_train_512_samples_per_s": _rate(_dataset("segmentation", pairs, 512, 21), seconds),
            "saliency_train_320_samples_per_s": _rate(_dataset("saliency", pairs, 320, 1), seconds),
        }


def _dataset(task_name: str, pairs: list, size_px: int, num_classes: int) -> TrainDataset:
    """The training pipeline of ``task_name`` over ``pairs``, as ``segkit train`` builds it."""
    task = get_task(task_name)
    classes = tuple(f"class {i}" for i in range(num_classes))
    source = FileSource(pairs, task.read_mask, classes, task.mask_checks())
    return TrainDataset(source, task.train_transform(size_px), task.target)
