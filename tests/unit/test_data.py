"""The Fashion-MNIST loader: real files, every check, the lookup order and a real download."""

from __future__ import annotations

import functools
import gzip
import http.server
import shutil
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import corrupt as _corrupt

from committee.data import fashion_mnist as data
from committee.data.fashion_mnist import FILES
from committee.errors import DataError


def _idx(
    kind: str, count: int, rows: int = 28, cols: int = 28, magic: int | None = None, fill: int = 0
) -> bytes:
    if kind == "images":
        header = struct.pack(">IIII", magic or data.IMAGE_MAGIC, count, rows, cols)
        return header + bytes([fill]) * (count * rows * cols)
    return struct.pack(">II", magic or data.LABEL_MAGIC, count) + bytes([fill]) * count


LABELS_SPEC = data.IdxFile("t10k-labels-idx1-ubyte.gz", "labels", 5, "0" * 32, "0" * 64)


IMAGES_SPEC = data.IdxFile("t10k-images-idx3-ubyte.gz", "images", 3, "0" * 32, "0" * 64)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    monkeypatch.delenv("FASHION_MNIST_MIRROR", raising=False)
    return tmp_path / "home"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path, data_dir):
    """A real HTTP server on 127.0.0.1 serving a copy of the official files."""
    root = tmp_path / "mirror"
    shutil.copytree(data_dir, root)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class _Endless(http.server.BaseHTTPRequestHandler):
    """Serves an unending body of zeros (no Content-Length), or announces a huge one."""

    announce: int | None = None

    def do_GET(self):
        self.send_response(200)
        if self.announce is not None:
            self.send_header("Content-Length", str(self.announce))
        self.end_headers()
        try:
            while True:
                self.wfile.write(bytes(1 << 16))
        except OSError:  # the client hung up, as it should
            pass

    def log_message(self, *args):
        pass


def test_real_files_parse_with_known_statistics(dataset):
    assert dataset.x_train.shape == (60_000, 28, 28) and dataset.x_train.dtype == np.uint8
    assert dataset.x_test.shape == (10_000, 28, 28)
    assert dataset.y_train.shape == (60_000,) and dataset.y_test.shape == (10_000,)
    train = dataset.x_train / 255.0
    assert train.mean() == pytest.approx(0.2860, abs=5e-5)
    assert train.std() == pytest.approx(0.3530, abs=5e-5)
    assert (dataset.x_test / 255.0).mean() == pytest.approx(0.2868, abs=5e-5)
    assert np.bincount(dataset.y_train).tolist() == [6000] * 10
    assert np.bincount(dataset.y_test).tolist() == [1000] * 10


def test_official_gz_md5_accepted_as_well_as_content_sha(data_dir):
    # The label files here are byte-identical to the official ones (MD5 path); the image
    # files were re-compressed (SHA-256 of the content path). Both must load.
    import hashlib

    labels = FILES["train_labels"]
    assert hashlib.md5((data_dir / labels.name).read_bytes()).hexdigest() == labels.gz_md5
    images = FILES["test_images"]
    assert hashlib.md5((data_dir / images.name).read_bytes()).hexdigest() != images.gz_md5
    assert data.read_idx_gz(data_dir / images.name, images).shape == (10_000, 28, 28)


@pytest.mark.parametrize(
    "raw, spec, message",
    [
        (_idx("labels", 5, magic=2051), LABELS_SPEC, "magic number 2051, expected 2049"),
        (_idx("images", 3, magic=2049), IMAGES_SPEC, "magic number 2049, expected 2051"),
        (_idx("labels", 4), LABELS_SPEC, "holds 4 labels, expected 5"),
        (_idx("images", 3, rows=32, cols=32), IMAGES_SPEC, "image size 32x32, expected 28x28"),
        (_idx("labels", 5, fill=10), LABELS_SPEC, "label 10 found, expected labels in 0..9"),
        (_idx("images", 3)[:-7], IMAGES_SPEC, "expected 2368"),
        (b"\x00\x00", LABELS_SPEC, "too short"),
    ],
    ids=[
        "label-magic",
        "image-magic",
        "count",
        "image-size",
        "label-range",
        "short-body",
        "short-header",
    ],
)
def test_parse_idx_rejects(raw, spec, message):
    with pytest.raises(DataError, match=message):
        data.parse_idx(raw, spec, source="f.gz")


