"""The Fashion-MNIST loader: real files, every check, the lookup order and a real download."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

from committee.data import fashion_mnist as data
from committee.data.fashion_mnist import FILES

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
