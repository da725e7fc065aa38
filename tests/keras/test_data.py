"""The Fashion-MNIST loader: real files, every check, the lookup order and a real download."""

from __future__ import annotations

import functools
import http.server
import shutil
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest

from committee.data import fashion_mnist as data
from committee.data.fashion_mnist import FILES
from committee.errors import DataError


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


BOMB_GIB = 1.5


def _write_bomb(path: Path, spec: data.IdxFile, gib: float = BOMB_GIB) -> None:
    """A gzip file with a valid IDX header for ``spec`` followed by ``gib`` GiB of zeros,
    compressed chunk by chunk (the file is ~1.5 MB; nothing large is ever held)."""
    header = struct.pack(">IIII", data.IMAGE_MAGIC, spec.count, 28, 28)
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    chunk = bytes(16 << 20)
    with open(path, "wb") as out:
        out.write(deflate.compress(header))
        for _ in range(int(gib * (1 << 30)) // len(chunk)):
            out.write(deflate.compress(chunk))
        out.write(deflate.flush())


# Peak memory is this process's VmHWM: getrusage's ru_maxrss would also count the parent's
# peak, which a child inherits across fork and exec on Linux.
_READ_AND_MEASURE = """
import re, sys
from pathlib import Path
from committee.data import fashion_mnist as data
try:
    data.read_idx_gz(Path(sys.argv[1]), data.FILES["train_images"])
    print("accepted")
except data.DataError as exc:
    print(exc)
status = Path("/proc/self/status").read_text()
print(int(re.search(r"VmHWM:\\s*(\\d+) kB", status).group(1)) // 1024)  # MiB
"""


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


def test_gzip_bomb_is_refused_in_bounded_memory(tmp_path):
    bomb = tmp_path / FILES["train_images"].name
    _write_bomb(bomb, FILES["train_images"])
    assert bomb.stat().st_size < 4 << 20
    run = subprocess.run(
        [sys.executable, "-c", _READ_AND_MEASURE, str(bomb)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert run.returncode == 0, run.stderr
    message, peak_mib = run.stdout.strip().splitlines()
    assert message.startswith(f"{bomb}: IDX content too long"), message
    assert "expected 47040016 for 60000 images" in message
    assert int(peak_mib) < 300, f"peak RSS {peak_mib} MiB reading a {BOMB_GIB} GiB bomb"
