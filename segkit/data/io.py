"""Reading images and masks with clear errors: every failure names the file and the problem."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from segkit.data.png import decode_grey_png
from segkit.errors import SegkitError

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # problems are reported by segkit, per file

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")  # a GIF: its first frame


class BadFileError(SegkitError):
    """A data file that cannot be used; ``path`` and ``problem`` are kept for reports."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def will_read(paths) -> None:
    """Tell the operating system these files are about to be read (``posix_fadvise`` WILLNEED), so that those
    not in its cache are fetched in the background while the caller works on the first ones: a file not cached
    cost 250-330 us of reading, one asked for ahead 40-60 us in all (measured, 76 KB PNGs). Best effort: a file
    that cannot be opened is left for the read itself to report; a no-op where the call does not exist."""
    if not hasattr(os, "posix_fadvise"):
        return
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


def _read_bytes(path: Path) -> np.ndarray:
    try:
        data = np.fromfile(str(path), dtype=np.uint8)  # works for non-ASCII names, unlike cv2.imread
    except OSError as err:
        raise BadFileError(path, f"cannot be read ({err.strerror})") from None
    if data.size == 0:
        raise BadFileError(path, "is empty (0 bytes)")
    return data


def _decode(path: Path, flags: int, data: np.ndarray | None = None) -> np.ndarray:
    """The file (or its bytes, ``data``, already read) decoded by OpenCV and turned as the file's EXIF orientation
    says (as every viewer shows it)."""
    data = _read_bytes(path) if data is None else data
    img = cv2.imdecode(data, flags)
    if _looks_truncated(data):
        raise BadFileError(path, "is truncated (the file ends before the image data does)")
    if img is None:
        raise BadFileError(path, "is not a readable image (corrupt or unsupported format)")
    return apply_orientation(img, exif_orientation(data))


def _looks_truncated(data: np.ndarray) -> bool:
    """A JPEG whose marker stream ends before its end-of-image marker, or a PNG without its IEND chunk: OpenCV
    decodes both partially, filling the missing rows with grey. Data after a JPEG's end (a motion photo's video)
    is allowed. Told by the file's first bytes, not its name (a PNG saved as .jpg is a PNG); a file that is
    neither is left to the decoder."""
    head = data[:8].tobytes()
    if head.startswith(b"\xff\xd8"):
        if data[-2:].tobytes() == b"\xff\xd9":
            return False  # ends with its end-of-image marker: the common case, no walk needed
        complete = jpeg_reaches_end(data.tobytes())
        return (b"\xff\xd9" not in data[-1024:].tobytes()) if complete is None else not complete
    if head == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in data[-1024:].tobytes()
    return False


def jpeg_reaches_end(data: bytes) -> bool | None:
    """Whether a JPEG's segments and scans run to its end-of-image marker; None when the stream is not one this
    walk understands (the caller then falls back to looking for the marker at the file's end)."""
    n = len(data)
    if n < 4 or data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 1 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0xD9:  # end of image
            return True
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            i += 2
        else:
            if i + 3 >= n:
                return False
            i += 2 + ((data[i + 2] << 8) | data[i + 3])
            if marker == 0xDA:  # start of scan: entropy-coded data runs to the next marker (FF not followed by 00)
                i = _scan_end(data, i)
                if i < 0:
                    return False
    return False


def _scan_end(data: bytes, i: int) -> int:
    """Index of the first marker after entropy-coded data starting at ``i`` (-1 when the data ends first)."""
    n = len(data)
    while True:
        j = data.find(b"\xff", i)
        if j < 0 or j + 1 >= n:
            return -1
        following = data[j + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:  # stuffing, restart, fill
            i = j + 1 if following == 0xFF else j + 2
            continue
        return j


def exif_orientation(data: np.ndarray) -> int:
    """The EXIF orientation tag (1..8) of an encoded image, 1 when it has none (read from the header only)."""
    import io

    from PIL import Image, UnidentifiedImageError

    head = data[:65536].tobytes()
    if b"Exif" not in head and b"eXIf" not in head:  # no EXIF block (the common case): nothing to read
        return 1
    try:
        with Image.open(io.BytesIO(data.tobytes())) as im:
            value = im.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """``img`` (H, W[, C]) turned as EXIF ``orientation`` says, so it looks as it is displayed."""
    turned = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],  # mirrored
        3: lambda a: a[::-1, ::-1],  # rotated 180
        4: lambda a: a[::-1],  # flipped
        5: lambda a: a.swapaxes(0, 1),  # transposed
        6: lambda a: np.rot90(a, -1),  # rotated 90 clockwise to display
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # transversed
        8: lambda a: np.rot90(a, 1),  # rotated 90 counter-clockwise to display
    }[orientation](img)
    return np.ascontiguousarray(turned)


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
    """A grey-level uint8 map (H, W): saliency masks and predictions (colour files converted, 16-bit scaled). The
    PNGs OpenCV writes (8-bit grey, Sub-filtered) take ``decode_grey_png``, 2-3x faster, the same pixels."""
    path = Path(path)
    data = _read_bytes(path)
    img = decode_grey_png(data)  # None: any other file, decoded by OpenCV below
    if img is not None:
        return img
    img = _decode(path, cv2.IMREAD_UNCHANGED, data)
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
                arr = apply_orientation(np.asarray(im), im.getexif().get(0x0112, 1) or 1)
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
    with os.scandir(folder) as entries:  # the entries' types come with the listing: no stat per file
        names = [e.name for e in entries if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES and e.is_file()]
    return [folder / name for name in sorted(names)]


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
