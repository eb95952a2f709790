"""Readers of raw image stacks: one 2-D slice at a time, whatever the format.

Supported sources, chosen by the path:

- a multi-page TIFF (``.tif``/``.tiff``), one page per slice;
- a folder of 2-D slices (PNG or TIFF), in natural sort order (``2`` before ``10``);
- a 3-D (or 2-D) NumPy ``.npy`` file, memory-mapped;
- a Zarr array, or a Zarr/OME-Zarr group holding one (``.zarr``).

Every reader exposes ``shape`` (z, y, x), ``channels``, ``dtype``, ``voxel_size``
(what the file's metadata states, or None), ``name_of(index)`` and ``read(index)``
(a (y, x) slice, or (c, y, x) with several channels); none reads more than one
slice into memory, so a stack of any length streams through ingestion.

Channels (fluorescence) come from the file's metadata (the C axis of an ImageJ
hyperstack or OME-TIFF, the ``c`` axis of OME-Zarr) or from the dataset's
``channel_axis`` (the axis of the file's array, for .npy, plain Zarr or TIFF):
:class:`Layout` says which axis of the array is which.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import tifffile
import zarr
from PIL import Image

from .array_layout import layout_of
from .config_checks import parse_slice_selection
from .errors import InputError
from .stack_files import is_zarr, slice_files
from .voxel_size import VoxelSize, from_imagej, from_ngff, from_ome_xml

SUPPORTED = (
    "a multi-page TIFF (.tif/.tiff), a folder of PNG/TIFF slices, "
    "a 3-D NumPy array (.npy) or a Zarr array (.zarr)"
)
PNG_MODE_DTYPES = {"1": np.bool_, "L": np.uint8, "I;16": np.uint16, "I": np.int32, "F": np.float32}
RGB_FIX = "convert the stack to grayscale first (e.g. Fiji: Image > Type > 8-bit)"


class SliceStack(Protocol):
    """A stack of 2-D slices read one at a time."""

    path: Path
    shape: tuple[int, int, int]
    channels: int
    dtype: np.dtype
    voxel_size: VoxelSize | None

    def name_of(self, index: int) -> str: ...

    def read(self, index: int) -> np.ndarray: ...


def open_stack(path: str | Path, *, labels: bool = False, channel_axis: int | None = None) -> SliceStack:
    """Open a raw stack for slice-by-slice reading.

    Parameters
    ----------
    path
        A multi-page TIFF, a folder of PNG/TIFF slices, a ``.npy`` file or a
        Zarr array/group.
    labels
        The stack holds labels: palette (mode P) PNG slices are read as their
        colour-table indices, which are the labels annotation tools saved.
        Images are read through a gray palette and refused with a colour one.
        Labels have one channel.
    channel_axis
        The axis of the file's array that holds channels (the dataset's ``channel_axis``);
        None: what the file's metadata says, else one channel.

    Raises
    ------
    InputError
        If the path does not exist, has an unsupported type or is unreadable.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path in the config's datasets section")
    suffix = path.suffix.lower()
    if is_zarr(path):
        stack = ZarrStack(path, channel_axis)
    elif path.is_dir() and channel_axis is None:
        return FolderStack(path, labels=labels)
    elif path.is_dir():
        raise InputError(f"{path}: a folder of slices has one channel; drop the dataset's channel_axis, or give "
                         "a multi-channel TIFF, .npy or Zarr file")
    elif suffix in (".tif", ".tiff"):
        stack = TiffStack(path, channel_axis)
    elif suffix == ".npy":
        stack = NpyStack(path, channel_axis)
    else:
        raise InputError(f"{path}: unsupported file type '{suffix}'; give {SUPPORTED}")
    if labels and stack.channels > 1:
        raise InputError(f"{path}: labels have {stack.channels} channels; save one label image per slice")
    return stack


def _check_grayscale(path: Path, shape: tuple[int, ...], what: str) -> None:
    if len(shape) == 3 and shape[-1] in (3, 4):
        raise InputError(f"{path}: {what} has {shape[-1]} colour channels (shape {shape}); {RGB_FIX}")
    if len(shape) != 2:
        raise InputError(f"{path}: {what} has shape {shape}, expected a 2-D grayscale image; {RGB_FIX}")


