"""Predict's inputs as they come from outside: phone photos, 16-bit PNGs, folders with other
programs' hidden files, and files small on disk that would decode or inflate to gigabytes
(issue 31, kinds 8 and 12). No Keras: a .keras file is checked as a zip."""

from __future__ import annotations

import gzip
import os
import struct
import zipfile
import zlib

import numpy as np
import pytest

from committee.data import inputs
from committee.errors import InputError
from committee.training import checkpoint

# --------------------------------------------------------------------------- images


def test_a_photo_is_turned_as_its_exif_orientation_says(tmp_path):
    """A phone stores a portrait photo sideways with orientation 6 (turn 90 degrees clockwise
    to view): it is classified as seen, not as stored."""
    from PIL import Image

    stored = np.zeros((28, 28), np.uint8)
    stored[2:10, 2:10] = 255  # a bright block at the top left, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to view
    Image.fromarray(stored).save(tmp_path / "phone.jpg", quality=100, exif=exif)
    upright = np.rot90(stored, k=-1)  # turned clockwise: the block is at the top right
    Image.fromarray(upright).save(tmp_path / "upright.png")

    seen = inputs.read_image(tmp_path / "phone.jpg")
    np.testing.assert_allclose(seen, inputs.read_image(tmp_path / "upright.png"), atol=0.05)
    assert seen[2:10, 18:26].mean() > 0.9 and seen[2:10, 2:10].mean() < 0.1


def test_a_16_bit_png_with_a_transparency_key_is_scaled_first(tmp_path):
    """A 16-bit gray PNG whose tRNS key marks its background: the key matches the 16-bit
    values, then those are scaled to 8 bits (Pillow's RGBA conversion clipped them: white)."""
    from PIL import Image

    wide = np.full((28, 28), 128 * 257, np.uint16)  # mid gray, 8-bit 128
    wide[:4] = 1000  # the transparent key
    Image.fromarray(wide).save(tmp_path / "deep.png", transparency=1000)
    with Image.open(tmp_path / "deep.png") as image:
        assert image.mode.startswith("I") and image.info["transparency"] == 1000

    pixels = inputs.read_image(tmp_path / "deep.png")
    assert pixels[:4].max() == 0  # transparent: the black background
    np.testing.assert_allclose(pixels[4:], 128 / 255, atol=1e-6)


