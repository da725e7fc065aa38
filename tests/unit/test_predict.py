"""`committee predict` on a real (tiny) run folder: new inputs reproduce the run's own test
predictions, and bad inputs fail in one line with exit status 2 before Ray starts."""

from __future__ import annotations

import os
import re
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
    with pytest.raises(
        InputError, match=r"input .*bomb.png: 10,000,000,000 pixels; expected at most"
    ):
        read_image(tmp_path / "bomb.png")


@pytest.mark.parametrize("kind", ["dds", "gif"])
def test_an_image_of_another_format_named_png_is_one_line_naming_it(tmp_path, kind):
    """Pillow opens more than PNG and JPEG (a DDS decoder raised NotImplementedError for a
    pixel format it does not know; a GIF was classified): only PNG and JPEG are opened."""
    from PIL import Image

    from committee.data.inputs import read_inputs
    from committee.errors import InputError

    if kind == "dds":
        header = (
            struct.pack("<7I", 124, 0x1007, 28, 28, 0, 0, 0)
            + b"\0" * 44
            + struct.pack("<2I4s5I", 32, 4, b"ZZZZ", 0, 0, 0, 0, 0)  # a FourCC no decoder has
            + struct.pack("<5I", 0x1000, 0, 0, 0, 0)
        )
        (tmp_path / "x.png").write_bytes(b"DDS " + header + bytes(1000))
    else:
        Image.new("L", (28, 28)).save(tmp_path / "x.png", format="GIF")
    with pytest.raises(InputError) as error:
        read_inputs([tmp_path])
    assert str(error.value) == (
        f"input {tmp_path / 'x.png'}: not a readable image (cannot identify image file "
        f"'{tmp_path / 'x.png'}'); expected a PNG or JPEG file"
    )


@pytest.mark.parametrize(
    "name, expected",
    [
        ("p" * 250 + ".csv", "its name of 254 bytes is too long for its file system"),
        ("\ud800.csv", "its name cannot be encoded in the file system's encoding"),
    ],
    ids=["too-long", "not-encodable"],
)
def test_an_output_name_the_file_system_cannot_take_is_refused_before_work(
    tmp_path, name, expected
):
    from committee.app.predict import output_path

    with pytest.raises(ValueError, match=f"^--output {re.escape(str(tmp_path))}/.*: {expected}"):
        output_path(str(tmp_path / name), "run", tmp_path / "run")


def test_a_file_name_that_is_not_utf8_is_escaped_in_the_table(tmp_path):
    """os.listdir gives bytes that are not UTF-8 as lone surrogates, which Parquet and CSV
    cannot hold: the table writes them as \\xNN instead of failing after the inference."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from committee.data.inputs import Inputs
    from committee.report.tables import prediction_table, write_table

    name = os.fsdecode(b"/in/caf\xe9.png")  # Latin-1, as an old camera writes it
    probas = np.full((1, 10), 0.1, np.float32)
    table = prediction_table(
        Inputs(np.zeros((1, 28, 28), np.float32), [name], np.zeros(1, np.int32)),
        {"model1": probas},
        {"mean": probas},
        "mean",
    )
    write_table(tmp_path / "p.parquet", table)
    write_table(tmp_path / "p.csv", table)
    assert pq.read_table(tmp_path / "p.parquet")["input"].to_pylist() == ["/in/caf\\xe9.png"]
    assert pcsv.read_csv(tmp_path / "p.csv")["input"].to_pylist() == ["/in/caf\\xe9.png"]


def test_probabilities_that_are_not_probabilities_name_the_members_file():
    """What a member gave back is checked per row, naming its file (not "member 0")."""
    from committee.distributed.batch_inference import _check_rows
    from committee.errors import MemberLoadError

    proba = np.full((3, 10), 0.1, np.float32)
    _check_rows("model1", proba)
    proba[1, 4] = np.nan
    proba[2] = 1.0
    with pytest.raises(MemberLoadError) as error:
        _check_rows("model1", proba)
    assert str(error.value).startswith(
        "models/model1.keras gave 2 of 3 images (the first: image 1) probabilities that are "
        "not finite, >= 0 and summing to 1"
    )


@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_an_output_that_is_a_link_or_a_fifo_is_refused_before_any_work(tmp_path, kind):
    """The write would refuse it too (rundir.door), but only after the whole inference."""
    import os

    from committee.app.predict import check_output_file

    path = tmp_path / "out.parquet"
    if kind == "link":
        path.symlink_to(tmp_path / "elsewhere.txt")
        what = "a symbolic link"
    else:
        os.mkfifo(path)
        what = "not a regular file (a FIFO?)"
    with pytest.raises(ValueError) as error:
        check_output_file(str(path), path, tmp_path / "run", ".parquet or .csv")
    assert str(error.value) == (
        f"--output {path} is {what}; expected a new or regular file ending in .parquet or .csv"
    )
    assert not (tmp_path / "elsewhere.txt").exists()
