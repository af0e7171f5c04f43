"""Binary-map datasets (salient, camouflaged objects, polyps) in the layouts they ship in, recognised from their
folders. Each community's datasets form a ``DatasetFamily``: its layouts, its training sets (never scored as test
sets) and the order its papers print the test sets in.

Images and masks pair by file stem; masks keep their grey levels (PASCAL-S and parts of DUTS are not binary).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segkit.data.io import list_images
from segkit.errors import SegkitError


@dataclass(frozen=True)
class Layout:
    name: str  # the dataset's name; "folders": the folder's own name (a benchmark's NAME/Imgs + NAME/GT)
    image_dir: str  # relative to the dataset's folder (may be nested: Test/Image)
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
class DatasetFamily:
    """One community's datasets: how their folders look, which are for training, the papers' test-set order."""

    name: str  # the task's word for them: saliency, camouflage, polyp
    layouts: tuple[Layout, ...]
    training_sets: tuple[str, ...]
    paper_order: tuple[str, ...]
    train: tuple[str, ...]  # what ``segkit train --data ROOT`` trains on (the first found, or all of them joined)
    val: str  # and validates on


SOD = DatasetFamily(
    "saliency", LAYOUTS, ("DUTS-TR",), ("ECSSD", "HKU-IS", "PASCAL-S", "DUT-OMRON", "DUTS-TE"), ("DUTS-TR",), "DUTS-TE"
)

# Camouflaged object detection: SINet-V2's layout (TrainDataset/ and TestDataset/NAME/, each Imgs/ + GT/), and
# the datasets' own downloads (COD10K-v3's Train|Test/Image + GT_Object, CAMO's Images/Train|Test + GT).
COD = DatasetFamily(
    "camouflage",
    (
        Layout("COD10K-train", "Train/Image", "Train/GT_Object"),
        Layout("COD10K", "Test/Image", "Test/GT_Object"),
        Layout("CAMO-train", "Images/Train", "GT"),
        Layout("CAMO", "Images/Test", "GT"),
        Layout("folders", "Imgs", "GT"),
        Layout("folders", "images", "masks"),
    ),
    ("TrainDataset", "TrainValDataset", "COD10K-train", "CAMO-train"),
    ("CAMO", "CHAMELEON", "COD10K", "NC4K"),
    ("TrainDataset", "TrainValDataset", "COD10K-train+CAMO-train"),
    "CAMO",
)

# Polyp segmentation: PraNet's layout (TrainDataset/image + mask, TestDataset/NAME/images + masks), Kvasir-SEG's
# download (images/ + masks/) and CVC-ClinicDB's (Original/ + Ground Truth/).
POLYP = DatasetFamily(
    "polyp",
    (
        Layout("folders", "image", "mask"),
        Layout("CVC-ClinicDB", "Original", "Ground Truth"),
        Layout("folders", "images", "masks"),
    ),
    ("TrainDataset",),
    ("Kvasir", "CVC-ClinicDB", "CVC-ColonDB", "ETIS-LaribPolypDB", "CVC-300"),
    ("TrainDataset",),
    "Kvasir",
)


@dataclass(frozen=True)
class SaliencySource:
    """One saliency dataset on disk: its name and its image and mask folders."""

    name: str
    image_dir: Path
    mask_dir: Path


def detect_layouts(folder: Path, family: DatasetFamily = SOD) -> list[SaliencySource]:
    """The datasets ``folder`` holds in the family's layouts (a download such as COD10K-v3 holds two), or []."""
    found: list[SaliencySource] = []
    for layout in family.layouts:
        images, masks = folder / layout.image_dir, folder / layout.mask_dir
        if images.is_dir() and masks.is_dir():
            if layout.name == "folders":
                return found or [SaliencySource(folder.name, images, masks)]
            found.append(SaliencySource(layout.name, images, masks))
    return found


def detect_layout(folder: Path, family: DatasetFamily = SOD) -> SaliencySource | None:
    """The first dataset ``folder`` holds in the family's layouts, or None."""
    found = detect_layouts(folder, family)
    return found[0] if found else None


def find_saliency_sources(root: Path | str, family: DatasetFamily = SOD) -> list[SaliencySource]:
    """Every dataset under ``root``: root itself, its sub-folders (a ``datasets/`` folder holding several), or
    their sub-folders (SINet-V2's and PraNet's ``TestDataset/NAME``)."""
    root = Path(root)
    if not root.is_dir():
        raise SegkitError(f"dataset root '{root}' does not exist")
    found = detect_layouts(root, family)
    if found:
        return found
    sources: list[SaliencySource] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        here = detect_layouts(sub, family)
        sources += here or [
            s for deeper in sorted(p for p in sub.iterdir() if p.is_dir()) for s in detect_layouts(deeper, family)
        ]
    if not sources:
        known = ", ".join(f"{lay.name} ({lay.image_dir}/ + {lay.mask_dir}/)" for lay in family.layouts)
        raise SegkitError(
            f"no {family.name} dataset found in '{root}'. Known layouts: {known} ('folders': any NAME/ with those "
            "two folders). "
            "Or pass --images DIR --masks DIR"
        )
    return sources


def find_source(root: Path | str, name: str, family: DatasetFamily = SOD) -> SaliencySource:
    """The dataset called ``name`` (e.g. DUTS-TR, ECSSD) under ``root``."""
    sources = find_saliency_sources(root, family)
    for source in sources:
        if source.name.lower() == name.lower():
            return source
    raise SegkitError(f"dataset '{name}' not found under '{root}'; found: {', '.join(s.name for s in sources)}")


def training_sources(root: Path | str, family: DatasetFamily) -> list[SaliencySource]:
    """The family's training data under ``root``: the first of ``family.train`` found (``A+B``: both, joined)."""
    sources = {s.name.lower(): s for s in find_saliency_sources(root, family)}
    for option in family.train:
        parts = [sources.get(p.lower()) for p in option.split("+")]
        if all(parts):
            return parts
    found = ", ".join(sorted(s.name for s in sources.values()))
    raise SegkitError(
        f"no training set under '{root}': looked for {' or '.join(family.train)}; found {found}. "
        "Or pass --images DIR --masks DIR"
    )


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
