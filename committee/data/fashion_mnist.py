"""Fashion-MNIST: find, download, verify and split the four official IDX files.

Where the files come from, in order:

1. an explicit folder (``--data-dir`` or the environment variable ``FASHION_MNIST_DIR``);
   if it is given it must hold the files — there is no silent fallback;
2. Keras' cache folder ``~/.keras/datasets/fashion-mnist/`` (where
   ``keras.datasets.fashion_mnist.load_data`` keeps them);
3. a download of the official files (mirror list below, or ``FASHION_MNIST_MIRROR``), within
   a deadline and a minimum rate (``DOWNLOAD_DEADLINE_S``, ``MIN_DOWNLOAD_RATE``), verified
   before it is written — atomically — into the Keras cache.

Every file is read as a stream within limits (at most ``MAX_GZ_BYTES`` compressed, and never
more than its IDX length + 1 byte decompressed, so a gzip bomb is refused in bounded memory)
and checked: gzip integrity, the official gz MD5 *or* the SHA-256 of the
decompressed IDX content, the IDX magic number, counts, 28x28 dimensions and labels in 0..9.
Any failure raises :class:`DataError` naming the file and what was expected.

Arrays returned: images ``uint8 (n, 28, 28)``, labels ``uint8 (n,)``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import struct
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from committee.errors import DataError, NpyFormatError
from committee.log import plural

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SHAPE = (28, 28)

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


@dataclass(frozen=True)
class IdxFile:
    name: str
    kind: str  # "images" or "labels"
    count: int
    gz_md5: str  # the official gz file's MD5, as published
    idx_sha256: str  # SHA-256 of the decompressed IDX content


FILES = {
    "train_images": IdxFile(
        "train-images-idx3-ubyte.gz",
        "images",
        60_000,
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    "train_labels": IdxFile(
        "train-labels-idx1-ubyte.gz",
        "labels",
        60_000,
        "25c81989df183df01b3e8a0aad5dffbe",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    "test_images": IdxFile(
        "t10k-images-idx3-ubyte.gz",
        "images",
        10_000,
        "bef4ecab320f06d8554ea6380940ec79",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    "test_labels": IdxFile(
        "t10k-labels-idx1-ubyte.gz",
        "labels",
        10_000,
        "bb300cfdad3c16e7a12a480ee83cd310",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
}

# Official mirrors, tried in order (both serve the same four files).
MIRRORS = (
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
KERAS_CACHE = Path("~/.keras/datasets/fashion-mnist")
# Largest gz file read or downloaded: the official files are at most 26.4 MB, and even the
# largest IDX content (47 MB) stored uncompressed fits.
MAX_GZ_BYTES = 64 << 20
# A download's limits beyond the size cap: the socket timeout bounds one read only, so a
# mirror sending a byte every few seconds would never time out. The largest file (26.4 MB)
# takes under a minute at 1 MB/s; a download is stopped once it has run past its deadline,
# or its first minute has passed and it averages under the minimum rate (a stall: at that
# rate the largest file would take 3.7 hours).
READ_TIMEOUT_S = 60.0
DOWNLOAD_DEADLINE_S = 15 * 60.0
MIN_DOWNLOAD_RATE = 2_000  # bytes per second, averaged since the download started
RATE_GRACE_S = 60.0  # the minimum rate applies from then on (a slow start is allowed)


# --------------------------------------------------------------------------- parsing


def _header_len(spec: IdxFile) -> int:
    return 16 if spec.kind == "images" else 8


def _content_len(spec: IdxFile) -> int:
    """Bytes of IDX content the spec implies: header plus ``count`` items (28x28 for images)."""
    item = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] if spec.kind == "images" else 1
    return _header_len(spec) + spec.count * item


def _check_header(head: bytes, spec: IdxFile, where: str) -> tuple[int, ...]:
    """Check an IDX header (magic, count, 28x28); return the array shape it announces.

    Raises :class:`DataError` naming ``where``.
    """
    header_len = _header_len(spec)
    if len(head) < header_len:
        raise DataError(
            f"{where}: {len(head)} bytes is too short for an IDX {spec.kind} header "
            f"(expected at least {header_len})"
        )
    magic, count = struct.unpack(">II", head[:8])
    expected_magic = IMAGE_MAGIC if spec.kind == "images" else LABEL_MAGIC
    if magic != expected_magic:
        raise DataError(
            f"{where}: IDX magic number {magic}, expected {expected_magic} for {spec.kind}"
        )
    if count != spec.count:
        raise DataError(f"{where}: holds {count} {spec.kind}, expected {spec.count}")
    if spec.kind == "labels":
        return (count,)
    rows, cols = struct.unpack(">II", head[8:16])
    if (rows, cols) != IMAGE_SHAPE:
        raise DataError(f"{where}: image size {rows}x{cols}, expected 28x28")
    return (count, rows, cols)


def _to_array(body: bytes, shape: tuple[int, ...], spec: IdxFile, where: str) -> np.ndarray:
    """The items after the header as uint8 ``shape``; labels checked to lie in 0..9."""
    array = np.frombuffer(body, dtype=np.uint8).reshape(shape)
    if spec.kind == "labels" and array.max(initial=0) >= NUM_CLASSES:
        bad = int(array.max())
        raise DataError(f"{where}: label {bad} found, expected labels in 0..{NUM_CLASSES - 1}")
    return array


def parse_idx(raw: bytes, spec: IdxFile, source: str = "") -> np.ndarray:
    """Parse decompressed IDX bytes into a uint8 array, checking header, size and values.

    Returns ``(count, 28, 28)`` for images, ``(count,)`` for labels. Raises
    :class:`DataError` naming ``source`` (default: the spec's file name).
    """
    where = source or spec.name
    header_len = _header_len(spec)
    shape = _check_header(raw[:header_len], spec, where)
    expected_len = _content_len(spec)
    if len(raw) != expected_len:
        raise DataError(
            f"{where}: {len(raw)} bytes of IDX content, expected {expected_len} "
            f"for {spec.count} {spec.kind}"
        )
    return _to_array(memoryview(raw)[header_len:], shape, spec, where)


class _CappedReader:
    """A binary file read through a byte budget: hashes what passes (MD5, for the official
    checksum) and raises :class:`DataError` once more than ``limit`` bytes were asked of it."""

    def __init__(self, fileobj, limit: int, where: str):
        self._f, self.limit, self.where = fileobj, limit, where
        self.count, self.md5 = 0, hashlib.md5()

    def read(self, size: int = -1) -> bytes:
        want = self.limit + 1 - self.count if size is None or size < 0 else size
        chunk = self._f.read(min(want, self.limit + 1 - self.count))
        self.count += len(chunk)
        if self.count > self.limit:
            raise DataError(
                f"{self.where}: more than {self.limit:,} bytes; expected a gzip "
                f"file of at most that size (the official ones are under 27 MB)"
            )
        self.md5.update(chunk)
        return chunk

    def drain(self) -> None:
        """Read (and hash) the rest, still within the budget."""
        while self.read(1 << 20):
            pass


def read_idx_gz(path: Path, spec: IdxFile, verify_checksum: bool = True) -> np.ndarray:
    """Read, checksum-verify and parse one gzipped IDX file, in bounded memory.

    The file is read as a stream: at most ``MAX_GZ_BYTES`` compressed bytes, and never more
    than the spec's content length + 1 decompressed bytes (so a gzip bomb is refused as too
    long after ~47 MB, not after inflating). Returns uint8 ``(count, 28, 28)`` or
    ``(count,)``. Raises :class:`DataError` naming ``path``: missing file, bad gzip, bad IDX
    header, wrong length, labels out of range, or checksum mismatch (the official gz MD5
    and the content SHA-256 both differ).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file missing (expected the official {spec.name})")
    with open(path, "rb") as f:
        gz = _CappedReader(f, MAX_GZ_BYTES, str(path))
        head, body, shape = _inflate_idx(gz, spec, path)
        gz.drain()
    array = _to_array(body, shape, spec, str(path))  # structure first: the clearer message
    if verify_checksum and gz.md5.hexdigest() != spec.gz_md5:
        sha = hashlib.sha256(head)
        sha.update(body)
        if sha.hexdigest() != spec.idx_sha256:
            raise DataError(
                f"{path}: checksum mismatch: content SHA-256 {sha.hexdigest()[:16]}"
                f"..., expected {spec.idx_sha256[:16]}... (or gz MD5 {spec.gz_md5})"
            )
    return array


