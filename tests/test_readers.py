from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from unetflow.errors import InputError
from unetflow.readers import open_stack
from unetflow.stack_files import natural_key


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
    tifffile.imwrite(tmp_path / "s.tif", stack16, imagej=True, metadata={"axes": "ZYX"})
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


def test_tiff_written_page_by_page_reads_every_page(tmp_path, stack):
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tiff:
        for page in stack:
            tiff.write(page)  # one series per page, as many tools append slices
    np.testing.assert_array_equal(read_all(tmp_path / "pages.tif"), stack)


def test_tiff_with_a_page_of_another_size_is_refused_naming_the_pages(tmp_path, stack):
    with tifffile.TiffWriter(tmp_path / "odd.tif") as tiff:
        tiff.write(stack[:2], photometric="minisblack")
        tiff.write(np.zeros((10, 10), np.uint8))
        tiff.write(stack[2])
    with pytest.raises(InputError, match=r"odd\.tif: page 2 is 10x10 uint8 but page 0 is 20x30 uint8 \(the file's "
                                         r"4 pages: 2 of 20x30, 1 of 10x10, 1 of 20x30\).*remove that page"):
        open_stack(tmp_path / "odd.tif")


def palette_png(path: Path, indices: np.ndarray, colours: list[tuple[int, int, int]]) -> None:
    image = Image.fromarray(indices, mode="P")
    image.putpalette([value for colour in colours for value in colour])
    image.save(path)


def test_palette_png_labels_read_as_their_indices(tmp_path):
    labels = np.zeros((2, 12, 12), np.uint8)
    labels[:, 2:5, 2:5], labels[:, 7:10, 7:10] = 1, 2
    (tmp_path / "labels").mkdir()
    for index, plane in enumerate(labels):  # red and green objects: "to grayscale" would merge them
        palette_png(tmp_path / "labels" / f"{index}.png", plane, [(0, 0, 0), (255, 0, 0), (0, 255, 0)])
    source = open_stack(tmp_path / "labels", labels=True)
    np.testing.assert_array_equal(np.stack([source.read(i) for i in range(2)]), labels)


def test_palette_png_images_read_through_a_gray_palette_and_a_colour_one_is_refused(tmp_path):
    indices = np.arange(16, dtype=np.uint8).reshape(4, 4)
    (tmp_path / "gray").mkdir()
    palette_png(tmp_path / "gray" / "0.png", indices, [(10 * i, 10 * i, 10 * i) for i in range(16)])
    np.testing.assert_array_equal(read_all(tmp_path / "gray")[0], indices * 10)
    (tmp_path / "colour").mkdir()
    palette_png(tmp_path / "colour" / "0.png", indices, [(i, 0, 0) for i in range(16)])
    with pytest.raises(InputError, match=r"0\.png: the image has a colour palette.*grayscale"):
        open_stack(tmp_path / "colour")


def test_five_d_ome_zarr_with_singleton_time_and_channel_is_read(tmp_path, stack):
    from ome_zarr.writer import write_image

    group = zarr.open_group(str(tmp_path / "image.ome.zarr"), mode="w", zarr_format=2)
    write_image(stack[None, None], group, axes="tczyx", scale_factors=[])
    np.testing.assert_array_equal(read_all(tmp_path / "image.ome.zarr"), stack)


def test_ome_zarr_channels_are_read_as_channels(tmp_path, stack):
    from ome_zarr.writer import write_image

    group = zarr.open_group(str(tmp_path / "two.ome.zarr"), mode="w", zarr_format=2)
    two = np.stack([stack, 255 - stack])
    write_image(two[None], group, axes="tczyx", scale_factors=[])
    source = open_stack(tmp_path / "two.ome.zarr")
    assert source.shape == stack.shape and source.channels == 2
    np.testing.assert_array_equal(read_all(tmp_path / "two.ome.zarr"), two.transpose(1, 0, 2, 3))


def test_ome_zarr_with_two_time_points_is_refused_naming_the_axes(tmp_path, stack):
    from ome_zarr.writer import write_image

    group = zarr.open_group(str(tmp_path / "time.ome.zarr"), mode="w", zarr_format=2)
    write_image(np.stack([stack, stack])[:, None], group, axes="tczyx", scale_factors=[])
    with pytest.raises(InputError, match=r"time\.ome\.zarr: the image has 2 entries along T and 3 along Z"):
        open_stack(tmp_path / "time.ome.zarr")


@pytest.mark.parametrize("axes, kind", [("ZCYX", "imagej"), ("CZYX", "ome")])
def test_hyperstack_tiff_channels_follow_its_axes(tmp_path, stack, axes, kind):
    two = np.stack([stack, 255 - stack], axis=axes.index("C"))
    tifffile.imwrite(tmp_path / "h.tif", two, **{kind: True}, metadata={"axes": axes})
    source = open_stack(tmp_path / "h.tif")
    assert source.shape == stack.shape and source.channels == 2
    np.testing.assert_array_equal(read_all(tmp_path / "h.tif")[:, 1], 255 - stack)
    np.testing.assert_array_equal(read_all(tmp_path / "h.tif")[:, 0], stack)


@pytest.mark.parametrize("channel_axis", [1, -1])
def test_npy_channels_come_from_the_configs_channel_axis(tmp_path, stack, channel_axis):
    two = np.stack([stack, 255 - stack], axis=channel_axis)
    np.save(tmp_path / "c.npy", two)
    with pytest.raises(InputError, match=r"c\.npy: array has shape .* channel_axis"):
        open_stack(tmp_path / "c.npy")
    np.testing.assert_array_equal(read_all_with(tmp_path / "c.npy", channel_axis)[:, 1], 255 - stack)
    with pytest.raises(InputError, match=r"c\.npy: channel_axis 4 is no axis of the image"):
        open_stack(tmp_path / "c.npy", channel_axis=4)


def test_labels_with_channels_are_refused(tmp_path, stack):
    np.save(tmp_path / "l.npy", np.stack([stack, stack]))
    with pytest.raises(InputError, match=r"l\.npy: labels have 2 channels"):
        open_stack(tmp_path / "l.npy", labels=True, channel_axis=0)


def read_all_with(path: Path, channel_axis: int) -> np.ndarray:
    source = open_stack(path, channel_axis=channel_axis)
    return np.stack([source.read(index) for index in range(source.shape[0])])
