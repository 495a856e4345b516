"""EXIF orientation for every path of ``read_image_rgba``, 16-bit colour PNGs included."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

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