def _inflate_idx(gz: _CappedReader, spec: IdxFile, path: Path):
    """Decompress header, then body (at most expected + 1 bytes); return (head, body, shape)."""
    header_len, expected_len = _header_len(spec), _content_len(spec)
    try:
        with gzip.GzipFile(fileobj=gz, mode="rb") as stream:
            head = stream.read(header_len)
            shape = _check_header(head, spec, str(path))
            body = stream.read(expected_len - header_len + 1)
    except (OSError, EOFError, zlib.error) as exc:
        kind = "truncated gzip data" if isinstance(exc, EOFError) else f"not valid gzip ({exc})"
        raise DataError(f"{path}: {kind}; expected the official gzip file {spec.name}") from None
    if len(body) > expected_len - header_len:
        raise DataError(
            f"{path}: IDX content too long: more than {expected_len} bytes, "
            f"expected {expected_len} for {spec.count} {spec.kind} (stopped "
            f"decompressing there)"
        )
    if len(body) < expected_len - header_len:
        raise DataError(
            f"{path}: {header_len + len(body)} bytes of IDX content, expected "
            f"{expected_len} for {spec.count} {spec.kind}"
        )
    return head, body, shape


def read_images_idx_gz(path: str | os.PathLike, max_images: int) -> np.ndarray:
    """Read a gzipped IDX images file holding any count of 28x28 images up to ``max_images``.

    For files other than the official ones (``committee predict``): the count is taken from
    the header, then the file is read as :func:`read_idx_gz` reads one (same byte limits,
    same header and length checks), without the official checksums. Returns uint8
    ``(count, 28, 28)``. Raises :class:`DataError` naming ``path``.
    """
    path = Path(path)
    count = announced_images(path)
    if count > max_images:
        raise DataError(f"{path}: announces {count:,} images; expected at most {max_images:,}")
    return read_idx_gz(path, IdxFile(path.name, "images", count, "", ""), verify_checksum=False)


