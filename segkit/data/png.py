"""A fast reader for the PNGs that OpenCV (and so segkit, and most Python saliency code) writes: 8-bit grey,
not interlaced, every row filtered with None or Sub. Anything else returns None and is decoded by OpenCV.

Why by hand: scoring saved maps spends a third of its time decoding PNGs, and OpenCV's libpng, Pillow and libspng
all take 1.3-1.8 ms for a noisy 400x300 map (measured). Such a map's rows are Sub-filtered: undoing that is a
running sum along each row (mod 256), done here for all rows at once from OpenCV's integral image, and the
inflate runs on ISA-L (python-isal: 2-4x zlib's speed here) where it is installed. The result is OpenCV's,
pixel for pixel (tests compare both on every kind of file); every chunk's CRC is checked, and a file this reader
does not fully understand (another colour type or depth, a transparency chunk, a bad CRC, a short stream) is
left to OpenCV, so a broken file gets the same message as before.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

try:  # ISA-L's inflate and CRC: the same results as zlib's, faster
    from isal.isal_zlib import crc32 as _crc32
    from isal.isal_zlib import decompressobj as _inflater
    from isal.isal_zlib import error as _InflateError
except ImportError:  # pragma: no cover - isal is a dependency; a platform without its wheel still works
    from zlib import crc32 as _crc32
    from zlib import decompressobj as _inflater
    from zlib import error as _InflateError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that change nothing in the pixels OpenCV returns (text, time, physical size): others (transparency,
# palette, eXIf orientation, anything unknown) send the file to OpenCV.
_IGNORED_CHUNKS = frozenset({b"tEXt", b"zTXt", b"iTXt", b"tIME", b"pHYs"})
_NONE, _SUB = 0, 1
MAX_PIXELS = 2**30  # OpenCV's own limit (CV_IO_MAX_IMAGE_PIXELS): a larger header goes to OpenCV, which refuses it


def decode_grey_png(data) -> np.ndarray | None:
    """The (H, W) uint8 image of an 8-bit grey, non-interlaced PNG whose rows use the None or Sub filter (bytes
    or a uint8 array); None for any other file (the caller decodes it with OpenCV)."""
    view = memoryview(data).cast("B")
    if bytes(view[:8]) != SIGNATURE:
        return None
    parts = _chunks(view)
    if parts is None:
        return None
    width, height, idat = parts
    expected = height * (width + 1)
    inflater = _inflater()
    try:  # at most one byte more than the image holds: a stream that inflates further is not this image
        raw = inflater.decompress(b"".join(idat), expected + 1)
    except (_InflateError, ValueError):
        return None
    if len(raw) != expected or not inflater.eof:
        return None  # short, long or unfinished: OpenCV decides
    rows = np.frombuffer(raw, np.uint8).reshape(height, width + 1)
    filters = rows[:, 0]
    if not np.all(filters <= _SUB):
        return None  # Up, Average or Paeth rows depend on the row above: left to OpenCV
    pixels = rows[:, 1:]
    sub = filters == _SUB
    if sub.all():
        return _running_sum_along_rows(pixels)
    image = pixels.copy()
    if sub.any():
        image[sub] = _running_sum_along_rows(image[sub])
    return image


def _chunks(view: memoryview) -> tuple[int, int, list[memoryview]] | None:
    """(width, height, IDAT payloads) when the header is 8-bit grey, not interlaced, every chunk's CRC is right
    and every chunk is one ``decode_grey_png`` may ignore; else None."""
    pos, n = 8, len(view)
    header, idat, idat_ended = None, [], False
    while pos + 12 <= n:
        length, kind = struct.unpack_from(">I4s", view, pos)
        end = pos + 12 + length
        if end > n or _crc32(view[pos + 4 : pos + 8 + length]) != int.from_bytes(view[end - 4 : end], "big"):
            return None
        body = view[pos + 8 : pos + 8 + length]
        if kind == b"IHDR" and header is None and length == 13:
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT" and header is not None and not idat_ended:
            idat.append(body)
        elif kind == b"IEND":
            break
        elif kind in _IGNORED_CHUNKS:
            idat_ended = bool(idat)  # the IDAT chunks must follow one another
        else:
            return None
        pos = end
    else:
        return None  # no IEND: a truncated file
    if header is None or not idat:
        return None
    width, height, depth, colour, compression, filtering, interlace = header
    if (depth, colour, compression, filtering, interlace) != (8, 0, 0, 0, 0) or not 0 < width * height <= MAX_PIXELS:
        return None
    return width, height, idat


def _running_sum_along_rows(image: np.ndarray) -> np.ndarray:
    """Each row's running sum mod 256 (undoing PNG's Sub filter for one byte per pixel), a new array: the rows of
    OpenCV's integral image differenced (int32, vectorised; 0.05 ms for 400x300 against 0.27 ms for numpy's
    cumsum, measured), then cast to uint8, which keeps the sum mod 256. Above 2^31 / 255 pixels the integral
    could overflow int32: such images take numpy's cumsum."""
    if image.size * 255 >= 2**31:
        return np.cumsum(image, axis=1, dtype=np.uint8)
    sums = cv2.integral(image, sdepth=cv2.CV_32S)  # (H + 1, W + 1): sums[y + 1, x + 1] = all pixels up to (y, x)
    return cv2.subtract(sums[1:, 1:], sums[:-1, 1:]).astype(np.uint8)