def test_parse_idx_accepts_valid_synthetic():
    labels = data.parse_idx(_idx("labels", 5, fill=9), LABELS_SPEC)
    assert labels.tolist() == [9] * 5
    assert data.parse_idx(_idx("images", 3), IMAGES_SPEC).shape == (3, 28, 28)


@pytest.mark.parametrize(
    "key, how, message",
    [
        ("train_labels", "truncate", "truncated gzip data"),
        ("test_images", "not-gzip", "not valid gzip"),
        ("test_images", "flip-pixel", "checksum mismatch"),
        ("train_labels", "wrong-count", "holds 10000 labels, expected 60000"),
    ],
)
def test_load_names_the_bad_file(data_copy, key, how, message):
    path = _corrupt(data_copy, key, how)
    with pytest.raises(DataError, match=message) as err:
        data.load(data_copy)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_folder_and_missing_file(tmp_path, data_copy):
    with pytest.raises(DataError, match="does not exist"):
        data.load(tmp_path / "nowhere")
    _corrupt(data_copy, "test_labels", "delete")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: file missing"):
        data.load(data_copy)


def test_checksum_can_be_skipped_but_structure_cannot(data_copy):
    path = _corrupt(data_copy, "test_images", "flip-pixel")
    assert data.read_idx_gz(path, FILES["test_images"], verify_checksum=False).shape[0] == 10_000


def test_env_var_is_used_and_must_exist(home, data_dir, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(data_dir))
    assert data.resolve_data_dir() == data_dir
    monkeypatch.setenv("FASHION_MNIST_DIR", str(home / "missing"))
    with pytest.raises(DataError, match="FASHION_MNIST_DIR"):
        data.resolve_data_dir()


def test_download_refuses_a_corrupt_file_and_caches_nothing_of_it(home, mirror):
    root, url = mirror
    _corrupt(root, "test_images", "flip-pixel")
    with pytest.raises(DataError, match="could not download t10k-images.*checksum mismatch"):
        data.download_all(home / "cache", (url,))
    assert not (home / "cache" / FILES["test_images"].name).exists()
    assert not list((home / "cache").glob(".*"))


def test_download_falls_back_to_the_next_mirror(home, mirror):
    _, url = mirror
    data.download_all(home / "cache", (url + "missing/", url))
    assert all((home / "cache" / s.name).is_file() for s in FILES.values())


