"""``read_image_rgba``: EXIF orientation on every path (16-bit colour PNGs included), one-line errors, quiet OpenCV."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from blindbench.errors import ImageReadError
from blindbench.imageio import apply_orientation, read_image_rgba


@pytest.mark.parametrize("orientation", range(1, 9))
def test_apply_orientation_equals_pil_exif_transpose(orientation: int) -> None:
    array = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    image = Image.fromarray(array)
    image.info["exif"] = exif.tobytes()
    image.getexif()[0x0112] = orientation
    expected = np.asarray(ImageOps.exif_transpose(image))
    assert np.array_equal(apply_orientation(array, orientation), expected)
    assert np.array_equal(apply_orientation(array[..., 0], orientation), expected[..., 0])  # 2-D planes too


def _png_with_exif(png: bytes, orientation: int) -> bytes:
    """Insert an eXIf chunk (TIFF bytes, no 'Exif' header) right after IHDR."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = exif.tobytes()
    data = data[6:] if data.startswith(b"Exif\x00\x00") else data
    chunk = struct.pack(">I", len(data)) + b"eXIf" + data + struct.pack(">I", zlib.crc32(b"eXIf" + data))
    end_of_ihdr = 8 + 4 + 4 + 13 + 4
    return png[:end_of_ihdr] + chunk + png[end_of_ihdr:]


def test_sixteen_bit_colour_png_is_turned_upright(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 65536, (6, 10, 4), dtype=np.uint16)  # BGRA as OpenCV writes it
    ok, png = cv2.imencode(".png", stored)
    assert ok
    path = tmp_path / "deep.png"
    path.write_bytes(_png_with_exif(png.tobytes(), 6))
    rgb, alpha = read_image_rgba(path)
    upright = np.rot90(np.round(stored / 257.0).astype(np.uint8), -1)
    assert rgb.shape == (10, 6, 3) and alpha is not None and alpha.shape == (10, 6)
    assert np.array_equal(rgb, upright[..., [2, 1, 0]]) and np.array_equal(alpha, upright[..., 3])


def _huge_png(width: int, height: int, depth: int = 8) -> bytes:
    """A tiny PNG whose IHDR claims ``width`` x ``height`` RGB pixels of ``depth`` bits (the data is a few bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(100))) + chunk(b"IEND", b"")


def test_huge_header_is_a_one_line_read_error(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_huge_png(40000, 40000))  # 1.6 Gpx: PIL raises DecompressionBombError, OpenCV a cv2.error
    with pytest.raises(ImageReadError, match=r"cannot read image .*bomb\.png: .*pixels") as info:
        read_image_rgba(path)
    assert "\n" not in str(info.value)


def test_opencv_pixel_limit_is_a_one_line_read_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # PIL lets it through, so OpenCV reads the 16-bit file
    path = tmp_path / "deep-bomb.png"
    path.write_bytes(_huge_png(40000, 40000, depth=16))
    with pytest.raises(ImageReadError, match=r"cannot read image .*deep-bomb\.png") as info:
        read_image_rgba(path)
    assert "\n" not in str(info.value)


def test_corrupt_png_prints_nothing_but_the_error(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "corrupt.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x04junkjunk" + bytes(32))  # no IHDR first
    with pytest.raises(ImageReadError, match=r"cannot read image .*corrupt\.png"):
        read_image_rgba(path)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""  # no OpenCV "[ WARN:0@...]" / "[ERROR:0@...]" lines


def test_opencv_log_level_is_left_as_it_was(tmp_path: Path) -> None:
    stored = np.random.default_rng(1).integers(0, 65536, (4, 5, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), stored)
    before = cv2.utils.logging.getLogLevel()
    rgb, alpha = read_image_rgba(tmp_path / "deep.png")
    assert cv2.utils.logging.getLogLevel() == before
    assert alpha is None and np.array_equal(rgb, np.round(stored / 257.0).astype(np.uint8)[..., ::-1])
