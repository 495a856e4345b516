"""Reading user images robustly: EXIF orientation, greyscale, palette, RGBA and 16-bit inputs."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from blindbench.errors import BlindbenchError, ImageReadError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})

# PIL refuses > ~179 Mpx by default as a decompression-bomb guard; real photos stay well below this.
Image.MAX_IMAGE_PIXELS = 400_000_000


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale 16-bit or float images to uint8 by rounding (never truncating)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16 or (array.dtype.kind in "iu" and array.max(initial=0) > 255):
        return np.rint(array.astype(np.float64) / 257.0).clip(0, 255).astype(np.uint8)
    if array.dtype.kind == "f":
        return np.rint(array.astype(np.float64).clip(0.0, 1.0) * 255.0).astype(np.uint8)
    return array.clip(0, 255).astype(np.uint8)


def _exif_orientation(path: Path) -> int:
    """The EXIF orientation tag (1-8) of a file, 1 when there is none or it cannot be read."""
    try:
        with Image.open(path) as image:
            value = image.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an (H, W[, C]) array upright as EXIF ``orientation`` says (the same as PIL's ``exif_transpose``)."""
    transpose = (1, 0) + tuple(range(2, array.ndim))
    ops = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(transpose),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].transpose(transpose),
        8: lambda a: np.rot90(a, 1),
    }
    return ops.get(orientation, ops[1])(array)


# What PIL raises for unreadable files; DecompressionBombError (a header claiming too many pixels) is no OSError.
_PIL_ERRORS = (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError)
_OPENCV_LOG_LOCK = threading.Lock()  # the log level is process-wide: one silenced read at a time restores it right


def _is_deep_colour(image: Image.Image) -> bool:
    """Whether an opened (not yet loaded) image holds 16-bit colour, which PIL would truncate to 8 bits."""
    if image.mode not in ("RGB", "RGBA"):
        return False
    for tile in image.tile:
        args = tile[3]  # the decoder's raw mode, alone (PNG: "RGB;16B") or first in a tuple (TIFF: ("RGBA;16N", ...))
        rawmode = args if isinstance(args, str) else (args[0] if isinstance(args, tuple) and args else "")
        if isinstance(rawmode, str) and ";16" in rawmode:
            return True
    return False


def _read_deep_colour(path: Path) -> tuple[np.ndarray, np.ndarray | None] | None:
    """A 16-bit colour file read with OpenCV (which keeps all 16 bits), rounded to uint8; None if OpenCV cannot.

    OpenCV's own log lines ("[ WARN:0@...] ... read_chunk") are silenced for the read: the caller reports failures.
    """
    with _OPENCV_LOG_LOCK:
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        try:
            deep = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
        except cv2.error as exc:  # e.g. more pixels than CV_IO_MAX_IMAGE_PIXELS
            reason = getattr(exc, "err", "") or str(exc).strip().splitlines()[-1]
            raise ImageReadError(f"cannot read image {path}: OpenCV: {reason}") from None
        finally:
            cv2.utils.logging.setLogLevel(previous)
    if deep is None or deep.dtype != np.uint16 or deep.ndim != 3 or deep.shape[2] not in (3, 4):
        return None
    orientation = _exif_orientation(path)
    rgb = apply_orientation(_to_uint8(cv2.cvtColor(deep[..., :3], cv2.COLOR_BGR2RGB)), orientation)
    alpha = apply_orientation(_to_uint8(deep[..., 3]), orientation) if deep.shape[2] == 4 else None
    return np.ascontiguousarray(rgb), None if alpha is None else np.ascontiguousarray(alpha)


def read_image_rgba(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Read an image file as uint8 RGB plus its alpha channel, if any.

    EXIF orientation is applied; greyscale, palette and 16-bit images are converted to 8-bit RGB
    (16-bit by rounding x / 257). PIL reads every file; OpenCV only 16-bit colour ones (PIL would truncate them),
    with its log output silenced, so a bad file gives just the one-line error.

    Returns:
        (rgb (H, W, 3) uint8, alpha (H, W) uint8 or None).

    Raises:
        ImageReadError: the file is missing, not a readable image, or claims more pixels than the
            decompression-bomb limits (PIL's ``2 * Image.MAX_IMAGE_PIXELS``, OpenCV's ``CV_IO_MAX_IMAGE_PIXELS``).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            if _is_deep_colour(image):
                deep = _read_deep_colour(path)
                if deep is not None:
                    return deep
            image = ImageOps.exif_transpose(image)
            image.load()
    except _PIL_ERRORS as exc:
        reason = " ".join(str(exc).split())  # one line, whatever the decoder said
        raise ImageReadError(f"cannot read image {path}: {reason}") from None
    alpha = None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        array = np.asarray(rgba)
        return np.ascontiguousarray(array[..., :3]), np.ascontiguousarray(array[..., 3])
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = _to_uint8(np.asarray(image))
        return np.ascontiguousarray(np.repeat(array[..., None], 3, axis=2)), alpha
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image)), alpha


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3); transparency is dropped. See `read_image_rgba`."""
    return read_image_rgba(path)[0]


def encode_png(array: np.ndarray, level: int = 1) -> bytes:
    """Encode a uint8 image (H, W) or RGB (H, W, 3) as PNG bytes with OpenCV (fast, deterministic)."""
    if array.dtype != np.uint8:
        raise ValueError(f"encode_png expects uint8, got {array.dtype}")
    bgr = array if array.ndim == 2 else cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, level])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buffer.tobytes()


def decode_png(data: bytes, grey: bool = False) -> np.ndarray:
    """Decode PNG bytes to uint8 RGB (H, W, 3), or (H, W) when ``grey``."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    flag = cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR
    array = cv2.imdecode(buffer, flag)
    if array is None:
        raise ValueError("not a decodable PNG")
    return array if grey else cv2.cvtColor(array, cv2.COLOR_BGR2RGB)


def write_image(path: str | os.PathLike[str], array: np.ndarray, alpha: np.ndarray | None = None) -> None:
    """Write uint8 RGB (or grey) as an image file atomically (temporary file, then rename)."""
    path = Path(path)
    data = array if alpha is None else np.dstack([array, alpha])
    mode = "L" if data.ndim == 2 else ("RGBA" if data.shape[2] == 4 else "RGB")
    buffer = io.BytesIO()
    Image.fromarray(data, mode=mode).save(buffer, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, durable: bool = True) -> None:
    """Write bytes so that ``path`` either holds all of them or is untouched: temp file in the same folder, rename.

    ``durable`` also fsyncs the file before the rename; callers writing many small files may turn it off and
    flush once for the lot (``os.sync()``).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise BlindbenchError(f"output folder not writable: {path.parent} ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def list_images(root: str | os.PathLike[str]) -> list[Path]:
    """All image files below ``root`` (recursive), sorted by their path relative to ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise BlindbenchError(f"image folder not found: {root}")
    return sorted(
        (p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