def announced_images(path: str | os.PathLike) -> int:
    """The image count in a gzipped IDX file's header (0 if the header is too short to hold
    one), read without decompressing further. Raises :class:`DataError` naming ``path`` when
    it is not gzip."""
    try:
        with gzip.open(path, "rb") as stream:
            head = stream.read(8)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path}: not valid gzip ({exc}); expected a gzipped IDX images file "
            f"(magic {IMAGE_MAGIC}, 28x28)"
        ) from None
    return struct.unpack(">I", head[4:8])[0] if len(head) >= 8 else 0


_NPY_HEADERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def npy_header(stream) -> tuple[tuple[int, ...], np.dtype]:
    """The declared ``(shape, dtype)`` of the .npy array at ``stream``'s position, read from
    its header without reading its data (so a small file cannot claim a huge array unseen).
    Raises :class:`NpyFormatError` for a format other than 1.0 / 2.0, ValueError or EOFError
    for a damaged header."""
    version = np.lib.format.read_magic(stream)
    if version not in _NPY_HEADERS:
        raise NpyFormatError(f".npy format {version}; expected 1.0 or 2.0")
    shape, _fortran, dtype = _NPY_HEADERS[version](stream)
    return shape, dtype


# --------------------------------------------------------------------------- locating


def _has_all(folder: Path) -> bool:
    return all((folder / spec.name).is_file() for spec in FILES.values())