def test_stratified_split_is_balanced_seeded_and_disjoint(dataset):
    a = data.split_train_val(
        dataset.x_train, dataset.y_train, method="stratified", seed=3, limit=5000
    )
    b = data.split_train_val(
        dataset.x_train, dataset.y_train, method="stratified", seed=3, limit=5000
    )
    np.testing.assert_array_equal(a.y_val, b.y_val)
    assert len(a.y_train) == 4000 and len(a.y_val) == 1000
    full = np.bincount(dataset.y_train[:5000], minlength=10) / 5000
    np.testing.assert_allclose(np.bincount(a.y_val, minlength=10) / 1000, full, atol=0.002)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "random"}, "split method 'random' is unknown"),
        ({"val_fraction": 1.0}, "val_fraction 1.0 must lie strictly between 0 and 1"),
        ({"limit": 5}, "limit 5 must lie in 10..60000"),
    ],
)
def test_split_rejects_bad_options(dataset, kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.split_train_val(dataset.x_train, dataset.y_train, **kwargs)


def test_split_rejects_count_mismatch(dataset):
    with pytest.raises(ValueError, match="60000 images but 10000 labels"):
        data.split_train_val(dataset.x_train, dataset.y_test)


def test_oversized_gz_file_is_refused_before_decompressing(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_GZ_BYTES", 1 << 20)
    path = tmp_path / FILES["test_labels"].name
    path.write_bytes(gzip.compress(_idx("labels", 10_000)) + bytes(2 << 20))
    with pytest.raises(DataError, match=r"more than 1,048,576 bytes") as err:
        data.read_idx_gz(path, FILES["test_labels"])
    assert str(err.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    "announce, message",
    [
        (None, "more than 1,048,576 bytes"),  # the stream is cut off at the cap
        (10**12, "announces 1,000,000,000,000 bytes"),  # refused before reading the body
    ],
    ids=["unannounced", "announced"],
)
def test_download_stops_at_the_size_cap(home, monkeypatch, announce, message):
    monkeypatch.setattr(data, "MAX_GZ_BYTES", 1 << 20)
    handler = type("Handler", (_Endless,), {"announce": announce})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with pytest.raises(DataError) as err:
            data.download_all(home / "cache", (url,))
    finally:
        server.shutdown()
        server.server_close()
    text = str(err.value)
    assert f"{url}{FILES['train_images'].name}: " in text and message in text, text
    assert "\n" not in text
    assert not list((home / "cache").iterdir())  # nothing cached, no partial file left


def test_keras_cache_is_used_before_downloading(home, data_dir):
    cache = home / ".keras" / "datasets" / "fashion-mnist"
    shutil.copytree(data_dir, cache)
    assert data.resolve_data_dir(download=False) == cache
    shutil.rmtree(cache)
    with pytest.raises(DataError, match="downloading is off"):
        data.resolve_data_dir(download=False)


def test_download_verifies_and_caches(home, mirror, monkeypatch, capsys):
    root, url = mirror
    monkeypatch.setenv("FASHION_MNIST_MIRROR", url)
    folder = data.resolve_data_dir()
    assert folder == home / ".keras" / "datasets" / "fashion-mnist"
    for spec in FILES.values():
        assert (folder / spec.name).read_bytes() == (root / spec.name).read_bytes()
    assert not list(folder.glob(".*part"))  # no temporary files left behind
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err  # progress bar shown
    assert data.load().x_train.shape == (60_000, 28, 28)


def test_tail_split_is_keras_validation_split(dataset):
    split = data.split_train_val(dataset.x_train, dataset.y_train)
    assert split.x_train.shape == (48_000, 28, 28, 1) and split.x_val.shape == (12_000, 28, 28, 1)
    assert split.x_train.dtype == np.float32 and split.x_train.max() <= 1.0
    np.testing.assert_array_equal(split.y_val, dataset.y_train[48_000:])
    np.testing.assert_allclose(split.x_val[0, ..., 0], dataset.x_train[48_000] / 255.0, rtol=1e-6)


class _Trickle(http.server.BaseHTTPRequestHandler):
    """Sends a byte every 0.1 s: of its status line and headers (``headers_too``), or of a
    body announced as 1,000 bytes; hangs up after 6 s, so the test ends even without a
    deadline (it then fails on what it got instead)."""

    headers_too = False

    def do_GET(self):
        import time

        head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        if not self.headers_too:
            self.wfile.write(head)
            head = b""
        stop = time.monotonic() + 6
        try:
            for byte in head + bytes(1000):
                if time.monotonic() > stop:
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:  # the client hung up, as it should
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def trickle(request):
    handler = type("Handler", (_Trickle,), {"headers_too": request.param})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{FILES['test_labels'].name}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("trickle", [False, True], ids=["body", "headers"], indirect=True)
def test_a_trickling_mirror_is_stopped_at_the_deadline(tmp_path, trickle):
    """A byte every 0.1 s never trips the per-read timeout: the overall deadline stops it,
    even while the status line and headers trickle in (urlopen itself)."""
    import time

    start = time.monotonic()
    with pytest.raises(DataError) as err:
        data._download_verified(
            trickle, tmp_path / "labels.gz", FILES["test_labels"], timeout=5, deadline=1.5
        )
    took = time.monotonic() - start
    text = str(err.value)
    assert text.startswith(f"{trickle}: ") and "\n" not in text, text
    assert "bytes received in 2 s; expected the whole file within 2 s" in text, text
    assert took < 3, took
    assert not list(tmp_path.iterdir())  # no partial file left


@pytest.mark.parametrize("trickle", [False], ids=["body"], indirect=True)
def test_a_mirror_under_the_minimum_rate_is_stopped_after_its_grace(tmp_path, trickle):
    with pytest.raises(DataError) as err:
        data._download_verified(
            trickle, tmp_path / "labels.gz", FILES["test_labels"], min_rate=100, grace=1.0
        )
    text = str(err.value)
    assert "expected at least 100 bytes/s after 1 s (a stalled or very slow mirror" in text, text
    assert "\n" not in text