def _png16(path, color_type: int, rows: np.ndarray, key: tuple[int, ...]) -> None:
    """A 16-bit PNG written by hand (Pillow writes no 16-bit RGB): ``rows`` uint16
    ``(h, w * channels)``, ``key``: its tRNS transparent color."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    h, w = rows.shape[0], rows.shape[1] // (3 if color_type == 2 else 1)
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rows)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
        + chunk(b"tRNS", struct.pack(f">{len(key)}H", *key))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("color_type", [0, 2], ids=["gray", "rgb"])
def test_a_16_bit_png_key_marks_its_background_in_either_color_type(tmp_path, color_type):
    """A gray background (20000 of 65535) marked transparent by its tRNS key: black once
    read. Pillow reads 16-bit RGB as 8 bits but kept the key in 16, which matched nothing."""
    channels = 3 if color_type == 2 else 1
    rows = np.full((28, 28 * channels), 20000, np.uint16)
    rows[8:20, 8 * channels : 20 * channels] = 128 * 257  # a mid-gray garment
    _png16(tmp_path / "key.png", color_type, rows, (20000,) * channels)

    pixels = inputs.read_image(tmp_path / "key.png")
    assert pixels[:8].max() == 0 and pixels[20:].max() == 0  # the background
    np.testing.assert_allclose(pixels[8:20, 8:20], 128 / 255, atol=1e-6)


def test_hidden_entries_of_a_folder_are_skipped_and_counted(tmp_path):
    """macOS leaves ._x.png (AppleDouble metadata, not a PNG) beside x.png on other disks."""
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / "x.png")
    (folder / "._x.png").write_bytes(b"\x00\x05\x16\x07" + bytes(100))
    (folder / ".y.npy").write_bytes(b"junk")

    read = inputs.read_inputs([folder])
    assert read.sources == [str(folder / "x.png")]
    assert f"input folder {folder}: skipped 2 hidden entries (names starting with '.', " in (
        "\n".join(read.notes)
    )

    # named on its own, a hidden file is read (and refused as what it is)
    with pytest.raises(InputError, match=r"\._x\.png: not a readable image"):
        inputs.read_inputs([folder / "._x.png"])

    (folder / "x.png").unlink()
    with pytest.raises(InputError) as err:
        inputs.read_inputs([folder])
    assert "holds no .png" in str(err.value) and "skipped 2 hidden entries" in str(err.value)


def test_inputs_that_are_not_regular_files_are_named_for_what_they_are(tmp_path):
    """Named on the command line: refused in one line saying what it is (a FIFO would block
    the read; it is never opened). In a folder: skipped and counted, with what each is."""
    from PIL import Image

    fifo = tmp_path / "in.npy"
    os.mkfifo(fifo)
    device = tmp_path / "z.npy"
    device.symlink_to("/dev/zero")
    for path, what in ((fifo, "is a FIFO"), (device, "is a character device")):
        with pytest.raises(InputError, match=f"^input {path} {what}; expected an image"):
            inputs.read_inputs([path])
    with pytest.raises(InputError, match="does not exist"):
        inputs.read_inputs([tmp_path / "missing.png"])

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / "x.png")
    os.mkfifo(folder / "y.png")
    (folder / "z.npy").symlink_to("/dev/zero")
    (folder / "w.png").symlink_to(tmp_path / "gone.png")
    read = inputs.read_inputs([folder])
    assert read.sources == [str(folder / "x.png")]
    assert (
        f"input folder {folder}: skipped 3 entries that are not regular files (w.png: a "
        "broken symbolic link, y.png: a FIFO, z.npy: a character device)"
    ) in read.notes


def test_a_picture_too_large_is_refused_with_its_size_and_the_tools_cap(tmp_path):
    """Above the tool's cap, and above Pillow's own (which says "exceeds limit of 178956970
    pixels"): both name the picture's size and the tool's cap, never Pillow's."""
    from PIL import Image

    for side, pixels in ((8_000, "8000x8000 pixels"), (15_000, "225,000,000 pixels")):
        path = tmp_path / f"{side}.png"
        Image.new("1", (side, side)).save(path)  # a few KB on disk
        with pytest.raises(InputError) as err:
            inputs.read_inputs([path])
        assert str(err.value) == (
            f"input {path}: {pixels}; expected at most {inputs.MAX_IMAGE_PIXELS:,} pixels"
        )


# --------------------------------------------------------------------------- decoded size


def _npy_header_only(path, shape, dtype="<f8"):
    """A .npy file declaring ``shape`` whose data is a hole: a few KB on disk."""
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.truncate(f.tell() + int(np.prod(shape)) * np.dtype(dtype).itemsize)


def test_a_sparse_npy_declaring_gigabytes_is_refused_before_it_is_read(tmp_path, monkeypatch):
    """250,000 float64 images (1.57 GB, plus 0.78 GB as float32) in a file of 4 KB on disk."""
    _npy_header_only(tmp_path / "sparse.npy", (250_000, 28, 28))

    def no_load(*args, **kwargs):
        raise AssertionError("np.load was called")

    monkeypatch.setattr(np, "load", no_load)
    with pytest.raises(InputError) as err:
        inputs.read_inputs([tmp_path / "sparse.npy"])
    text = str(err.value)
    assert text == (
        f"input {tmp_path / 'sparse.npy'}: array float64 (250000, 28, 28) decodes to "
        f"2,352,000,000 bytes (as stored and as float32); expected at most 1,073,741,824 "
        f"bytes of decoded input per predict call (split the inputs over several calls)"
    )


def test_the_cap_is_on_all_the_inputs_of_a_call(tmp_path):
    """Files each under the cap, together over it: the first file past it is named."""
    from PIL import Image

    per_image = 28 * 28 * (1 + 4)  # uint8 as stored + float32
    for name in ("a.npy", "b.npy"):
        np.save(tmp_path / name, np.zeros((10, 28, 28), np.uint8))
    with gzip.open(tmp_path / "c.gz", "wb") as f:
        f.write(struct.pack(">IIII", 2051, 10, 28, 28) + bytes(10 * 784))
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "d.png")
    files = [tmp_path / n for n in ("a.npy", "b.npy", "c.gz", "d.png")]

    assert len(inputs.read_inputs(files, max_bytes=30 * per_image + 784 * 4).images) == 31
    with pytest.raises(InputError) as err:
        inputs.read_inputs(files, max_bytes=15 * per_image)
    assert str(err.value).startswith(
        f"input {tmp_path / 'b.npy'}: array uint8 (10, 28, 28) decodes to 39,200 bytes "
        f"(as stored and as float32) after 39,200 bytes of earlier inputs; expected at most "
        f"58,800 bytes"
    )
    with pytest.raises(InputError, match=r"c\.gz: IDX images uint8 \(10, 28, 28\) decodes"):
        inputs.read_inputs(files, max_bytes=25 * per_image)
    with pytest.raises(InputError, match=r"d\.png: an image decodes to 3,136 bytes"):
        inputs.read_inputs(files, max_bytes=30 * per_image)


