"""``segkit predict``'s work: image files in, one mask file per image out, nothing overwritten by surprise.

Every output name is planned before anything is written: two inputs that would write the same file, or an
output that would replace an input, stop the command with the names. Files are written to a temporary name and
renamed into place; the first failed write stops the command with the path and the reason.
"""

from __future__ import annotations

import glob
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segkit.data.io import IMAGE_SUFFIXES, BadFileError, read_rgb, write_image, write_png
from segkit.errors import SegkitError
from segkit.tasks import get_task


@dataclass(frozen=True)
class PredictOptions:
    probs: bool = False  # also write <stem>_prob.png (saliency map / max class probability)
    overlay: bool = False  # also write <stem>_overlay.jpg (the mask over the image)
    overwrite: bool = False  # replace existing outputs


@dataclass
class PredictReport:
    written: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)  # unreadable inputs and why


@dataclass
class Inputs:
    """What ``--input`` names: each image with where its outputs go, relative to ``--output`` (its stem; under
    ``--recursive`` also the sub-folders it sits in), and what was passed over, with why."""

    files: dict[Path, Path] = field(default_factory=dict)  # image -> relative output stem
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.files)


def find_inputs(patterns: list[str], recursive: bool = False) -> Inputs:
    """Files, folders (their images; with ``recursive`` those of their sub-folders too, keeping the sub-folders in
    the output) and globs, in order, without duplicates; what a folder or glob holds that is not an image is
    listed in ``skipped``."""
    found = Inputs()
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            images = _folder_images(path, path, recursive, found.skipped)
            if not images:
                raise SegkitError(
                    f"input folder '{path}' holds no image files ({', '.join(IMAGE_SUFFIXES)})"
                    + ("" if recursive else "; pass --recursive to look in its sub-folders")
                )
            for image in images:
                found.files.setdefault(image, image.relative_to(path).with_suffix(""))
        elif path.exists():
            found.files.setdefault(path, Path(path.stem))
        else:
            matches = sorted(Path(m) for m in glob.glob(pattern))
            if not matches:
                raise SegkitError(f"input '{pattern}' matches no file")
            for m in matches:
                if m.is_file():
                    found.files.setdefault(m, Path(m.stem))
                else:
                    found.skipped.append((m, f"a folder matched by '{pattern}' (give the folder itself)"))
    return found


def _folder_images(folder: Path, root: Path, recursive: bool, skipped: list) -> list[Path]:
    images = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            if recursive:
                images += _folder_images(entry, root, recursive, skipped)
            else:
                skipped.append((entry, "a sub-folder (pass --recursive to predict its images too)"))
        elif entry.suffix.lower() in IMAGE_SUFFIXES:
            images.append(entry)
        else:
            skipped.append((entry, f"not an image format segkit reads ({', '.join(IMAGE_SUFFIXES)})"))
    return images


def expand_inputs(patterns: list[str]) -> list[Path]:
    """The images ``patterns`` name (``find_inputs``), in order."""
    return list(find_inputs(patterns).files)


def output_names(inputs: Inputs | list[Path], output: Path, options: PredictOptions) -> dict[Path, list[Path]]:
    """Each input's output files (mask first), checked: no two inputs share an output, no output is an input,
    and existing outputs are replaced only with ``overwrite``."""
    if output.exists() and not output.is_dir():
        raise SegkitError(f"--output '{output}' is a file; give a folder (it is created when missing)")
    stems = inputs.files if isinstance(inputs, Inputs) else {p: Path(p.stem) for p in inputs}
    plan: dict[Path, list[Path]] = {}
    for path, stem in stems.items():
        base = output / stem
        extra = [base.with_name(f"{base.name}_prob.png")] * options.probs + [
            base.with_name(f"{base.name}_overlay.jpg")
        ] * options.overlay
        plan[path] = [base.with_name(f"{base.name}.png"), *extra]
    _refuse_collisions(plan)
    existing = [t for targets in plan.values() for t in targets if t.exists()]
    if existing and not options.overwrite:
        raise SegkitError(
            f"{len(existing)} outputs already exist (e.g. {existing[0]}); nothing was written. "
            "Pass --overwrite to replace them or choose another --output"
        )
    return plan


def _refuse_collisions(plan: dict[Path, list[Path]]) -> None:
    writers: dict[Path, Path] = {}
    clashes = []
    for source, targets in plan.items():
        for target in targets:
            key = target.resolve()
            if key in writers and writers[key] != source:
                clashes.append(f"{writers[key]} and {source} -> {target}")
            writers[key] = source
    if clashes:
        raise SegkitError(
            f"{len(clashes)} outputs would be written twice: {'; '.join(clashes[:5])}. Nothing was written; "
            "rename one of each pair or predict them into separate --output folders"
        )
    inputs = {p.resolve() for p in plan}
    replaced = [t for targets in plan.values() for t in targets if t.resolve() in inputs]
    if replaced:
        raise SegkitError(
            f"the output {replaced[0]} would replace an input image; nothing was written. Choose another --output"
        )


def predict_files(predictor, inputs: Inputs | list[Path], output: Path | str, options: PredictOptions) -> PredictReport:
    """Predict every input and write its mask (and the extras ``options`` ask for) into ``output``.

    Unreadable inputs are skipped and listed in the report; a failed write raises at once."""
    from tqdm import tqdm

    task = get_task(predictor.task)
    output = Path(output)
    plan = output_names(inputs, output, options)
    try:
        output.mkdir(parents=True, exist_ok=True)
        for folder in sorted({t.parent for targets in plan.values() for t in targets}):
            folder.mkdir(parents=True, exist_ok=True)  # --recursive keeps the input's sub-folders
    except OSError as err:
        raise SegkitError(f"cannot create --output '{output}': {err.strerror}") from None
    report = PredictReport()
    for path, targets in tqdm(plan.items(), desc="predict", unit="img", disable=not sys.stderr.isatty()):
        try:
            image = read_rgb(path)
        except BadFileError as err:
            report.failed.append((path, err.problem))
            continue
        probs = predictor.predict_probs(image)
        mask = task.to_mask(probs)
        try:
            task.write_mask(targets[0], mask)
            _write_extras(task, image, probs, mask, targets[1:])
        except SegkitError as err:
            raise SegkitError(f"{err}; stopped after {report.written} of {len(plan)} predictions") from None
        report.written += 1
    return report


def _write_extras(task, image: np.ndarray, probs: np.ndarray, mask: np.ndarray, targets: list[Path]) -> None:
    from segkit.conventions import probs_to_uint8

    for target in targets:
        if target.name.endswith("_prob.png"):
            write_png(target, probs_to_uint8(task.confidence(probs)))
        else:
            write_image(target, np.ascontiguousarray(task.overlay(image, mask)[..., ::-1]))
