"""Readers of raw image stacks: one 2-D slice at a time, whatever the format.

Supported sources, chosen by the path:

- a multi-page TIFF (``.tif``/``.tiff``), one page per slice;
- a folder of 2-D slices (PNG or TIFF), in natural sort order (``2`` before ``10``);
- a 3-D (or 2-D) NumPy ``.npy`` file, memory-mapped;
- a Zarr array, or a Zarr/OME-Zarr group holding one (``.zarr``).

Every reader exposes ``shape`` (z, y, x), ``dtype``, ``name_of(index)`` and
``read(index)``; none reads more than one slice into memory, so a stack of any
length streams through ingestion.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

import numpy as np
import tifffile
import zarr
from PIL import Image

from .errors import InputError

SLICE_SUFFIXES = (".png", ".tif", ".tiff")
SUPPORTED = (
    "a multi-page TIFF (.tif/.tiff), a folder of PNG/TIFF slices, "
    "a 3-D NumPy array (.npy) or a Zarr array (.zarr)"
)
RGB_FIX = "convert the stack to grayscale first (e.g. Fiji: Image > Type > 8-bit)"


class SliceStack(Protocol):
    """A stack of 2-D slices read one at a time."""

    path: Path
    shape: tuple[int, int, int]
    dtype: np.dtype

    def name_of(self, index: int) -> str: ...

    def read(self, index: int) -> np.ndarray: ...


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders embedded numbers by value: ``s2`` before ``s10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def open_stack(path: str | Path) -> SliceStack:
    """Open a raw stack for slice-by-slice reading.

    Parameters
    ----------
    path
        A multi-page TIFF, a folder of PNG/TIFF slices, a ``.npy`` file or a
        Zarr array/group.

    Raises
    ------
    InputError
        If the path does not exist, has an unsupported type or is unreadable.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path in the config's datasets section")
    suffix = path.suffix.lower()
    if suffix == ".zarr" or (path / ".zgroup").exists() or (path / "zarr.json").exists():
        return ZarrStack(path)
    if path.is_dir():
        return FolderStack(path)
    if suffix in (".tif", ".tiff"):
        return TiffStack(path)
    if suffix == ".npy":
        return NpyStack(path)
    raise InputError(f"{path}: unsupported file type '{suffix}'; give {SUPPORTED}")


def _check_grayscale(path: Path, shape: tuple[int, ...], what: str) -> None:
    if len(shape) == 3 and shape[-1] in (3, 4):
        raise InputError(f"{path}: {what} has {shape[-1]} colour channels (shape {shape}); {RGB_FIX}")
    if len(shape) != 2:
        raise InputError(f"{path}: {what} has shape {shape}, expected a 2-D grayscale image; {RGB_FIX}")


def _unreadable(path: Path, error: Exception) -> InputError:
    return InputError(
        f"{path}: cannot be read ({type(error).__name__}: {error}); the file is truncated or "
        "corrupt: export or copy it again"
    )


class TiffStack:
    """A multi-page TIFF; each page (or each plane of its first series) is a slice."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._tiff = tifffile.TiffFile(path)
            series = self._tiff.series[0]
            shape, self.dtype = tuple(series.shape), np.dtype(series.dtype)
        except Exception as error:  # tifffile raises many types for broken files
            raise _unreadable(path, error) from error
        if "S" in series.axes:
            raise InputError(f"{path}: the TIFF has colour samples (axes {series.axes}); {RGB_FIX}")
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) != 3:
            raise InputError(
                f"{path}: TIFF series has shape {shape} (axes {series.axes}); expected a stack of "
                "2-D grayscale slices (z, y, x): save one channel and one time point"
            )
        self.shape = shape
        self._series = series

    def name_of(self, index: int) -> str:
        return f"{self.path} (page {index})"

    def read(self, index: int) -> np.ndarray:
        try:
            return np.asarray(self._series.asarray(key=index))
        except Exception as error:
            raise _unreadable(self.path, error) from error


class FolderStack:
    """A folder of 2-D PNG/TIFF slices in natural sort order."""

    def __init__(self, path: Path):
        self.path = path
        self.files = sorted(
            (f for f in path.iterdir() if f.suffix.lower() in SLICE_SUFFIXES and not f.name.startswith(".")),
            key=lambda f: natural_key(f.name),
        )
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

    @staticmethod
    def _header(file: Path) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype from the file header, without decoding the pixels."""
        try:
            if file.suffix.lower() == ".png":
                with Image.open(file) as image:
                    mode_dtypes = {"1": np.bool_, "L": np.uint8, "I;16": np.uint16, "I": np.int32, "F": np.float32}
                    if image.mode not in mode_dtypes:
                        channels = len(image.getbands())
                        return (image.height, image.width, channels), np.dtype(np.uint8)
                    return (image.height, image.width), np.dtype(mode_dtypes[image.mode])
            with tifffile.TiffFile(file) as tiff:
                page = tiff.pages[0]
                return tuple(page.shape), np.dtype(page.dtype)
        except Exception as error:
            raise _unreadable(file, error) from error

    def name_of(self, index: int) -> str:
        return str(self.files[index])

    def read(self, index: int) -> np.ndarray:
        file = self.files[index]
        try:
            if file.suffix.lower() == ".png":
                with Image.open(file) as image:
                    return np.asarray(image)
            return tifffile.imread(file, key=0)
        except Exception as error:
            raise _unreadable(file, error) from error


