"""Network architectures (``models.<name>.architecture``): arguments, tile geometry, network.

An architecture is a frozen dataclass whose fields are its config arguments (with their
defaults) plus ``in_channels`` and ``num_classes``. Its tile geometry is plain arithmetic,
so Snakemake sizes each model's training samples without importing torch; ``network()``
builds the ``torch.nn.Module``. Add one with ``@architecture("name")``; a model file
records the name and the arguments, so prediction rebuilds the same network.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from .. import geometry
from ..errors import InputError
from .registry import Registry

if TYPE_CHECKING:
    from torch import nn

ARCHITECTURES: Registry = Registry("architecture", "models.<name>.architecture")
architecture = ARCHITECTURES.register
BUILD_ARGUMENTS = ("in_channels", "num_classes", "dims")
DEFAULT = "unet"  # the architecture of a model entry that names none


class Architecture:
    """What every architecture provides (see :class:`ModelConfig`, the U-Net's).

    ``margin``: pixels of context consumed on each side of an output tile (0 keeps the
    size); ``align``: tile edges and origins are multiples of it; ``blend``: whether
    overlapping output tiles are blended (same-size outputs) rather than exact. A 2-D
    architecture states these and its ``*_size`` methods for one axis (both the same);
    one that is also 3-D (``dims`` 3, axes z, y, x) overrides the per-axis ``margins``,
    ``aligns``, ``valid_output_shape`` and ``input_shape``.
    """

    name: str
    dims: int = 2
    affinities: tuple[tuple[int, ...], ...] = ()
    margin: int
    align: int
    blend: bool

    @property
    def margins(self) -> tuple[int, ...]:
        return (self.margin,) * self.dims

    @property
    def output_channels(self) -> int:
        """Channels the network outputs: one per class, then one per affinity offset."""
        return self.num_classes + len(self.affinities)

    @property
    def aligns(self) -> tuple[int, ...]:
        return (self.align,) * self.dims

    def valid_output_size(self, at_least: int) -> int:
        raise NotImplementedError

    def input_size(self, output: int) -> int:
        """Input edge the network needs to produce an ``output`` tile (plus what it crops)."""
        raise NotImplementedError

    def valid_output_shape(self, at_least: int) -> tuple[int, ...]:
        """The smallest valid output tile with at least ``at_least`` px along every axis."""
        return (self.valid_output_size(at_least),) * self.dims

    def input_shape(self, output: tuple[int, ...]) -> tuple[int, ...]:
        """Input tile the network needs to produce an ``output`` tile (plus what it crops)."""
        return tuple(self.input_size(size) for size in output)

    def valid_output_shape_for(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The smallest valid output tile that covers ``shape`` (each axis on its own)."""
        return tuple(self.valid_output_shape(size)[axis] for axis, size in enumerate(shape))

    def network(self) -> nn.Module:
        raise NotImplementedError

    def arguments(self) -> dict[str, Any]:
        """The config arguments, without the build arguments (what a model file records)."""
        return {key: value for key, value in asdict(self).items() if key not in BUILD_ARGUMENTS}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sample_sizes(self, at_least: int) -> tuple[int, int]:
        """(input, output) edges of training samples with an output of at least ``at_least`` px."""
        output = self.valid_output_size(at_least)
        return self.input_size(output), output

    def sample_shapes(self, at_least: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(input, output) shapes of training samples with at least ``at_least`` px of output per axis."""
        output = self.valid_output_shape(at_least)
        return self.input_shape(output), output


def create(name: str, arguments: dict[str, Any], *, num_classes: int, in_channels: int = 1, dims: int = 2,
           where: str = "models") -> Architecture:
    """The architecture ``name`` with ``arguments`` (its defaults for the rest); raises
    :class:`InputError` naming ``where`` for an unknown name or argument."""
    cls = ARCHITECTURES.get(name)
    known = {field.name for field in fields(cls)} - set(BUILD_ARGUMENTS)
    unknown = sorted(set(arguments) - known)
    if unknown:
        raise InputError(f"config: {where}: {', '.join(unknown)} is not an argument of architecture {name!r} "
                         f"(it takes {', '.join(sorted(known))})")
    build = {"in_channels": in_channels, "num_classes": num_classes}
    if "dims" in {field.name for field in fields(cls)}:
        build["dims"] = dims
    elif dims != 2:
        raise InputError(f"config: {where}: architecture {name!r} is 2-D only, and dims is {dims}; use architecture "
                         "unet for volumes, or dims: 2")
    try:
        return cls(**arguments, **build)
    except ValueError as error:
        raise InputError(f"config: {where}: {error}") from error


def from_config(entry: dict[str, Any], *, num_classes: int, dims: int = 2, in_channels: int = 1,
                where: str = "models") -> Architecture:
    """The architecture of a config entry ``models.<name>`` (its ``augment``/``train`` overrides aside)
    for images of ``in_channels``."""
    arguments = {key: value for key, value in entry.items() if key not in ("architecture", "augment", "train")}
    return create(entry.get("architecture", DEFAULT), arguments, num_classes=num_classes, dims=dims,
                  in_channels=in_channels, where=where)


@architecture("unet")
@dataclass(frozen=True)
class ModelConfig(Architecture):
    """The U-Net of Ronneberger et al. (2015); defaults are the paper's network
    (see :class:`unetflow.model.UNet`). ``dims: 3`` is the 3-D U-Net of Cicek et al. (2016):
    3x3x3 convolutions and 2x2x2 poolings, the first ``planar_poolings`` of them 1x2x2."""

    depth: int = 4
    base_channels: int = 64
    padding: str = "valid"
    batch_norm: bool = False
    dropout: float = 0.5
    planar_poolings: int = 0
    affinities: tuple[tuple[int, ...], ...] = ()
    in_channels: int = 1
    num_classes: int = 2
    dims: int = 2
    name = "unet"

    def __post_init__(self):
        if self.dims not in (2, 3):
            raise ValueError(f"dims is {self.dims}; a U-Net is 2-D or 3-D")
        object.__setattr__(self, "affinities", affinity_offsets(self.affinities, self.dims))
        if not 0 <= self.planar_poolings <= (self.depth if self.dims == 3 else 0):
            raise ValueError(f"planar_poolings {self.planar_poolings} must be 0 for 2-D models and 0 to depth "
                             f"({self.depth}) for 3-D ones: the first poolings that halve y and x but not z")

    def axis_factors(self, axis: int) -> tuple[int, ...]:
        """Pooling factors of ``axis`` per level (``unetflow.model.pooling_factors``, which builds
        the network and imports without unetflow): 1 in z on the first ``planar_poolings``."""
        planar = self.dims == 3 and axis == 0
        return tuple(1 if planar and level < self.planar_poolings else 2 for level in range(self.depth))

    @property
    def margins(self) -> tuple[int, ...]:
        return tuple(geometry.axis_margin(self.axis_factors(axis), self.padding) for axis in range(self.dims))

    @property
    def aligns(self) -> tuple[int, ...]:
        return tuple(math.prod(self.axis_factors(axis)) for axis in range(self.dims))

    @property
    def blend(self) -> bool:
        return self.padding == "same"

    def valid_output_shape(self, at_least: int) -> tuple[int, ...]:
        return tuple(geometry.axis_valid_output_size(at_least, self.axis_factors(axis), self.padding)
                     for axis in range(self.dims))

    def input_shape(self, output: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(geometry.axis_model_input_size(size, self.axis_factors(axis), self.padding)
                     for axis, size in enumerate(output))

    @property
    def margin(self) -> int:
        """The in-plane (y/x) margin."""
        return self.margins[-1]

    @property
    def align(self) -> int:
        return self.aligns[-1]

    def valid_output_size(self, at_least: int) -> int:
        return self.valid_output_shape(at_least)[-1]

    def input_size(self, output: int) -> int:
        return self.input_shape((output,) * self.dims)[-1]

    def network(self) -> nn.Module:
        from ..model import UNet

        return UNet(self)


def affinity_offsets(given: bool | list | tuple, dims: int) -> tuple[tuple[int, ...], ...]:
    """The affinity offsets of the config's ``affinities``: none for false, the nearest-neighbour
    and long-range offsets of :func:`unetflow.affinities.offsets_for` for true, else the given
    offsets (one integer per axis each, none zero, none repeated)."""
    if given is True:
        from ..affinities import offsets_for  # numpy and scikit-image: imported when asked for

        return tuple(offsets_for(dims))
    if given is False or given is None:
        return ()
    offsets = tuple(tuple(int(step) for step in offset) for offset in given)
    for offset in offsets:
        if len(offset) != dims or not any(offset):
            raise ValueError(f"affinities: offset {list(offset)} must have {dims} integers (one per axis, "
                             f"{'z, y, x' if dims == 3 else 'y, x'}), not all 0")
    if len(set(offsets)) != len(offsets):
        raise ValueError(f"affinities: offsets {[list(offset) for offset in offsets]} repeat an offset")
    return offsets


def affinity_names(offsets: tuple[tuple[int, ...], ...]) -> list[str]:
    """Names of the affinity channels, e.g. ``affinity_0_9`` for the offset (0, 9)."""
    return ["affinity_" + "_".join(str(step) for step in offset) for offset in offsets]


def channel_names(architecture: Architecture) -> list[str]:
    """Names of a network's output channels: its classes, then its affinities."""
    return class_names(architecture.num_classes) + affinity_names(architecture.affinities)


def class_names(num_classes: int) -> list[str]:
    """Names of a network's output channels: class 0 is the background in unetflow."""
    return ["background", "foreground"] if num_classes == 2 else ["background"] + [
        f"class{index}" for index in range(1, num_classes)]

