"""New images for ``committee predict``: image files, ``.npy`` arrays and IDX ``.gz`` files.

Every input becomes float32 ``(28, 28)`` pixels in [0, 1], exactly what the members were
trained on (:func:`committee.data.fashion_mnist.preprocess`: uint8 0..255 divided by 255;
Fashion-MNIST garments are light on a dark background):

- PNG / JPEG: turned upright as its EXIF orientation says (phone photos are stored sideways),
  16-bit values divided by 257 (before anything else reads them, so a 16-bit transparency key
  matches), transparent pixels laid on black (the background), converted to 8-bit grayscale
  (Pillow mode ``L``), resized to 28x28 with the Lanczos filter when it has another size (the
  aspect ratio is not kept), then divided by 255. Nothing is inverted unless asked
  (``invert``: ``255 - pixel``, for photos of dark garments on a light background).
- ``.npy``: ``(n, 28, 28)`` or ``(28, 28)``; an integer array must hold 0..255 (divided by
  255), a float array 0..1 (used as it is). The dtype decides, never the values; each array's
  reading is stated in a log line.
- ``.gz``: a gzipped IDX images file (magic 2051, 28x28) of any count, read within the limits
  of :func:`committee.data.fashion_mnist.read_idx_gz`.
- A folder: its files with these extensions (not its subfolders), in name order; hidden
  entries (names starting with ``.``, such as macOS' ``._x.png``) are skipped and counted in
  a log line.

What one call decodes is capped (``MAX_INPUT_BYTES``), each file checked from its header
before its data is read.

Any bad input raises :class:`InputError`: one line naming the file, what was found and what
was expected. Arrays given in Python (the API's ``predict_proba(x)``) follow the same rules:
:func:`images_from_array`, :func:`labels_from_array`.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from committee.data.fashion_mnist import (
    IMAGE_SHAPE,
    NUM_CLASSES,
    DataError,
    announced_images,
    npy_header,
    read_images_idx_gz,
)
from committee.errors import InputError, file_kind, one_line
from committee.log import plural

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npy", ".gz")
SUFFIXES = IMAGE_SUFFIXES + ARRAY_SUFFIXES
MAX_IMAGES = 250_000  # per .npy or IDX file: 196 MB as uint8, 784 MB as float32
# What the inputs of one predict call may decode to in all: each .npy / IDX array as stored
# plus the float32 images every input becomes (3,136 bytes each). A file's size says nothing
# (a 4 KB sparse .npy can declare 1.5 GB of float64), so this bounds the predict process.
MAX_INPUT_BYTES = 1 << 30
PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]  # per image
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


class InputBudget:
    """The decoded bytes one predict call has taken so far, out of ``limit``
    (``MAX_INPUT_BYTES``)."""

    def __init__(self, limit: int | None = None):
        self.limit = MAX_INPUT_BYTES if limit is None else limit
        self.used = 0

    def take(self, path: Path, n: int, stored_bytes: int, what: str) -> None:
        """Count an input of ``n`` images that is ``stored_bytes`` as read (0 for an image
        file) before it is read. Raises :class:`InputError` naming ``path`` and ``what`` (its
        shape and dtype) when the call's total would pass the limit."""
        cost = stored_bytes + n * PIXELS * 4  # + float32 (n, 28, 28)
        if self.used + cost > self.limit:
            before = f" after {self.used:,} bytes of earlier inputs" if self.used else ""
            raise InputError(
                f"input {path}: {what} decodes to {cost:,} bytes (as stored and as "
                f"float32){before}; expected at most {self.limit:,} bytes of decoded input "
                f"per predict call (split the inputs over several calls)"
            )
        self.used += cost


_MISSING = "missing"


def _not_regular(path: Path) -> str | None:
    """None for a regular file (through links), else what ``path`` is in words: ``_MISSING``,
    "a broken symbolic link", "a FIFO", "a character device", …"""
    try:
        return None if stat.S_ISREG(mode := path.stat().st_mode) else file_kind(mode)
    except FileNotFoundError:
        return "a broken symbolic link" if path.is_symlink() else _MISSING
    except NotADirectoryError:  # a file's name used as a folder: x.png/y.png
        return _MISSING
    except OSError as exc:  # no permission, a loop of links, a name too long
        return f"not readable ({exc.strerror})"


