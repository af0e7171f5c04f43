"""Salient object detection datasets in the layouts they ship in, recognised from their folders.

Images and masks pair by file stem; masks keep their grey levels (PASCAL-S and parts of DUTS are not binary).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segkit.data.io import list_images
from segkit.errors import SegkitError


@dataclass(frozen=True)
class Layout:
    name: str
    image_dir: str
    mask_dir: str


# Each dataset's folders as distributed (see datasets/README.md).
LAYOUTS: tuple[Layout, ...] = (
    Layout("DUTS-TR", "DUTS-TR-Image", "DUTS-TR-Mask"),
    Layout("DUTS-TE", "DUTS-TE-Image", "DUTS-TE-Mask"),
    Layout("ECSSD", "images", "ground_truth_mask"),
    Layout("HKU-IS", "imgs", "gt"),
    Layout("PASCAL-S", "Imgs", "GT"),
    Layout("DUT-OMRON", "DUT-OMRON-image", "pixelwiseGT-new-PNG"),
    Layout("folders", "images", "masks"),
)


@dataclass(frozen=True)
class SaliencySource:
    """One saliency dataset on disk: its name and its image and mask folders."""

    name: str
    image_dir: Path
    mask_dir: Path


def detect_layout(folder: Path) -> SaliencySource | None:
    """The known layout ``folder`` is in, or None."""
    for layout in LAYOUTS:
        images, masks = folder / layout.image_dir, folder / layout.mask_dir
        if images.is_dir() and masks.is_dir():
            name = folder.name if layout.name == "folders" else layout.name
            return SaliencySource(name, images, masks)
    return None


def find_saliency_sources(root: Path | str) -> list[SaliencySource]:
    """Every dataset under ``root``: root itself, or its sub-folders (a ``datasets/`` folder holding several)."""
    root = Path(root)
    if not root.is_dir():
        raise SegkitError(f"dataset root '{root}' does not exist")
    found = detect_layout(root)
    if found:
        return [found]
    sources = [s for sub in sorted(p for p in root.iterdir() if p.is_dir()) if (s := detect_layout(sub))]
    if not sources:
        known = ", ".join(f"{lay.name} ({lay.image_dir}/ + {lay.mask_dir}/)" for lay in LAYOUTS)
        raise SegkitError(
            f"no saliency dataset found in '{root}'. Known layouts: {known}. Or pass --images DIR --masks DIR"
        )
    return sources


def find_source(root: Path | str, name: str) -> SaliencySource:
    """The dataset called ``name`` (e.g. DUTS-TR, ECSSD) under ``root``."""
    sources = find_saliency_sources(root)
    for source in sources:
        if source.name.lower() == name.lower():
            return source
    raise SegkitError(f"dataset '{name}' not found under '{root}'; found: {', '.join(s.name for s in sources)}")


@dataclass
class Pairs:
    pairs: list[tuple[Path, Path]]
    images_without_mask: list[Path]
    masks_without_image: list[Path]


def pair_files(image_dir: Path, mask_dir: Path) -> Pairs:
    """Pair images and masks by file stem; non-image files are ignored; the unpaired are reported."""
    images = {p.stem: p for p in list_images(image_dir)}
    masks = {p.stem: p for p in list_images(mask_dir)}
    stems = sorted(images.keys() & masks.keys())
    return Pairs(
        [(images[s], masks[s]) for s in stems],
        [images[s] for s in sorted(images.keys() - masks.keys())],
        [masks[s] for s in sorted(masks.keys() - images.keys())],
    )
