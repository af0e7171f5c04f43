"""PASCAL VOC 2012 segmentation: the layout, the palette, and SBD's augmented training set (train_aug).

Layout::

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClass/<id>.png          palette PNG, index = class id, 255 = ignore
    VOCdevkit/VOC2012/SegmentationClassAug/<id>.png       made by `segkit data prepare-voc-aug`
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval,train_aug}.txt
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segkit.data.io import BadFileError
from segkit.errors import SegkitError

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
MASK_DIR = "SegmentationClass"  # VOC's own masks
AUG_MASK_DIR = "SegmentationClassAug"  # train_aug masks, made by prepare_voc_aug
AUG_SPLIT = "train_aug"


def mask_dir(voc: Path, split: str) -> Path:
    """The folder holding the masks of ``split``: SegmentationClassAug for train_aug, SegmentationClass else."""
    return voc / (AUG_MASK_DIR if split == AUG_SPLIT else MASK_DIR)


def voc_palette() -> np.ndarray:
    """The VOC colour map (256, 3) uint8: class id bits spread over the high bits of R, G and B."""
    palette = np.zeros((256, 3), np.uint8)
    for label in range(256):
        c, r, g, b = label, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[label] = (r, g, b)
    return palette


def save_label_png(path: Path | str, labels: np.ndarray) -> None:
    """Write a class-index map as a palette PNG with VOC colours (the indices are the class ids); written to a
    temporary name and renamed into place (``segkit.data.io.write_bytes``)."""
    import io

    from PIL import Image

    from segkit.data.io import write_bytes

    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    im.putpalette(voc_palette().ravel().tolist())
    buffer = io.BytesIO()
    im.save(buffer, format="PNG")
    write_bytes(path, buffer.getvalue())


def find_voc_root(root: Path | str) -> Path:
    """The VOC2012 folder, given it, its VOCdevkit parent, or a folder holding VOCdevkit."""
    root = Path(root)
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir() and (candidate / "ImageSets" / "Segmentation").is_dir():
            return candidate
    if not root.exists():
        raise SegkitError(f"dataset root '{root}' does not exist")
    raise SegkitError(
        f"'{root}' is not a PASCAL VOC 2012 folder: expected VOCdevkit/VOC2012/JPEGImages and "
        "VOCdevkit/VOC2012/ImageSets/Segmentation (pass VOCdevkit or VOC2012 itself); see datasets/README.md"
    )


def read_split(voc: Path, split: str) -> list[str]:
    """Image ids of a split file (ImageSets/Segmentation/<split>.txt)."""
    path = voc / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not path.is_file():
        hint = " (run `segkit data prepare-voc-aug` to make it)" if split == AUG_SPLIT else ""
        raise SegkitError(f"split file '{path}' does not exist{hint}")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise SegkitError(f"split file '{path}' is empty")
    return ids


def voc_samples(root: Path | str, split: str) -> list[tuple[Path, Path]]:
    """(image, mask) paths of a VOC split; train_aug masks come from SegmentationClassAug."""
    voc = find_voc_root(root)
    masks = mask_dir(voc, split)
    return [(voc / "JPEGImages" / f"{i}.jpg", masks / f"{i}.png") for i in read_split(voc, split)]


def voc_train_split(root: Path | str) -> str:
    """The training split: train_aug when its split file exists (made by prepare-voc-aug), else train."""
    voc = find_voc_root(root)
    return AUG_SPLIT if (voc / "ImageSets" / "Segmentation" / f"{AUG_SPLIT}.txt").is_file() else "train"


def _sbd_dataset_dir(sbd_root: Path) -> Path:
    for candidate in (sbd_root, sbd_root / "dataset", sbd_root / "benchmark_RELEASE" / "dataset"):
        if (candidate / "cls").is_dir():
            return candidate
    raise SegkitError(
        f"'{sbd_root}' is not an SBD folder: expected benchmark_RELEASE/dataset/cls/*.mat with train.txt and "
        "val.txt beside cls/ (pass benchmark_RELEASE or its dataset/ folder)"
    )


def read_sbd_mat(path: Path) -> np.ndarray:
    """The class map of an SBD ``cls/<id>.mat`` file (GTcls.Segmentation), as uint8."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path), squeeze_me=True, struct_as_record=False)
        seg = np.asarray(mat["GTcls"].Segmentation)
    except Exception as err:  # scipy raises ValueError / KeyError / OSError for damaged or foreign files
        raise BadFileError(path, f"is not a readable SBD class file ({type(err).__name__}: {err})") from None
    return seg.astype(np.uint8)


def prepare_voc_aug(voc_root: Path | str, sbd_root: Path | str, overwrite: bool = False) -> dict:
    """Build SegmentationClassAug/ and train_aug.txt: VOC train plus SBD train and val, minus VOC val.

    Ids with a VOC annotation keep it (VOC's own labels, with their 255 borders); the others are converted from
    SBD's ``cls/*.mat``. Existing PNGs are kept unless ``overwrite``.
    """
    voc = find_voc_root(voc_root)
    sbd = _sbd_dataset_dir(Path(sbd_root))
    voc_train, voc_val = read_split(voc, "train"), set(read_split(voc, "val"))
    sbd_ids: list[str] = []
    for name in ("train.txt", "val.txt"):
        if (sbd / name).is_file():
            sbd_ids += [line.strip() for line in (sbd / name).read_text().splitlines() if line.strip()]
    if not sbd_ids:
        raise SegkitError(f"SBD folder '{sbd}' has no train.txt or val.txt")
    ids = sorted(set(voc_train) | (set(sbd_ids) - voc_val))
    out_dir = mask_dir(voc, AUG_SPLIT)
    out_dir.mkdir(exist_ok=True)
    from_voc = from_sbd = kept = 0
    missing: list[str] = []
    for image_id in ids:
        target = out_dir / f"{image_id}.png"
        if target.exists() and not overwrite:
            kept += 1
            continue
        voc_mask = mask_dir(voc, "train") / f"{image_id}.png"
        if voc_mask.is_file():
            from segkit.data.io import read_label

            save_label_png(target, read_label(voc_mask))
            from_voc += 1
        elif (sbd / "cls" / f"{image_id}.mat").is_file():
            save_label_png(target, read_sbd_mat(sbd / "cls" / f"{image_id}.mat"))
            from_sbd += 1
        else:
            missing.append(image_id)
    ids = [i for i in ids if i not in set(missing)]
    (voc / "ImageSets" / "Segmentation" / f"{AUG_SPLIT}.txt").write_text("\n".join(ids) + "\n")
    return {"train_aug": len(ids), "from_voc": from_voc, "from_sbd": from_sbd, "kept": kept, "missing": missing}
