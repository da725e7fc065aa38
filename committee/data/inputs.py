"""New images for ``committee predict``: image files, ``.npy`` arrays and IDX ``.gz`` files.

Every input becomes float32 ``(28, 28)`` pixels in [0, 1], exactly what the members were
trained on (:func:`committee.data.fashion_mnist.preprocess`: uint8 0..255 divided by 255;
Fashion-MNIST garments are light on a dark background):

- PNG / JPEG: transparent pixels are laid on black (the background), the image is converted
  to 8-bit grayscale (Pillow mode ``L``; 16-bit values divided by 257), resized to 28x28 with
  the Lanczos filter when it has another size (the aspect ratio is not kept), then divided by
  255. Nothing is inverted unless asked (``invert``: ``255 - pixel``, for photos of dark
  garments on a light background).
- ``.npy``: ``(n, 28, 28)`` or ``(28, 28)``; an integer array must hold 0..255 (divided by
  255), a float array 0..1 (used as it is). The dtype decides, never the values; each array's
  reading is stated in a log line.
- ``.gz``: a gzipped IDX images file (magic 2051, 28x28) of any count, read within the limits
  of :func:`committee.data.fashion_mnist.read_idx_gz`.
- A folder: its files with these extensions (not its subfolders), in name order.

Any bad input raises :class:`InputError`: one line naming the file, what was found and what
was expected. Arrays given in Python (the API's ``predict_proba(x)``) follow the same rules:
:func:`images_from_array`, :func:`labels_from_array`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from committee.data.fashion_mnist import (
    IMAGE_SHAPE,
    NUM_CLASSES,
    DataError,
    npy_header,
    read_images_idx_gz,
)
from committee.errors import InputError, one_line
from committee.log import plural

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npy", ".gz")
SUFFIXES = IMAGE_SUFFIXES + ARRAY_SUFFIXES
MAX_IMAGES = 250_000  # per .npy or IDX file: 196 MB as uint8, 784 MB as float32
MAX_IMAGE_PIXELS = 50_000_000  # a larger picture is refused before it is decoded
RESAMPLE = "LANCZOS"  # Pillow's filter when an image is not 28x28
LIGHT_BORDER = 0.5  # mean border pixel above which an image looks like a light background


@dataclass
class Inputs:
    """The images to classify and where each came from.

    ``images``: float32 ``(n, 28, 28)`` in [0, 1]. ``sources``: the file of each image
    (``n`` strings). ``index``: int32 ``(n,)``, the image's position in its file (0 for an
    image file).
    """

    images: np.ndarray
    sources: list[str]
    index: np.ndarray
    notes: list[str] = field(default_factory=list)  # one log line per decision taken


def expand(paths: list[str | os.PathLike]) -> list[Path]:
    """The files named by ``paths``, folders replaced by their files with known extensions
    (sorted by name). Raises :class:`InputError` for a missing path, a file with another
    extension, or a folder holding no such file."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES
            )
            if not found:
                raise InputError(
                    f"input folder {path} holds no {', '.join(SUFFIXES)} files; "
                    f"expected images or arrays to classify"
                )
            files += found
        elif not path.is_file():
            raise InputError(
                f"input {path} does not exist; expected an image, a .npy or .gz "
                f"file, or a folder of them"
            )
        elif path.suffix.lower() not in SUFFIXES:
            raise InputError(
                f"input {path} has extension {path.suffix or '(none)'!r}; expected "
                f"one of {', '.join(SUFFIXES)}"
            )
        else:
            files.append(path)
    return files


def read_inputs(paths: list[str | os.PathLike], invert: bool = False) -> Inputs:
    """Read and convert every input (see the module docstring). Raises :class:`InputError`."""
    images, sources, index, notes = [], [], [], []
    light = []
    for path in expand(paths):
        suffix = path.suffix.lower()
        with _named(path):
            if suffix in IMAGE_SUFFIXES:
                pixels = read_image(path, invert)  # (28, 28)
                if border_mean(pixels) > LIGHT_BORDER and not invert:
                    light.append(path)
                array = pixels[np.newaxis]
            else:
                array, note = read_npy(path) if suffix == ".npy" else read_idx(path)
                notes.append(note)
        images.append(array)
        sources += [str(path)] * len(array)
        index.append(np.arange(len(array), dtype=np.int32))
    if light:
        notes.append(
            f"warning: {plural(len(light), 'image')} "
            f"{'has' if len(light) == 1 else 'have'} a light border (e.g. {light[0]}); "
            f"Fashion-MNIST garments are light on a dark background: pass --invert "
            f"if these are dark garments on a light background"
        )
    if not sources:
        raise InputError(
            f"inputs {', '.join(map(str, paths))} hold no image; expected at least one"
        )
    return Inputs(
        images=np.concatenate(images).astype(np.float32, copy=False),
        sources=sources,
        index=np.concatenate(index),
        notes=notes,
    )