def resolve_data_dir(
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    mirrors: tuple[str, ...] | None = None,
) -> Path:
    """Return the folder holding the four files: explicit, Keras cache, or a fresh download."""
    explicit = data_dir or os.environ.get("FASHION_MNIST_DIR")
    if explicit:
        folder = Path(explicit).expanduser()
        if not folder.is_dir():
            raise DataError(
                f"data folder {folder} does not exist (from "
                f"{'--data-dir' if data_dir else 'FASHION_MNIST_DIR'}); expected a "
                f"folder with the four Fashion-MNIST .gz files"
            )
        missing = [s.name for s in FILES.values() if not (folder / s.name).is_file()]
        if missing:
            raise DataError(
                f"{folder / missing[0]}: file missing from the data folder "
                f"(missing: {', '.join(missing)})"
            )
        return folder
    cache = KERAS_CACHE.expanduser()
    if _has_all(cache):
        return cache
    if not download:
        raise DataError(
            f"Fashion-MNIST not found in {cache} and downloading is off; "
            f"pass --data-dir or set FASHION_MNIST_DIR"
        )
    env_mirror = os.environ.get("FASHION_MNIST_MIRROR")
    download_all(cache, mirrors or ((env_mirror,) if env_mirror else MIRRORS))
    return cache


def download_all(dest: Path, mirrors: tuple[str, ...]) -> None:
    """Download each missing file from the first mirror that serves it, verify, then cache."""
    dest.mkdir(parents=True, exist_ok=True)
    for spec in FILES.values():
        target = dest / spec.name
        if target.is_file():
            continue
        errors = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + spec.name
            try:
                _download_verified(url, target, spec)
                break
            except DataError as exc:  # names the URL already
                errors.append(str(exc))
            except (urllib.error.URLError, OSError) as exc:
                errors.append(f"{url}: {exc}")
        else:
            raise DataError(f"could not download {spec.name}: " + "; ".join(errors))


class _Deadline:
    """A download's clock: raises :class:`DataError` naming ``url`` once ``deadline`` seconds
    have passed, or once ``grace`` seconds have passed and fewer than ``min_rate`` bytes per
    second (on average since the start) have arrived."""

    def __init__(self, url: str, deadline: float, min_rate: float, grace: float):
        import time

        self._clock = time.monotonic
        self.url, self.deadline, self.min_rate, self.grace = url, deadline, min_rate, grace
        self.start = self._clock()

    def check(self, received: int, ended: bool = False) -> None:
        """Raise unless ``received`` bytes so far are on time; once the body has ``ended``
        (or broke off), only the deadline counts: a file that arrived whole is not too slow,
        and a network error keeps its own message unless the deadline caused it."""
        elapsed = self._clock() - self.start
        too_long = elapsed > self.deadline
        too_slow = not ended and elapsed > self.grace and received < self.min_rate * elapsed
        if too_long or too_slow:
            raise DataError(
                f"{self.url}: {received:,} bytes received in {elapsed:.0f} s; expected "
                + (
                    f"the whole file within {self.deadline:.0f} s"
                    if too_long
                    else f"at least {self.min_rate:,.0f} bytes/s after {self.grace:.0f} s"
                )
                + " (a stalled or very slow mirror; try another with FASHION_MNIST_MIRROR)"
            )


class _Cutter:
    """Shuts a download's connections down when ``clock``'s deadline passes, until
    :meth:`stop`: the socket timeout bounds one read, so a mirror trickling its TLS
    handshake, status line or headers would otherwise hold ``urlopen`` itself past any
    deadline. :meth:`opener` gives the urllib opener whose connections it watches."""

    def __init__(self, clock: _Deadline):
        import threading

        self.clock, self.timers, self.lock, self.on = clock, [], threading.Lock(), True

    def watch(self, fd: int) -> list[bool]:
        """Shut down the socket at descriptor ``fd`` at the deadline, unless stopped first
        or its connection closed (TLS detaches the socket object from ``fd``, hence a copy
        of the descriptor). Returns the connection's flag: set ``[False]`` under ``lock``
        before the descriptor is closed."""
        import socket
        import threading
        import time

        open_ = [True]

        def cut():
            with self.lock:  # held while a descriptor is given up: it cannot be reused here
                if self.on and open_[0]:
                    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as copy:
                        copy.shutdown(socket.SHUT_RDWR)  # a blocked recv returns at once

        left = self.clock.start + self.clock.deadline - time.monotonic()
        self.timers.append(threading.Timer(max(0.0, left), cut))
        self.timers[-1].daemon = True
        self.timers[-1].start()
        return open_

    def stop(self) -> None:
        """No cut from now on; call it before the connections' descriptors are closed."""
        with self.lock:
            self.on = False
        for timer in self.timers:
            timer.cancel()

    def opener(self):
        import http.client

        cutter = self

        def watched(base):
            class Connection(base):
                def __init__(self, *args, **kwargs):
                    super().__init__(*args, **kwargs)
                    create, self._open = self._create_connection, [False]

                    def create_and_watch(*args, **kwargs):
                        sock = create(*args, **kwargs)
                        self._open = cutter.watch(sock.fileno())
                        return sock

                    self._create_connection = create_and_watch

                def close(self):
                    with cutter.lock:
                        self._open[0] = False
                    super().close()

            return Connection

        class Http(urllib.request.HTTPHandler):
            def http_open(self, req):
                return self.do_open(watched(http.client.HTTPConnection), req)

        class Https(urllib.request.HTTPSHandler):
            def https_open(self, req):
                connection = watched(http.client.HTTPSConnection)
                return self.do_open(connection, req, context=self._context)

        return urllib.request.build_opener(Http, Https)


