"""``segkit data check``: read every file of a dataset and report what would break or silently change training.

Checking never writes to the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from segkit.conventions import label_range_problem, size_mismatch
from segkit.data.io import BadFileError, list_images, read_gray, read_label, read_rgb
from segkit.data.saliency import find_saliency_sources, pair_files
from segkit.data.voc import VOC_CLASSES, find_voc_root, mask_dir, read_split
from segkit.errors import SegkitError


@dataclass
class CheckReport:
    samples: dict[str, int] = field(default_factory=dict)
    problems: list[dict] = field(default_factory=list)
    conversions: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, path: Path | str, what: str) -> None:
        self.problems.append({"path": str(path), "problem": what})

    def to_json(self) -> dict:
        return {"ok": self.ok, "samples": self.samples, "problems": self.problems, "conversions": self.conversions}


def _conversion(path: Path) -> str | None:
    """What reading ``path`` as RGB converts, if anything (decodes the file as stored, unconverted)."""
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        return None
    notes = []
    if img.dtype == np.uint16:
        notes.append("16-bit -> 8-bit")
    if img.ndim == 2:
        notes.append("grayscale -> RGB")
    elif img.shape[2] == 4:
        notes.append("RGBA -> RGB (alpha dropped)")
    return ", ".join(notes) or None


def check_pair(report: CheckReport, image: Path, mask: Path, read_mask, check_mask=None, num_classes: int = 1) -> None:
    """Read one image/mask pair as training would and record every problem (``check_mask(mask, num_classes)``
    says what is wrong with a mask's values, or what silently changes their meaning, when given)."""
    try:
        rgb = read_rgb(image)
    except BadFileError as err:
        report.problem(err.path, err.problem)
        return
    note = _conversion(image)
    if note:
        report.conversions.append({"path": str(image), "conversion": note})
    try:
        m = read_mask(mask)
    except BadFileError as err:
        report.problem(err.path, err.problem)
        return
    problem = size_mismatch(m.shape, rgb.shape, image.name)
    if problem:
        report.problem(mask, problem + _orientation_hint(image, m.shape, rgb.shape))
    problem = check_mask(m, num_classes, mask) if check_mask else None
    if problem:
        report.problem(mask, problem)


def _orientation_hint(image: Path, mask_shape: tuple, image_shape: tuple) -> str:
    """A note when the sizes differ only by a quarter turn: the image's EXIF orientation is why, or may be."""
    if tuple(mask_shape[:2]) != (image_shape[1], image_shape[0]):
        return ""
    from segkit.data.io import exif_orientation

    orientation = exif_orientation(np.fromfile(str(image), dtype=np.uint8))
    if orientation in (5, 6, 7, 8):
        return (
            f" (the image's EXIF orientation {orientation} turns it a quarter turn when displayed, and segkit reads "
            "it as displayed; the mask was made for the stored, unturned pixels: turn the mask to match)"
        )
    return " (the sizes differ by a quarter turn: is one of the two rotated?)"


def check_saliency(root: Path, check_mask=None, family=None) -> CheckReport:
    """Every dataset under ``root`` in the family's layouts (``segkit.data.saliency``; default: the saliency
    datasets); ``check_mask(mask, 1)`` names what is wrong with a mask's values."""
    from segkit.data.saliency import SOD

    report = CheckReport()
    for source in find_saliency_sources(root, family or SOD):
        check_folder_pair(report, source.name, source.image_dir, source.mask_dir, read_gray, check_mask)
    return report


def check_folder_pair(
    report: CheckReport, name: str, images: Path, masks: Path, read_mask, check_mask=None, num_classes: int = 1
) -> None:
    """Two folders paired by stem, into ``report`` under ``name``: the unpaired files, then every pair."""
    pairs = pair_files(Path(images), Path(masks))
    report.samples[name] = len(pairs.pairs)
    for p in pairs.images_without_mask:
        report.problem(p, "image without a mask")
    for p in pairs.masks_without_image:
        report.problem(p, "mask without an image")
    for image, mask in pairs.pairs:
        check_pair(report, image, mask, read_mask, check_mask, num_classes)


def check_segmentation(root: Path, check_mask=None) -> CheckReport:
    """Every split of a PASCAL VOC folder; ``check_mask(mask, num_classes)`` names what is wrong with a mask."""
    report = CheckReport()
    voc = find_voc_root(root)
    split_dir = voc / "ImageSets" / "Segmentation"
    for split_file in sorted(split_dir.glob("*.txt")):
        split = split_file.stem
        masks = mask_dir(voc, split)
        ids = read_split(voc, split)
        report.samples[split] = len(ids)
        for image_id in ids:
            image, mask = voc / "JPEGImages" / f"{image_id}.jpg", masks / f"{image_id}.png"
            if not image.is_file():
                report.problem(image, f"listed in {split}.txt but missing")
            elif not mask.is_file():
                report.problem(mask, f"listed in {split}.txt but missing")
            else:
                check_pair(report, image, mask, read_label, check_mask or _label_check, len(VOC_CLASSES))
    listed = {line.split()[0] for f in split_dir.glob("*.txt") for line in f.read_text().splitlines() if line}
    voc_masks = mask_dir(voc, "val")
    for p in list_images(voc_masks) if voc_masks.is_dir() else []:
        if p.stem not in listed:
            report.problem(p, "mask not listed in any split file")
    return report


def _label_check(mask: np.ndarray, num_classes: int, path: Path) -> str | None:
    return label_range_problem(mask, num_classes)


def displayed_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image as segkit reads it (EXIF orientation applied), from its header alone."""
    from PIL import Image, UnidentifiedImageError

    if path.stat().st_size == 0:
        raise BadFileError(path, "is empty (0 bytes)")
    try:
        with Image.open(path) as im:
            width, height = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise BadFileError(path, f"is not a readable image ({err})") from None
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def preflight(source, progress=None) -> list[str]:
    """Every problem of a file source's pairs that would stop training, found before step 1: each image's header
    (readable, its size as displayed), each mask read and checked as training reads it (size, values). Seconds for
    thousands of pairs (images are not decoded; a damaged image body is still met when it is first read).
    ``progress(n)`` is called after each pair when given. Returns ``path: problem`` lines."""
    problems = []
    for image, mask in source.pairs:
        try:
            height, width = displayed_size(image)
            m = source.read_mask(mask)
        except BadFileError as err:
            problems.append(str(err))
        else:
            problem = size_mismatch(m.shape, (height, width), image.name)
            if problem is None and source.check_mask is not None:
                problem = source.check_mask(m, source.num_classes, mask)
            if problem:
                problems.append(f"{mask}: {problem}")
        if progress:
            progress(1)
    return problems


def check_root(root: Path | str) -> Path:
    """``root`` as a Path, or an error when it does not exist."""
    root = Path(root)
    if not root.exists():
        raise SegkitError(f"dataset root '{root}' does not exist")
    return root


def format_report(report: CheckReport, limit: int = 30) -> str:
    lines = ["samples: " + ", ".join(f"{k} {v}" for k, v in report.samples.items())]
    if report.conversions:
        kinds: dict[str, int] = {}
        for c in report.conversions:
            kinds[c["conversion"]] = kinds.get(c["conversion"], 0) + 1
        lines.append("conversions applied when read: " + "; ".join(f"{k}: {n} files" for k, n in kinds.items()))
    if report.ok:
        lines.append("no problems found")
    else:
        lines.append(f"{len(report.problems)} problems:")
        lines += [f"  {p['path']}: {p['problem']}" for p in report.problems[:limit]]
        if len(report.problems) > limit:
            lines.append(f"  ... and {len(report.problems) - limit} more (see --json)")
    return "\n".join(lines)
