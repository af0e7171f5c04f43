"""Reading images and masks with clear errors: every failure names the file and the problem."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from segkit.errors import SegkitError

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # problems are reported by segkit, per file

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class BadFileError(SegkitError):
    """A data file that cannot be used; ``path`` and ``problem`` are kept for reports."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def _read_bytes(path: Path) -> np.ndarray:
    try:
        data = np.fromfile(str(path), dtype=np.uint8)  # works for non-ASCII names, unlike cv2.imread
    except OSError as err:
        raise BadFileError(path, f"cannot be read ({err.strerror})") from None
    if data.size == 0:
        raise BadFileError(path, "is empty (0 bytes)")
    return data


def _decode(path: Path, flags: int) -> np.ndarray:
    data = _read_bytes(path)
    img = cv2.imdecode(data, flags)
    truncated = _looks_truncated(path.suffix.lower(), data[-1024:].tobytes())
    if truncated:
        raise BadFileError(path, "is truncated (the file ends before the image data does)")
    if img is None:
        raise BadFileError(path, "is not a readable image (corrupt or unsupported format)")
    return img


def _looks_truncated(suffix: str, tail: bytes) -> bool:
    """A JPEG without its end-of-image marker, or a PNG without its IEND chunk: OpenCV decodes both partially,
    filling the missing rows with grey, so the file's end is checked."""
    if suffix in (".jpg", ".jpeg"):
        return b"\xff\xd9" not in tail
    if suffix == ".png":
        return b"IEND" not in tail
    return False


def read_rgb(path: Path | str) -> np.ndarray:
    """An RGB uint8 image (H, W, 3); grayscale, RGBA and 16-bit files are converted."""
    img = _decode(Path(path), cv2.IMREAD_UNCHANGED)
    if img.dtype == np.uint16:
        img = (img / 257).round().astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_gray(path: Path | str) -> np.ndarray:
    """A grey-level uint8 map (H, W): saliency masks and predictions (colour files converted, 16-bit scaled)."""
    img = _decode(Path(path), cv2.IMREAD_UNCHANGED)
    if img.dtype == np.uint16:
        img = (img / 257).round().astype(np.uint8)
    if img.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        img = cv2.cvtColor(img, code)
    return img


def read_label(path: Path | str) -> np.ndarray:
    """A class-index map (H, W) uint8: palette PNGs give their indices (never their colours)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    _read_bytes(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "L", "I;16", "I"):
                arr = np.asarray(im)
            else:
                raise BadFileError(path, f"is a {im.mode} image, not a label map (palette or grayscale PNG)")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise BadFileError(path, f"is not a readable label map ({err})") from None
    if arr.dtype != np.uint8:
        if arr.max() > 255:
            raise BadFileError(path, f"holds label {int(arr.max())}, above 255")
        arr = arr.astype(np.uint8)
    return arr


def list_images(folder: Path | str) -> list[Path]:
    """Image files in ``folder`` (not recursive), sorted; other files are ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SegkitError(f"folder '{folder}' does not exist")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, then rename it into place: a failed write (read-only
    folder, full disk) raises a SegkitError naming the file and leaves no partial file behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise SegkitError(f"could not write '{path}': {err.strerror or err}") from None


def write_image(path: Path | str, image: np.ndarray, params: tuple[int, ...] = ()) -> None:
    """Encode ``image`` (grey, or BGR as OpenCV orders colours) in the format of ``path``'s suffix and write it
    with ``write_bytes``."""
    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix or ".png", image, list(params))
    if not ok:
        raise SegkitError(f"could not encode '{path}' as {path.suffix or '.png'}")
    write_bytes(path, encoded.tobytes())


def write_png(path: Path | str, mask: np.ndarray) -> None:
    """An 8-bit grey PNG (a saliency map or mask), written with ``write_bytes``."""
    write_image(Path(path), mask)