def expand(paths: list[str | os.PathLike]) -> tuple[list[Path], list[str]]:
    """The files named by ``paths``, folders replaced by their files with known extensions
    (sorted by name; hidden entries and entries that are not regular files, such as FIFOs
    and devices, skipped), and a log line per folder that had skipped entries. Raises
    :class:`InputError` for a path that is missing or not a regular file or folder, a file
    with another extension, or a folder holding no such file."""
    files: list[Path] = []
    notes: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found, hidden, odd = [], [], []
            for p in sorted(path.iterdir()):
                if p.suffix.lower() not in SUFFIXES:
                    continue
                if p.name.startswith("."):
                    # Hidden entries are other programs' metadata (macOS' ._x.png beside x.png,
                    # AppleDouble data, not a PNG), never images someone meant to classify.
                    hidden.append(p)
                elif (what := _not_regular(p)) is not None:
                    odd.append(f"{p.name}: {what}")  # a FIFO would block the read
                else:
                    found.append(p)
            parts = []
            if hidden:
                parts.append(
                    f"skipped {plural(len(hidden), 'hidden entry', 'hidden entries')} "
                    f"(names starting with '.', e.g. {hidden[0].name})"
                )
            if odd:
                are = "is not a regular file" if len(odd) == 1 else "are not regular files"
                parts.append(
                    f"skipped {plural(len(odd), 'entry', 'entries')} that {are} "
                    f"({', '.join(odd[:3])}{', …' if len(odd) > 3 else ''})"
                )
            skipped = "; ".join(parts)
            if not found:
                raise InputError(
                    f"input folder {path} holds no {', '.join(SUFFIXES)} files"
                    f"{'; ' + skipped if skipped else ''}; expected images or arrays to classify"
                )
            if skipped:
                notes.append(f"input folder {path}: {skipped}")
            files += found
        elif (what := _not_regular(path)) is not None:
            raise InputError(
                f"input {path} {'does not exist' if what == _MISSING else 'is ' + what}; "
                "expected an image, a .npy or .gz file, or a folder of them"
            )
        elif path.suffix.lower() not in SUFFIXES:
            raise InputError(
                f"input {path} has extension {path.suffix or '(none)'!r}; expected "
                f"one of {', '.join(SUFFIXES)}"
            )
        else:
            files.append(path)
    return files, notes


def read_inputs(
    paths: list[str | os.PathLike], invert: bool = False, max_bytes: int | None = None
) -> Inputs:
    """Read and convert every input (see the module docstring), decoding at most
    ``max_bytes`` in all (default ``MAX_INPUT_BYTES``). Raises :class:`InputError`."""
    images, sources, index = [], [], []
    files, notes = expand(paths)
    budget = InputBudget(max_bytes)
    light = []
    for path in files:
        suffix = path.suffix.lower()
        with _named(path):
            if suffix in IMAGE_SUFFIXES:
                budget.take(path, 1, 0, "an image")
                pixels = read_image(path, invert)  # (28, 28)
                if border_mean(pixels) > LIGHT_BORDER and not invert:
                    light.append(path)
                array = pixels[np.newaxis]
            else:
                reader = read_npy if suffix == ".npy" else read_idx
                array, note = reader(path, budget)
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


IMAGE_FORMATS = ("PNG", "JPEG")  # Pillow's names of the formats predict reads