# --------------------------------------------------------------------------- .keras zips


def _keras_zip(path, config: bytes, weights: bytes = b"weights", method=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", b"{}")
        archive.writestr("config.json", config, compress_type=method)
        archive.writestr("model.weights.h5", weights)
    return path


def test_a_keras_file_whose_config_inflates_is_refused(tmp_path):
    """5 KB on disk, a config.json of 64 MB unpacked: refused before Keras would read it."""
    path = _keras_zip(tmp_path / "bomb.keras", b" " * (64 << 20), method=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 100_000
    with pytest.raises(ValueError) as err:
        checkpoint.check_keras_archive(path)
    assert str(err.value) == (
        f"{path}: its config.json unpacks to more than 4,194,304 bytes; expected at most "
        f"4,194,304 (a model's config is a few KB)"
    )


def test_a_keras_zip_directory_that_understates_a_part_is_not_believed(tmp_path):
    """The zip's directory says config.json is 10 bytes; its deflated data is 64 MB. Python's
    zipfile inflates a whole read before cutting it to the announced size."""
    path = _keras_zip(tmp_path / "liar.keras", b" " * (64 << 20), method=zipfile.ZIP_DEFLATED)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("config.json")
    local = info.header_offset
    crc = struct.pack("<I", zlib.crc32(b" " * 10))  # what zipfile checks: the first 10 bytes
    raw[local + 14 : local + 18] = crc  # the local header's CRC and size
    raw[local + 22 : local + 26] = struct.pack("<I", 10)
    central = raw.index(b"PK\x01\x02")  # the directory's first entry
    while raw[central + 46 : central + 46 + 11] != b"config.json":
        central = raw.index(b"PK\x01\x02", central + 4)
    raw[central + 16 : central + 20] = crc  # the directory's CRC and size
    raw[central + 24 : central + 28] = struct.pack("<I", 10)
    path.write_bytes(bytes(raw))
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("config.json").file_size == 10
        assert archive.testzip() is None  # the CRCs check out
    with pytest.raises(ValueError, match="config.json unpacks to more than 4,194,304 bytes"):
        checkpoint.check_keras_archive(path)


def test_a_keras_file_over_the_total_unpacked_cap_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "MAX_KERAS_BYTES", 1 << 20)
    path = _keras_zip(tmp_path / "big.keras", b"{}", weights=bytes(2 << 20))
    with pytest.raises(ValueError) as err:
        checkpoint.check_keras_archive(path)
    assert str(err.value) == (
        f"{path}: its parts unpack to more than 1,048,576 bytes (counted up to "
        f"model.weights.h5); expected at most 1,048,576 for a .keras file"
    )
    small = _keras_zip(tmp_path / "small.keras", b"{}", weights=bytes(1000))
    checkpoint.check_keras_archive(small)  # within the caps: no error


def test_a_resume_checkpoint_whose_config_inflates_is_refused_before_keras(tmp_path):
    """train/<member>/checkpoint_*/model.keras is read back on a resume: the same caps as a
    finished member's model (Keras is unimportable in this tier: it is never reached)."""
    import json

    from committee.training.state import TrainState

    _keras_zip(tmp_path / checkpoint.MODEL_FILE, b" " * (64 << 20), method=zipfile.ZIP_DEFLATED)
    state = TrainState(epoch=1, history={"loss": [1.0]}).__dict__
    (tmp_path / checkpoint.STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(ValueError, match="its config.json unpacks to more than 4,194,304 bytes"):
        checkpoint.load_checkpoint(tmp_path, max_epochs=5)