def tiff_voxel_size(tiff: tifffile.TiffFile, where: str) -> VoxelSize | None:
    """The voxel size an OME-TIFF or ImageJ TIFF states; None for other TIFFs, whose resolution
    tags (often a default 72 dpi) say nothing about the sample."""
    if tiff.is_ome and tiff.ome_metadata:
        return from_ome_xml(tiff.ome_metadata, where)
    if tiff.is_imagej and tiff.imagej_metadata:
        x_per_unit, y_per_unit = tiff.pages.first.resolution
        return from_imagej(tiff.imagej_metadata, (y_per_unit, x_per_unit), where)
    return None


def _unreadable(path: Path, error: Exception) -> InputError:
    return InputError(
        f"{path}: cannot be read ({type(error).__name__}: {error}); the file is truncated or "
        "corrupt: export or copy it again"
    )


class TiffStack:
    """A multi-page TIFF; every plane of every series is a slice, in file order.

    Tools that append pages one by one write one series per page, and a page of
    another size starts a series of its own; reading only the first series would
    silently drop slices, so all are read, and series that do not stack (another
    slice size or data type) are refused, naming the pages.
    """

    def __init__(self, path: Path, channel_axis: int | None = None):
        self.path, self.channels, self._layout = path, 1, None
        try:
            self._tiff = tifffile.TiffFile(path)
            series = list(self._tiff.series)
        except Exception as error:  # tifffile raises many types for broken files
            raise _unreadable(path, error) from error
        self.voxel_size = tiff_voxel_size(self._tiff, str(path))
        if len(series) == 1 and (channel_axis is not None or self._has_channels(series[0])):
            self._open_channels(series[0], channel_axis)
            return
        shapes = [self._planes_shape(one) for one in series]
        dtypes = [np.dtype(one.dtype) for one in series]
        self._check_stackable(shapes, dtypes)
        self._planes = [(one, index) for one, shape in zip(series, shapes) for index in range(shape[0])]
        self.shape, self.dtype = (len(self._planes), *shapes[0][1:]), dtypes[0]

    @staticmethod
    def _has_channels(series: tifffile.TiffPageSeries) -> bool:
        return "C" in series.axes and series.shape[series.axes.index("C")] > 1

    def _open_channels(self, series: tifffile.TiffPageSeries, channel_axis: int | None) -> None:
        """A hyperstack with channels (ImageJ, OME-TIFF): pages in the order of its leading axes."""
        if "S" in series.axes:
            raise InputError(f"{self.path}: the TIFF has colour samples (axes {series.axes}); {RGB_FIX}")
        self._series, self._layout = series, layout_of(self.path, tuple(series.shape), series.axes, channel_axis)
        if self._layout.plane_axes != (len(series.shape) - 2, len(series.shape) - 1):
            raise InputError(f"{self.path}: channel_axis {channel_axis} is an axis of the TIFF's pages (axes "
                             f"{series.axes}, shape {series.shape}); a TIFF's channels are pages: give another axis")
        self.shape, self.channels, self.dtype = self._layout.stack_shape, self._layout.channels, np.dtype(series.dtype)

    def _planes_shape(self, series: tifffile.TiffPageSeries) -> tuple[int, int, int]:
        if "S" in series.axes:
            raise InputError(f"{self.path}: the TIFF has colour samples (axes {series.axes}); {RGB_FIX}")
        shape = tuple(series.shape)
        if len(shape) == 2:
            return (1, *shape)
        if len(shape) != 3:
            raise InputError(
                f"{self.path}: TIFF series has shape {shape} (axes {series.axes}); expected a stack of "
                "2-D grayscale slices (z, y, x): save one channel and one time point"
            )
        return shape

    def _check_stackable(self, shapes: list[tuple[int, int, int]], dtypes: list[np.dtype]) -> None:
        page = 0
        for shape, dtype in zip(shapes, dtypes):
            if shape[1:] != shapes[0][1:] or dtype != dtypes[0]:
                counts = ", ".join(f"{s[0]} of {s[1]}x{s[2]}" for s in shapes)
                raise InputError(
                    f"{self.path}: page {page} is {shape[1]}x{shape[2]} {dtype} but page 0 is "
                    f"{shapes[0][1]}x{shapes[0][2]} {dtypes[0]} (the file's {sum(s[0] for s in shapes)} pages: "
                    f"{counts}); all slices of a stack must have one size and data type: crop, pad or "
                    "remove that page and save the stack again"
                )
            page += shape[0]

    def name_of(self, index: int) -> str:
        return f"{self.path} (page {index})"

    def read(self, index: int) -> np.ndarray:
        try:
            if self._layout is not None:
                return np.stack([self._read_page(self._series, self._page(index, channel))
                                 for channel in range(self.channels)])
            series, plane = self._planes[index]
            return self._read_page(series, plane)
        except InputError:
            raise
        except Exception as error:
            raise _unreadable(self.path, error) from error

    def _page(self, index: int, channel: int) -> int:
        leading = self._layout.index(index, channel)[:-2]
        return int(np.ravel_multi_index(leading, self._layout.shape[:-2])) if leading else 0

    def _read_page(self, series: tifffile.TiffPageSeries, page: int) -> np.ndarray:
        return np.asarray(series.asarray(key=page)).reshape(self.shape[1:])