class _TimedReads:
    """An HTTP response read one network read at a time (``read1``: whatever has arrived,
    where ``read(n)`` waits for all ``n`` bytes, a byte per socket timeout), ``clock``
    checked after each. A download then ends at most one socket timeout past its deadline."""

    def __init__(self, resp, clock: _Deadline):
        self._resp, self._clock, self.received = resp, clock, 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._resp.read1(size)
        self.received += len(chunk)
        self._clock.check(self.received)
        return chunk


def _download_verified(
    url: str,
    target: Path,
    spec: IdxFile,
    timeout: float = READ_TIMEOUT_S,
    deadline: float = DOWNLOAD_DEADLINE_S,
    min_rate: float = MIN_DOWNLOAD_RATE,
    grace: float = RATE_GRACE_S,
) -> None:
    """Download ``url`` to a temporary file (at most ``MAX_GZ_BYTES``, within ``deadline``
    seconds and, after ``grace`` seconds, at ``min_rate`` bytes/s or more; ``timeout``: the
    seconds one read may wait), verify it with :func:`read_idx_gz`, then rename it onto
    ``target``. Raises :class:`DataError` naming ``url`` (too large, too slow, or failed
    verification) or the network's own errors."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{spec.name}.", suffix=".part")
    tmp = Path(tmp_name)
    clock = _Deadline(url, deadline, min_rate, grace)
    try:
        with os.fdopen(fd, "wb") as out:
            _fetch(url, out, spec, clock, timeout)
        try:
            read_idx_gz(tmp, spec)  # verify before the file becomes visible in the cache
        except DataError as exc:
            raise DataError(f"{url}: {exc}") from None
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _fetch(url: str, out, spec: IdxFile, clock: _Deadline, timeout: float) -> None:
    """Write ``url``'s body to ``out`` within ``MAX_GZ_BYTES`` and ``clock``'s limits; a
    network error once the deadline has passed is reported as the deadline."""
    body, cutter = None, _Cutter(clock)
    try:
        with cutter.opener().open(url, timeout=min(timeout, clock.deadline)) as resp:
            try:
                body = _TimedReads(resp, clock)
                _copy(body, resp.headers.get("Content-Length"), out, spec, url)
            finally:
                cutter.stop()  # before the response gives up its descriptor
    except (OSError, http.client.HTTPException):
        clock.check(0 if body is None else body.received, ended=True)  # the deadline's cut?
        raise
    finally:
        cutter.stop()  # urlopen failed
    clock.check(body.received, ended=True)  # a cut at the deadline can end a body quietly


def _copy(body: _TimedReads, length: str | None, out, spec: IdxFile, url: str) -> None:
    """Copy ``body`` to ``out`` (at most ``MAX_GZ_BYTES``; ``length``: the Content-Length
    header), with a progress bar on stderr."""
    from tqdm import tqdm

    total = int(length or 0) or None
    if total is not None and total > MAX_GZ_BYTES:
        raise DataError(
            f"{url}: announces {total:,} bytes; expected a gzip file of at most "
            f"{MAX_GZ_BYTES:,} bytes"
        )
    capped = _CappedReader(body, MAX_GZ_BYTES, url)
    with tqdm(
        total=total, unit="B", unit_scale=True, desc=spec.name, file=sys.stderr, mininterval=1.0
    ) as bar:
        while chunk := capped.read(1 << 16):
            out.write(chunk)
            bar.update(len(chunk))


# --------------------------------------------------------------------------- loading


@dataclass
class FashionMNIST:
    """The raw official arrays plus where they came from."""

    x_train: np.ndarray  # uint8 (60000, 28, 28)
    y_train: np.ndarray  # uint8 (60000,)
    x_test: np.ndarray  # uint8 (10000, 28, 28)
    y_test: np.ndarray  # uint8 (10000,)
    source: str
    sha256: dict[str, str]


def load(data_dir: str | os.PathLike | None = None, download: bool = True) -> FashionMNIST:
    """Locate (or download) and verify the four files; return the raw arrays."""
    folder = resolve_data_dir(data_dir, download=download)
    arrays = {key: read_idx_gz(folder / spec.name, spec) for key, spec in FILES.items()}
    return FashionMNIST(
        x_train=arrays["train_images"],
        y_train=arrays["train_labels"],
        x_test=arrays["test_images"],
        y_test=arrays["test_labels"],
        source=str(folder),
        sha256={spec.name.removesuffix(".gz"): spec.idx_sha256 for spec in FILES.values()},
    )


# --------------------------------------------------------------------------- splitting

SPLITS = ("tail", "stratified")


@dataclass
class Split:
    """Training and validation arrays, preprocessed as the seed did.

    ``x_*`` float32 ``(n, 28, 28, 1)`` in [0, 1]; ``y_*`` int ``(n,)`` class indices.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def preprocess(images: np.ndarray) -> np.ndarray:
    """uint8 (n, 28, 28) -> float32 (n, 28, 28, 1) scaled to [0, 1]."""
    return (images.astype(np.float32) / 255.0)[..., np.newaxis]


