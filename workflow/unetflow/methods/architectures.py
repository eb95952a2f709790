"""Network architectures (``models.<name>.architecture``): arguments, tile geometry, network.

An architecture is a frozen dataclass whose fields are its config arguments (with their
defaults) plus ``in_channels`` and ``num_classes``. Its tile geometry is plain arithmetic,
so Snakemake sizes each model's training samples without importing torch; ``network()``
builds the ``torch.nn.Module``. Add one with ``@architecture("name")``; a model file
records the name and the arguments, so prediction rebuilds the same network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from .. import geometry
from ..errors import InputError
from .registry import Registry

if TYPE_CHECKING:
    from torch import nn

ARCHITECTURES: Registry = Registry("architecture", "models.<name>.architecture")
architecture = ARCHITECTURES.register
BUILD_ARGUMENTS = ("in_channels", "num_classes")
DEFAULT = "unet"  # the architecture of a model entry that names none


class Architecture:
    """What every architecture provides (see :class:`ModelConfig`, the U-Net's).

    ``margin``: pixels of context consumed on each side of an output tile (0 keeps the
    size); ``align``: tile edges and origins are multiples of it; ``blend``: whether
    overlapping output tiles are blended (same-size outputs) rather than exact.
    """

    name: str
    margin: int
    align: int
    blend: bool

    def valid_output_size(self, at_least: int) -> int:
        raise NotImplementedError

    def input_size(self, output: int) -> int:
        """Input edge the network needs to produce an ``output`` tile (plus what it crops)."""
        raise NotImplementedError

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


def create(name: str, arguments: dict[str, Any], *, num_classes: int, in_channels: int = 1,
           where: str = "models") -> Architecture:
    """The architecture ``name`` with ``arguments`` (its defaults for the rest); raises
    :class:`InputError` naming ``where`` for an unknown name or argument."""
    cls = ARCHITECTURES.get(name)
    known = {field.name for field in fields(cls)} - set(BUILD_ARGUMENTS)
    unknown = sorted(set(arguments) - known)
    if unknown:
        raise InputError(f"config: {where}: {', '.join(unknown)} is not an argument of architecture {name!r} "
                         f"(it takes {', '.join(sorted(known))})")
    return cls(**arguments, in_channels=in_channels, num_classes=num_classes)


def from_config(entry: dict[str, Any], *, num_classes: int, where: str = "models") -> Architecture:
    """The architecture of a config entry ``models.<name>`` (its ``augment``/``train`` overrides aside)."""
    arguments = {key: value for key, value in entry.items() if key not in ("architecture", "augment", "train")}
    return create(entry.get("architecture", DEFAULT), arguments, num_classes=num_classes, where=where)


@architecture("unet")
@dataclass(frozen=True)
class ModelConfig(Architecture):
    """The U-Net of Ronneberger et al. (2015); defaults are the paper's network
    (see :class:`unetflow.model.UNet`)."""

    depth: int = 4
    base_channels: int = 64
    padding: str = "valid"
    batch_norm: bool = False
    dropout: float = 0.5
    in_channels: int = 1
    num_classes: int = 2
    name = "unet"

    @property
    def margin(self) -> int:
        return geometry.margin(self.depth, self.padding)

    @property
    def align(self) -> int:
        return 2**self.depth

    @property
    def blend(self) -> bool:
        return self.padding == "same"

    def valid_output_size(self, at_least: int) -> int:
        return geometry.valid_output_size(at_least, self.depth, self.padding)

    def input_size(self, output: int) -> int:
        return geometry.model_input_size(output, self.depth, self.padding)

    def network(self) -> nn.Module:
        from ..model import UNet

        return UNet(self)


def class_names(num_classes: int) -> list[str]:
    """Names of a network's output channels: class 0 is the background in unetflow."""
    return ["background", "foreground"] if num_classes == 2 else ["background"] + [
        f"class{index}" for index in range(1, num_classes)]
