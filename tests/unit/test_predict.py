"""`committee predict` on a real (tiny) run folder: new inputs reproduce the run's own test
predictions, and bad inputs fail in one line with exit status 2 before Ray starts."""

from __future__ import annotations

import struct

import numpy as np
import pytest

N = 20  # the first N test images


def test_image_conversion(tmp_path):
    """Grayscale 'L', Lanczos to 28x28, transparency on black, 16-bit scaled, no silent
    inversion (a light border is only warned about)."""
    from PIL import Image

    from committee.data.inputs import read_image, read_inputs

    rgb = np.zeros((56, 56, 3), np.uint8)
    rgb[10:40, 20:30] = (200, 100, 50)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    expected = np.asarray(Image.fromarray(rgb).convert("L").resize((28, 28), Image.LANCZOS))
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), expected / np.float32(255))

    clear = np.full((28, 28, 4), 255, np.uint8)
    clear[..., 3] = 0  # white, fully transparent: the background, black
    Image.fromarray(clear, "RGBA").save(tmp_path / "clear.png")
    assert read_image(tmp_path / "clear.png").max() == 0

    Image.fromarray(np.full((28, 28), 65535, np.uint16)).save(tmp_path / "deep.png")
    assert read_image(tmp_path / "deep.png").min() == 1.0

    light = np.full((28, 28), 240, np.uint8)
    light[8:20, 8:20] = 30  # a dark garment on a light background
    Image.fromarray(light).save(tmp_path / "light.jpeg", quality=100)
    plain = read_inputs([tmp_path / "light.jpeg"])
    assert plain.images[0, 0, 0] > 0.9 and "pass --invert" in plain.notes[-1]
    inverted = read_inputs([tmp_path / "light.jpeg"], invert=True)
    np.testing.assert_allclose(inverted.images, 1 - plain.images, atol=1e-6)
    assert not inverted.notes


def test_a_png_declaring_a_huge_size_is_one_line(tmp_path):
    """A 100-byte PNG whose header claims 100000x100000 pixels: refused before decoding."""
    import zlib

    from committee.data.inputs import read_image
    from committee.errors import InputError

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    (tmp_path / "bomb.png").write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(InputError, match=r"input .*bomb.png: Image size \(10000000000 pixels\)"):
        read_image(tmp_path / "bomb.png")
