"""How the values of mask files are read, and the value patterns that silently change a mask's meaning.

Standard reading: a saliency mask's object is every pixel above 128 (the SOD benchmarks' binarisation); a
segmentation mask holds class ids with 255 ignored. Real folders also hold 0/1 masks and palette PNGs (whose grey
levels are their colours' brightness): read in the standard way their object is empty. Such files are detected
(``empty_object`` / ``void_only``) and, where the user says so, read another way (``MASK_READINGS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segkit.conventions import IGNORE_INDEX

MASK_READINGS = {
    "standard": "saliency: object > 128; segmentation: class ids, 255 ignored",
    "nonzero": "saliency: every non-zero value is object (0/1 masks, palette indices read as grey)",
    "255-as-class-1": "segmentation: 0/255 masks of one object class, 255 read as class 1",
}


def zero_one(mask: np.ndarray) -> bool:
    """A mask whose values are all 0 or 1 (with some 1): a 0/1 mask, whose object is empty at > 128."""
    return bool(mask.any()) and int(mask.max()) == 1


def palette_read_as_grey(mask: np.ndarray, path: Path | str | None) -> bool:
    """A palette PNG whose object, read as grey levels (its colours' brightness), is empty at > 128."""
    if path is None or not mask.any() or int(mask.max()) > 128:
        return False
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.mode == "P"
    except (UnidentifiedImageError, OSError):
        return False


def void_only(mask: np.ndarray) -> bool:
    """A class-id mask holding only 0 and 255 (with some 255): every object pixel would be ignored."""
    return bool((mask == IGNORE_INDEX).any()) and not ((mask != 0) & (mask != IGNORE_INDEX)).any()


@dataclass(frozen=True)
class MaskReader:
    """Reads a mask file (``read``) and applies a reading from ``MASK_READINGS``; picklable for loader workers."""

    read: object  # Path -> np.ndarray
    reading: str = "standard"

    def __call__(self, path: Path) -> np.ndarray:
        mask = self.read(path)
        if self.reading == "nonzero":
            return np.where(mask > 0, 255, 0).astype(np.uint8)
        if self.reading == "255-as-class-1":
            return np.where(mask == IGNORE_INDEX, 1, mask).astype(np.uint8)
        return mask