def split_train_val(
    x: np.ndarray,
    y: np.ndarray,
    val_fraction: float = 0.2,
    method: str = "tail",
    seed: int = 0,
    limit: int | None = None,
) -> Split:
    """Split the training arrays into train and validation parts.

    ``method="tail"`` reproduces Keras' ``validation_split`` (the seed notebook): the LAST
    ``val_fraction`` of the arrays, unshuffled. ``method="stratified"`` draws a seeded split
    with the same class proportions in both parts. ``limit`` keeps only the first ``limit``
    training images before splitting (for quick runs and tests).
    """
    if method not in SPLITS:
        raise ValueError(f"split method {method!r} is unknown; expected one of {', '.join(SPLITS)}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction {val_fraction!r} must lie strictly between 0 and 1")
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels; expected equal counts")
    if limit is not None:
        if limit < 10 or limit > len(x):
            raise ValueError(f"limit {limit} must lie in 10..{len(x)}")
        x, y = x[:limit], y[:limit]
    n_val = int(round(len(x) * val_fraction))
    if method == "tail":
        train_idx = np.arange(len(x) - n_val)
        val_idx = np.arange(len(x) - n_val, len(x))
    else:
        from sklearn.model_selection import train_test_split

        counts = np.bincount(y, minlength=NUM_CLASSES)
        present = int((counts > 0).sum())
        if counts[counts > 0].min() < 2 or min(n_val, len(x) - n_val) < present:
            raise ValueError(
                f"--split stratified with --limit-train {len(x)}: the smallest class has "
                f"{plural(int(counts[counts > 0].min()), 'image')} and validation would hold "
                f"{n_val}; "
                f"expected at least 2 images per class and {present} in each part (raise "
                f"--limit-train)"
            )
        train_idx, val_idx = train_test_split(
            np.arange(len(x)), test_size=n_val, stratify=y, random_state=seed
        )
    return Split(
        preprocess(x[train_idx]),
        y[train_idx].astype(np.int64),
        preprocess(x[val_idx]),
        y[val_idx].astype(np.int64),
    )
