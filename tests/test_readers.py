from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from unetflow.errors import InputError
from unetflow.readers import natural_key, open_stack


@pytest.fixture
def stack() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(3, 20, 30), dtype=np.uint8)


def read_all(path) -> np.ndarray:
    source = open_stack(path)
    return np.stack([source.read(index) for index in range(source.shape[0])])


def write_folder(folder: Path, stack: np.ndarray, suffix: str) -> Path:
    folder.mkdir()
    for index, image in enumerate(stack):
        # unpadded numbers, so that natural order differs from lexical order
        name = folder / f"slice{index * 5}{suffix}"
        Image.fromarray(image).save(name) if suffix == ".png" else tifffile.imwrite(name, image)
    return folder


def test_multipage_tiff_round_trips(tmp_path, stack):
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack")
    np.testing.assert_array_equal(read_all(tmp_path / "s.tif"), stack)


def test_imagej_tiff_round_trips(tmp_path):
    stack16 = np.random.default_rng(1).integers(0, 65535, size=(4, 16, 16), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", stack16, imagej=True)
    np.testing.assert_array_equal(read_all(tmp_path / "s.tif"), stack16)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_folder_of_slices_round_trips_in_natural_order(tmp_path, stack, suffix):
    folder = write_folder(tmp_path / "slices", stack, suffix)
    np.testing.assert_array_equal(read_all(folder), stack)


def test_sixteen_bit_png_folder_keeps_its_dtype(tmp_path):
    stack16 = np.random.default_rng(2).integers(0, 65535, size=(2, 12, 10), dtype=np.uint16)
    folder = write_folder(tmp_path / "slices", stack16, ".png")
    source = open_stack(folder)
    assert source.dtype == np.uint16
    np.testing.assert_array_equal(read_all(folder), stack16)


def test_npy_round_trips(tmp_path, stack):
    np.save(tmp_path / "s.npy", stack.astype(np.float32))
    np.testing.assert_array_equal(read_all(tmp_path / "s.npy"), stack.astype(np.float32))


def test_zarr_array_and_group_round_trip(tmp_path, stack):
    zarr.create_array(str(tmp_path / "a.zarr"), data=stack, chunks=(1, 20, 30))
    np.testing.assert_array_equal(read_all(tmp_path / "a.zarr"), stack)
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("image", data=stack)
    np.testing.assert_array_equal(read_all(tmp_path / "g.zarr"), stack)


def test_natural_sort_puts_2_before_10():
    assert sorted(["s10.png", "s2.png", "s1.png"], key=natural_key) == ["s1.png", "s2.png", "s10.png"]


def test_missing_path_names_the_path(tmp_path):
    with pytest.raises(InputError, match=r"nothere\.tif: no such file or folder; check the path"):
        open_stack(tmp_path / "nothere.tif")


def test_unknown_file_type_lists_supported_ones(tmp_path):
    (tmp_path / "stack.h5").write_bytes(b"\x89HDF")
    with pytest.raises(InputError, match=r"stack\.h5: unsupported file type '\.h5'; give a multi-page TIFF"):
        open_stack(tmp_path / "stack.h5")


def test_empty_folder_says_what_to_put_there(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: the folder holds no PNG or TIFF slices; put one 2-D image"):
        open_stack(tmp_path / "empty")


def test_slice_of_another_size_is_named(tmp_path, stack):
    folder = write_folder(tmp_path / "slices", stack, ".png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(folder / "slice7.png")
    with pytest.raises(InputError, match=r"slice7\.png: slice is 10x10 but slice0\.png is 20x30.*crop or pad"):
        open_stack(folder)


def test_truncated_tiff_is_reported_as_truncated(tmp_path, stack):
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, stack, photometric="minisblack")
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    with pytest.raises(InputError, match=r"s\.tif: cannot be read .* truncated or corrupt: export or copy it again"):
        read_all(path)


def test_truncated_png_is_reported_as_truncated(tmp_path, stack):
    folder = write_folder(tmp_path / "slices", stack, ".png")
    broken = folder / "slice5.png"
    broken.write_bytes(broken.read_bytes()[:200])
    with pytest.raises(InputError, match=r"slice5\.png: cannot be read .* truncated or corrupt"):
        read_all(folder)


def test_rgb_image_asks_for_grayscale(tmp_path):
    rgb = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with pytest.raises(InputError, match=r"rgb\.tif: .*colour.*convert the stack to grayscale"):
        open_stack(tmp_path / "rgb.tif")
    folder = tmp_path / "rgbpng"
    folder.mkdir()
    Image.fromarray(rgb[0]).save(folder / "0.png")
    with pytest.raises(InputError, match=r"0\.png: the slice has 3 colour channels.*grayscale"):
        open_stack(folder)