class NpyStack:
    """A 2-D or 3-D NumPy array file, memory-mapped."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._array = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as error:
            raise _unreadable(path, error) from error
        self.shape = _as_stack_shape(path, self._array.shape)
        self.dtype = self._array.dtype

    def name_of(self, index: int) -> str:
        return f"{self.path} (slice {index})"

    def read(self, index: int) -> np.ndarray:
        return np.array(self._array.reshape(self.shape)[index])


class ZarrStack:
    """A Zarr array; for a group, its OME-Zarr image or its only array."""

    def __init__(self, path: Path):
        self.path = path
        try:
            node = zarr.open(str(path), mode="r")
        except Exception as error:
            raise _unreadable(path, error) from error
        if isinstance(node, zarr.Group):
            node = self._array_of_group(node)
        self._array = node
        self.shape = _as_stack_shape(path, node.shape)
        self.dtype = np.dtype(node.dtype)

    def _array_of_group(self, group: zarr.Group) -> zarr.Array:
        multiscales = group.attrs.get("multiscales") or group.attrs.get("ome", {}).get("multiscales")
        if multiscales:
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
            return np.asarray(self._array[index] if len(self._array.shape) == 3 else self._array[:])
        except Exception as error:
            raise _unreadable(self.path, error) from error


def _as_stack_shape(path: Path, shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3 and shape[-1] in (3, 4) and shape[0] > 4:
        raise InputError(f"{path}: array of shape {shape} looks like one colour image; {RGB_FIX}")
    if len(shape) != 3:
        raise InputError(f"{path}: array has shape {shape}; expected (z, y, x) grayscale slices")
    return shape


def parse_slices(spec: str | list[int] | None, count: int, where: str) -> list[int]:
    """Slice indices from a selection: ``"0-17"``, ``"0,3,5-7"`` or a list; None = all."""
    if spec is None or spec == "":
        return list(range(count))
    parts = spec if isinstance(spec, list) else str(spec).split(",")
    indices: list[int] = []
    try:
        for part in parts:
            if isinstance(part, str) and "-" in part.strip()[1:]:
                first, last = part.split("-")
                indices += range(int(first), int(last) + 1)
            else:
                indices.append(int(part))
    except ValueError as error:
        raise InputError(f"{where}: slice selection {spec!r} is not understood; write e.g. \"0-17\" or \"0,3,5-7\"") from error
    outside = [index for index in indices if not 0 <= index < count]
    if outside:
        raise InputError(f"{where}: slices {outside} do not exist, the stack has {count} (0-{count - 1}); fix `slices`")
    return indices


class SelectedSlices:
    """Some slices of a stack, in the given order."""

    def __init__(self, stack: SliceStack, indices: list[int]):
        self.stack, self.indices = stack, indices
        self.path, self.dtype = stack.path, stack.dtype
        self.shape = (len(indices), *stack.shape[1:])

    def name_of(self, index: int) -> str:
        return self.stack.name_of(self.indices[index])

    def read(self, index: int) -> np.ndarray:
        return self.stack.read(self.indices[index])