class FolderStack:
    """A folder of 2-D PNG/TIFF slices in natural sort order."""

    def __init__(self, path: Path, *, labels: bool = False):
        self.path, self.labels, self.channels = path, labels, 1
        self.files = slice_files(path)
        if not self.files:
            raise InputError(
                f"{path}: the folder holds no PNG or TIFF slices; put one 2-D image per slice "
                "into it (00.png, 01.png, ...) or point the config at another path"
            )
        headers = [self._header(f) for f in self.files]
        first_shape, self.dtype = headers[0]
        for file, (shape, dtype) in zip(self.files, headers):
            _check_grayscale(file, shape, "the slice")
            if shape != first_shape:
                raise InputError(
                    f"{file}: slice is {shape[0]}x{shape[1]} but {self.files[0].name} is "
                    f"{first_shape[0]}x{first_shape[1]}; all slices of a stack must have one size: "
                    "crop or pad it, or move it out of the folder"
                )
            if dtype != self.dtype:
                raise InputError(
                    f"{file}: slice has data type {dtype} but {self.files[0].name} has {self.dtype}; "
                    "save all slices with one bit depth"
                )
        self.shape = (len(self.files), *first_shape)
        self.voxel_size = self._voxel_size(self.files[0])

    @staticmethod
    def _voxel_size(file: Path) -> VoxelSize | None:
        """What the first slice's metadata states (ImageJ's image sequences carry it); PNGs state none."""
        if file.suffix.lower() == ".png":
            return None
        with tifffile.TiffFile(file) as tiff:
            return tiff_voxel_size(tiff, str(file))

    def _header(self, file: Path) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype from the file header, without decoding the pixels."""
        try:
            if file.suffix.lower() == ".png":
                with Image.open(file) as image:
                    if image.mode == "P":
                        self._palette_mode(file, image)
                        return (image.height, image.width), np.dtype(np.uint8)
                    if image.mode not in PNG_MODE_DTYPES:
                        return (image.height, image.width, len(image.getbands())), np.dtype(np.uint8)
                    return (image.height, image.width), np.dtype(PNG_MODE_DTYPES[image.mode])
            with tifffile.TiffFile(file) as tiff:
                page = tiff.pages[0]
                return tuple(page.shape), np.dtype(page.dtype)
        except InputError:
            raise
        except Exception as error:
            raise _unreadable(file, error) from error

    def _palette_mode(self, file: Path, image: Image.Image) -> str:
        """How a palette PNG is read: its indices (labels), or its gray levels (images)."""
        if self.labels:
            return "indices"
        colours = np.asarray(image.getpalette() or [], dtype=np.int64).reshape(-1, 3)
        if np.any(colours != colours[:, :1]):
            raise InputError(f"{file}: the image has a colour palette (PNG mode P); {RGB_FIX}")
        return "gray"

    def name_of(self, index: int) -> str:
        return str(self.files[index])

    def read(self, index: int) -> np.ndarray:
        file = self.files[index]
        try:
            if file.suffix.lower() == ".png":
                with Image.open(file) as image:
                    if image.mode == "P" and self._palette_mode(file, image) == "gray":
                        image = image.convert("L")
                    return np.asarray(image)
            return tifffile.imread(file, key=0)
        except Exception as error:
            raise _unreadable(file, error) from error


class NpyStack:
    """A 2-D or 3-D NumPy array file (4-D with a ``channel_axis``), memory-mapped."""

    def __init__(self, path: Path, channel_axis: int | None = None):
        self.path = path
        try:
            self._array = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as error:
            raise _unreadable(path, error) from error
        if channel_axis is None:
            _as_stack_shape(path, self._array.shape)
        self._layout = layout_of(path, tuple(self._array.shape), None, channel_axis)
        self.shape, self.channels = self._layout.stack_shape, self._layout.channels
        self.dtype = self._array.dtype
        self.voxel_size = None

    def name_of(self, index: int) -> str:
        return f"{self.path} (slice {index})"

    def read(self, index: int) -> np.ndarray:
        return self._layout.arrange(np.array(self._array[self._layout.index(index)]))


class ZarrStack:
    """A Zarr array; for a group, its OME-Zarr image (first resolution) or its only array.

    OME-Zarr images are up to 5-D (t, c, z, y, x), as ome-zarr-py and bioformats2raw
    write them; the ``c`` axis holds channels, other axes beyond z, y and x must have
    size one (refused naming the axis).
    """

    def __init__(self, path: Path, channel_axis: int | None = None):
        self.path = path
        self._axes: list[str] = []
        self.voxel_size: VoxelSize | None = None
        try:
            node = zarr.open(str(path), mode="r")
        except Exception as error:
            raise _unreadable(path, error) from error
        if isinstance(node, zarr.Group):
            node = self._array_of_group(node)
        self._array = node
        shape = tuple(node.shape)
        if channel_axis is None and not self._axes:
            _as_stack_shape(path, shape[-3:] if len(shape) > 3 and all(size == 1 for size in shape[:-3]) else shape)
        axes = "".join(name[:1] for name in self._axes) if len(self._axes) == len(shape) else None
        self._layout = layout_of(path, shape, axes, channel_axis)
        self.shape, self.channels = self._layout.stack_shape, self._layout.channels
        self.dtype = np.dtype(node.dtype)

    def _array_of_group(self, group: zarr.Group) -> zarr.Array:
        multiscales = group.attrs.get("multiscales") or group.attrs.get("ome", {}).get("multiscales")
        if multiscales:
            self._axes = [axis["name"] if isinstance(axis, dict) else str(axis)
                          for axis in multiscales[0].get("axes", [])]
            self.voxel_size = from_ngff(multiscales[0], str(self.path))
            return group[multiscales[0]["datasets"][0]["path"]]
        arrays = list(group.array_keys())
        if len(arrays) == 1:
            return group[arrays[0]]
        raise InputError(
            f"{self.path}: Zarr group holds {len(arrays)} arrays ({', '.join(arrays) or 'none'}) and no "
            "OME-Zarr metadata; point the config at one array, e.g. store.zarr/raw"
        )

    def name_of(self, index: int) -> str:
        return f"{self.path} (slice {index})"

    def read(self, index: int) -> np.ndarray:
        try:
            return self._layout.arrange(np.asarray(self._array[self._layout.index(index)]))
        except Exception as error:
            raise _unreadable(self.path, error) from error


def _as_stack_shape(path: Path, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The (z, y, x) shape of an array without channels; colour images and more axes refused."""
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3 and shape[-1] in (3, 4) and shape[0] > 4:
        raise InputError(f"{path}: array of shape {shape} looks like one colour image; {RGB_FIX}")
    if len(shape) != 3:
        raise InputError(f"{path}: array has shape {shape}; expected (z, y, x) slices, or, for an image with "
                         "channels, the dataset's channel_axis (the axis that holds them)")
    return shape


def parse_slices(spec: str | list[int] | None, count: int, where: str) -> list[int]:
    """Slice indices from a selection: ``"0-17"``, ``"0,3,5-7"`` or a list; None = all."""
    indices = parse_slice_selection(spec, where)
    if indices is None:
        return list(range(count))
    outside = [index for index in indices if not 0 <= index < count]
    if outside:
        raise InputError(f"{where}: slices {outside} do not exist, the stack has {count} (0-{count - 1}); fix `slices`")
    return indices


class SelectedSlices:
    """Some slices of a stack, in the given order."""

    def __init__(self, stack: SliceStack, indices: list[int]):
        self.stack, self.indices = stack, indices
        self.path, self.dtype, self.voxel_size, self.channels = stack.path, stack.dtype, stack.voxel_size, stack.channels
        self.shape = (len(indices), *stack.shape[1:])

    def name_of(self, index: int) -> str:
        return self.stack.name_of(self.indices[index])

    def read(self, index: int) -> np.ndarray:
        return self.stack.read(self.indices[index])