def read_image(path: Path, invert: bool = False) -> np.ndarray:
    """A PNG or JPEG as float32 ``(28, 28)`` in [0, 1] (module docstring: the conversion)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        # Pillow would also open GIF, DDS, TIFF... under a .png name: only what it says
        with Image.open(path, formats=IMAGE_FORMATS) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise InputError(
                    f"input {path}: {image.width}x{image.height} pixels; expected "
                    f"at most {MAX_IMAGE_PIXELS:,} pixels"
                )
            key = image.info.get("transparency")
            if isinstance(key, tuple) and _png_bit_depth(path) == 16:
                # Pillow reads a 16-bit RGB PNG as 8 bits (each value's high byte) but keeps
                # its tRNS key in 16 bits, which then matches no pixel: scale it alike.
                image.info["transparency"] = tuple(value >> 8 for value in key)
            image = ImageOps.exif_transpose(image)  # phone photos are stored sideways
            if image.mode == "F":
                raise InputError(
                    f"input {path}: a floating-point image (mode F); expected "
                    f"an 8- or 16-bit PNG or a JPEG"
                )
            if image.mode in WIDE_MODES:
                image = _eight_bit(image)
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
            gray = image.convert("L")
            if gray.size != IMAGE_SHAPE[::-1]:
                gray = gray.resize(IMAGE_SHAPE[::-1], getattr(Image.Resampling, RESAMPLE))
            pixels = np.asarray(gray, dtype=np.uint8)
    except Image.DecompressionBombError as exc:  # Pillow's own cap, checked at open
        # its words ("exceeds limit of 178956970 pixels") name a cap that is not the tool's
        size = re.search(r"\((\d+) pixels\)", str(exc))
        raise InputError(
            f"input {path}: {f'{int(size[1]):,} pixels' if size else 'too many pixels'}; "
            f"expected at most {MAX_IMAGE_PIXELS:,} pixels"
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


def _png_bit_depth(path: Path) -> int:
    """The bit depth in a PNG file's header (IHDR), or 8 for any other file."""
    with open(path, "rb") as f:
        head = f.read(25)
    return head[24] if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" else 8


WIDE_MODES = ("I", "I;16", "I;16B", "I;16L")  # Pillow's 16-bit (and 32-bit integer) modes


def _eight_bit(image):
    """A 16-bit grayscale Pillow image as mode ``L`` (values / 257), its transparency key,
    if any, made fully transparent pixels (mode ``LA``). Pillow's own conversions clip 16-bit
    values at 255, which turns a 16-bit image white."""
    from PIL import Image

    wide = np.asarray(image, dtype=np.float64)  # (h, w)
    gray = Image.fromarray(np.clip(np.round(wide / 257), 0, 255).astype(np.uint8), "L")
    key = image.info.get("transparency")
    if not isinstance(key, int):
        return gray
    alpha = Image.fromarray(np.where(wide == key, 0, 255).astype(np.uint8), "L")
    gray.putalpha(alpha)  # L -> LA
    return gray


def read_npy(path: Path, budget: InputBudget | None = None) -> tuple[np.ndarray, str]:
    """A ``.npy`` array as float32 ``(n, 28, 28)`` in [0, 1], and the log line saying how it
    was read. Its declared shape and dtype are checked (and counted against ``budget``,
    default a fresh ``MAX_INPUT_BYTES``) before its data is read; pickles are refused."""
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
    n = shape[0]
    (budget or InputBudget()).take(path, n, n * PIXELS * dtype.itemsize, f"array {dtype} {shape}")
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


def read_idx(path: Path, budget: InputBudget | None = None) -> tuple[np.ndarray, str]:
    """A gzipped IDX images file as float32 ``(n, 28, 28)`` in [0, 1], and its log line. The
    count its header announces is counted against ``budget`` (default a fresh
    ``MAX_INPUT_BYTES``) before its images are read."""
    try:
        n = announced_images(path)
        if n <= MAX_IMAGES:  # more is refused below, in read_images_idx_gz's words
            (budget or InputBudget()).take(path, n, n * PIXELS, f"IDX images uint8 ({n}, 28, 28)")
        raw = read_images_idx_gz(path, MAX_IMAGES)
    except DataError as exc:
        raise InputError(f"input {exc}") from None
    array, _ = _scaled(raw, str(path))
    return array, f"{path}: IDX images uint8 {raw.shape}: integers 0..255, divided by 255"
