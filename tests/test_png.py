"""segkit's fast PNG reader gives OpenCV's pixels, or declines (None) and leaves the file to OpenCV."""

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from segkit.data.io import BadFileError, read_gray
from segkit.data.png import decode_grey_png


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(rows, filters, extra=(), depth=8, colour=0, interlace=0, idat_parts=1, tail=b"", size=None) -> bytes:
    """A PNG written by hand: ``rows`` (H, W) uint8 filtered as ``filters`` (one PNG filter type per row) with
    this writer's own filtering (None, Sub, Up, Paeth), IDAT split in ``idat_parts``; ``extra`` chunks before it;
    ``tail`` bytes compressed after the rows; ``size`` (width, height) written in the header instead of the real."""
    h, w = rows.shape
    data = bytearray()
    prev = np.zeros(w, np.int32)
    for y, f in enumerate(filters):
        cur = rows[y].astype(np.int32)
        left = np.concatenate([[0], cur[:-1]])
        if f == 0:
            out = cur
        elif f == 1:
            out = cur - left
        elif f == 2:
            out = cur - prev
        else:  # Paeth
            up_left = np.concatenate([[0], prev[:-1]])
            p = left + prev - up_left
            pa, pb, pc = np.abs(p - left), np.abs(p - prev), np.abs(p - up_left)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, up_left))
            out = cur - pred
        data += bytes([f]) + (out % 256).astype(np.uint8).tobytes()
        prev = cur
    header = struct.pack(">IIBBBBB", *(size or (w, h)), depth, colour, 0, 0, interlace)
    packed = zlib.compress(bytes(data) + tail)
    cut = max(1, len(packed) // idat_parts)
    parts = [packed[i : i + cut] for i in range(0, len(packed), cut)]
    body = b"".join(_chunk(b"IDAT", p) for p in parts)
    extra_chunks = b"".join(_chunk(k, v) for k, v in extra)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + extra_chunks + body + _chunk(b"IEND", b"")


def _opencv(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.fixture
def noisy():
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (37, 53), dtype=np.uint8)


def test_opencv_written_maps_decode_to_opencvs_pixels(noisy):
    for image in (noisy, np.zeros((5, 7), np.uint8), np.full((1, 1), 255, np.uint8), noisy[:, :1]):
        ok, encoded = cv2.imencode(".png", image)
        got = decode_grey_png(encoded.tobytes())
        assert got is not None, "OpenCV's own PNGs (Sub rows) take the fast path"
        assert got.dtype == np.uint8 and got.flags.c_contiguous and np.array_equal(got, image)


def test_rows_mixing_none_and_sub_several_idat_chunks_and_text_chunks(noisy):
    filters = [i % 2 for i in range(noisy.shape[0])]
    data = _png(noisy, filters, extra=[(b"tEXt", b"Software\x00hand"), (b"pHYs", bytes(9))], idat_parts=5)
    assert np.array_equal(_opencv(data), noisy)
    assert np.array_equal(decode_grey_png(data), noisy)
    all_none = _png(noisy, [0] * noisy.shape[0])
    assert np.array_equal(decode_grey_png(all_none), noisy)


@pytest.mark.parametrize(
    "why, kwargs",
    [
        ("an Up row", {"filters": "up"}),
        ("a Paeth row", {"filters": "paeth"}),
        ("a transparency chunk (OpenCV adds an alpha channel)", {"extra": [(b"tRNS", b"\x00\x00")]}),
        ("an EXIF chunk (an orientation to apply)", {"extra": [(b"eXIf", b"MM\x00*\x00\x00\x00\x08\x00\x00")]}),
        ("an unknown chunk", {"extra": [(b"abCd", b"x")]}),
        ("16-bit", {"depth": 16}),
        ("interlaced", {"interlace": 1}),
    ],
)
def test_other_files_are_left_to_opencv(noisy, why, kwargs):
    filters = [1] * noisy.shape[0]
    if kwargs.get("filters") == "up":
        filters[3] = 2
    if kwargs.get("filters") == "paeth":
        filters[-1] = 4
    rest = {k: v for k, v in kwargs.items() if k != "filters"}
    assert decode_grey_png(_png(noisy, filters, **rest)) is None, why
    if "filters" in kwargs:  # the writer above is right: OpenCV reads the same file as the image
        assert np.array_equal(_opencv(_png(noisy, filters)), noisy)


def test_streams_that_do_not_hold_exactly_the_image_are_left_to_opencv(noisy):
    """More data than the header's rows (or a header of 1.6 G pixels over a small stream: never inflated in full),
    and IDAT chunks with another chunk between them."""
    rows = [1] * noisy.shape[0]
    assert decode_grey_png(_png(noisy, rows, tail=b"\x00" * 54)) is None, "one row more than the header says"
    assert decode_grey_png(_png(noisy, rows, size=(40000, 40000))) is None
    good = _png(noisy, rows, idat_parts=3)
    first_idat = good.index(b"IDAT") - 4
    second_idat = good.index(b"IDAT", first_idat + 8) - 4
    split = good[:second_idat] + _chunk(b"tEXt", b"a\x00b") + good[second_idat:]
    assert decode_grey_png(good) is not None and decode_grey_png(split) is None


def test_colour_palette_and_broken_files_are_left_to_opencv(noisy):
    rgb, palette = io.BytesIO(), io.BytesIO()
    Image.fromarray(np.dstack([noisy] * 3)).save(rgb, "PNG")
    Image.fromarray(noisy).convert("P").save(palette, "PNG")
    good = _png(noisy, [1] * noisy.shape[0])
    bad_crc = bytearray(good)
    bad_crc[60] ^= 0xFF  # inside the first IDAT: its CRC no longer matches
    for data in (rgb.getvalue(), palette.getvalue(), bytes(bad_crc), good[:-12], good[:40], b"", b"GIF89a"):
        assert decode_grey_png(data) is None


def test_read_gray_reports_a_broken_png_as_opencv_did(tmp_path, noisy):
    """A file the fast reader declines gets the message it got before (OpenCV's path)."""
    good = _png(noisy, [1] * noisy.shape[0])
    (tmp_path / "torn.png").write_bytes(good[:-12])  # IEND missing
    with pytest.raises(BadFileError, match="is truncated"):
        read_gray(tmp_path / "torn.png")
    corrupt = bytearray(good)
    corrupt[60] ^= 0xFF
    (tmp_path / "crc.png").write_bytes(bytes(corrupt))
    with pytest.raises(BadFileError, match="not a readable image"):
        read_gray(tmp_path / "crc.png")


def test_the_real_reference_maps_read_as_opencv_reads_them(sod_reference):
    """Real saliency maps and masks (several writers: OpenCV's Sub rows, adaptive filters with Paeth, RGB)."""
    files = sorted(sod_reference.rglob("*.png"))
    fast = 0
    for path in files:
        data = path.read_bytes()
        want = _opencv(data)
        if want.ndim == 3:
            want = cv2.cvtColor(want, cv2.COLOR_BGR2GRAY)
        assert np.array_equal(read_gray(path), want), path
        fast += decode_grey_png(data) is not None
    assert len(files) >= 10 and 0 < fast < len(files), (fast, len(files))