@contextmanager
def _named(path: Path) -> Iterator[None]:
    """For the block, any error of a decoding library that the readers do not name (Pillow
    opens more formats than PNG and JPEG, each decoder with its own errors, such as
    NotImplementedError) as :class:`InputError` naming ``path``."""
    try:
        yield
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a decoder raises, the file is at fault
        raise InputError(
            f"input {path}: not readable ({type(exc).__name__}: {one_line(exc)}); "
            f"expected a PNG or JPEG image, a .npy array or an IDX .gz file as its extension says"
        ) from None


def border_mean(pixels: np.ndarray) -> float:
    """Mean of the outermost pixels of a float ``(28, 28)`` image."""
    edge = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    return float(edge.mean())


def read_image(path: Path, invert: bool = False) -> np.ndarray:
    """A PNG or JPEG as float32 ``(28, 28)`` in [0, 1] (module docstring: the conversion)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise InputError(
                    f"input {path}: {image.width}x{image.height} pixels; expected "
                    f"at most {MAX_IMAGE_PIXELS:,} pixels"
                )
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
            if image.mode == "F":
                raise InputError(
                    f"input {path}: a floating-point image (mode F); expected "
                    f"an 8- or 16-bit PNG or a JPEG"
                )
            if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit: Pillow's L would clip
                wide = np.asarray(image, dtype=np.float64)
                image = Image.fromarray(np.clip(np.round(wide / 257), 0, 255).astype(np.uint8))
            gray = image.convert("L")
            if gray.size != IMAGE_SHAPE[::-1]:
                gray = gray.resize(IMAGE_SHAPE[::-1], getattr(Image.Resampling, RESAMPLE))
            pixels = np.asarray(gray, dtype=np.uint8)
    except Image.DecompressionBombError as exc:  # Pillow's own cap, checked at open
        raise InputError(
            f"input {path}: {one_line(exc)}; expected at most {MAX_IMAGE_PIXELS:,} pixels"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        if isinstance(exc, InputError):
            raise
        why = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(
            f"input {path}: not a readable image ({why[:200]}); expected a PNG or JPEG file"
        ) from None
    if invert:
        pixels = 255 - pixels
    return pixels.astype(np.float32) / 255.0


def read_npy(path: Path) -> tuple[np.ndarray, str]:
    """A ``.npy`` array as float32 ``(n, 28, 28)`` in [0, 1], and the log line saying how it
    was read. Its declared shape and dtype are checked before its data is read; pickles are
    refused."""
    try:
        with open(path, "rb") as f:
            shape, dtype = npy_header(f)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(
            f"input {path}: not a readable .npy file ({one_line(exc)}); expected "
            f"an array saved with numpy.save"
        ) from None
    if shape == IMAGE_SHAPE:
        shape = (1, *IMAGE_SHAPE)
    if len(shape) != 3 or shape[1:] != IMAGE_SHAPE:
        raise InputError(f"input {path}: array of shape {shape}; expected (n, 28, 28) or (28, 28)")
    if shape[0] > MAX_IMAGES:
        raise InputError(
            f"input {path}: {shape[0]:,} images; expected at most {MAX_IMAGES:,} per file"
        )
    if dtype.kind not in "iuf":
        raise InputError(
            f"input {path}: array of dtype {dtype}; expected integers 0..255 "
            f"(e.g. uint8) or floats 0..1"
        )
    try:
        array = np.load(path, allow_pickle=False).reshape(shape)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(
            f"input {path}: not a readable .npy file ({one_line(exc)}); expected "
            f"an array saved with numpy.save"
        ) from None
    return _scaled(array, str(path))


def _scaled(array: np.ndarray, where: str, label: str | None = None) -> tuple[np.ndarray, str]:
    """Integers 0..255 divided by 255, floats 0..1 as they are: float32 of ``array``'s shape
    and the log line; anything else raises :class:`InputError`, its message starting with
    ``label`` (default ``input <where>``)."""
    label = f"input {where}" if label is None else label
    n = len(array)
    if array.dtype.kind == "f":
        if n and not np.all(np.isfinite(array)):
            raise InputError(
                f"{label}: float array holds NaN or infinite values; expected floats in [0, 1]"
            )
        low, high = (float(array.min()), float(array.max())) if n else (0.0, 0.0)
        if low < 0 or high > 1:
            raise InputError(
                f"{label}: float array holds {low:g}..{high:g}; expected "
                f"floats in [0, 1] (integers 0..255 as an integer dtype such as "
                f"uint8)"
            )
        return (
            array.astype(np.float32),
            f"{where}: {array.dtype} {array.shape}: floats in [0, 1], used as they are",
        )
    low, high = (int(array.min()), int(array.max())) if n else (0, 0)
    if low < 0 or high > 255:
        raise InputError(
            f"{label}: {array.dtype} array holds {low}..{high}; expected "
            f"integers in 0..255 (or floats in [0, 1])"
        )
    return (
        array.astype(np.float32) / 255.0,
        f"{where}: {array.dtype} {array.shape}: integers 0..255, divided by 255",
    )


# ------------------------------------------------------------------ arrays given in Python

ARRAY_SHAPES = "(n, 28, 28) or (n, 28, 28, 1)"


def _as_array(x, argument: str) -> np.ndarray:
    if x is None or isinstance(x, (str, bytes)):
        raise InputError(
            f"{argument}: {type(x).__name__} {one_line(repr(x), 60)}; expected an array"
        )
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as exc:  # e.g. ragged nested lists
        raise InputError(
            f"{argument}: not an array ({one_line(exc, 200)}); expected an array"
        ) from None


def images_from_array(x, argument: str = "x") -> np.ndarray:
    """Images given in Python as what the members take: float32 ``(n, 28, 28, 1)`` in [0, 1].

    ``x``: an array (or anything :func:`numpy.asarray` turns into one) of shape
    ``(n, 28, 28)`` or ``(n, 28, 28, 1)``, ``n >= 1``, light garments on a dark background
    as in Fashion-MNIST. Its dtype decides its scale, never its values, as for a ``.npy``
    input: an integer dtype (e.g. uint8) holds pixels 0..255 and is divided by 255; a float
    dtype (float16/32/64) holds pixel / 255 in [0, 1] and is used as it is (as float32).
    Raises :class:`InputError` (a ValueError; one line starting with ``argument``) naming the
    dtype, shape or range found and what was expected."""
    array = _as_array(x, argument)
    if array.dtype.kind not in "iuf":
        raise InputError(
            f"{argument}: array of dtype {array.dtype}; expected integers 0..255 "
            f"(e.g. uint8) or floats 0..1 (e.g. float32, pixel / 255)"
        )
    shape = array.shape
    if not (
        (len(shape) == 3 and shape[1:] == IMAGE_SHAPE)
        or (len(shape) == 4 and shape[1:] == (*IMAGE_SHAPE, 1))
    ):
        one = " (one image: x[np.newaxis])" if shape in (IMAGE_SHAPE, (*IMAGE_SHAPE, 1)) else ""
        raise InputError(f"{argument}: array of shape {shape}; expected {ARRAY_SHAPES}{one}")
    if shape[0] == 0:
        raise InputError(f"{argument}: array of shape {shape} holds no image; expected n >= 1")
    scaled, _ = _scaled(array.reshape(shape[0], *IMAGE_SHAPE), argument, label=argument)
    return np.ascontiguousarray(scaled[..., np.newaxis])


def labels_from_array(y, n: int, argument: str = "y") -> np.ndarray:
    """Class labels given in Python, one per image: int64 ``(n,)``.

    ``y``: integers 0..9 (an integer dtype), shape ``(n,)``. Raises :class:`InputError`
    (a ValueError; one line starting with ``argument``) naming the dtype, shape or value
    found and what was expected."""
    array = _as_array(y, argument)
    if array.dtype.kind not in "iu":
        raise InputError(
            f"{argument}: array of dtype {array.dtype}; expected integer class labels "
            f"0..{NUM_CLASSES - 1}"
        )
    if array.shape != (n,):
        raise InputError(
            f"{argument}: array of shape {array.shape}; expected ({n},), one label per image"
        )
    if n and (array.min() < 0 or array.max() >= NUM_CLASSES):
        raise InputError(
            f"{argument}: labels {int(array.min())}..{int(array.max())}; expected class "
            f"labels 0..{NUM_CLASSES - 1}"
        )
    return array.astype(np.int64)


def read_idx(path: Path) -> tuple[np.ndarray, str]:
    """A gzipped IDX images file as float32 ``(n, 28, 28)`` in [0, 1], and its log line."""
    try:
        raw = read_images_idx_gz(path, MAX_IMAGES)
    except DataError as exc:
        raise InputError(f"input {exc}") from None
    array, _ = _scaled(raw, str(path))
    return array, f"{path}: IDX images uint8 {raw.shape}: integers 0..255, divided by 255"
