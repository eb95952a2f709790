"""The model a training starts from (``models.<name>.start_from``): fine-tuning a shared model.

A ``model.pt`` written by unetflow's train rule, or a bioimage.io package that unetflow's
export wrote (its ``ProbabilityUNet`` state dict and keyword arguments): the architecture is
the file's, the weights are the starting point, and the file's SHA-256 identifies it in the
model file, the checkpoint key and the report.
"""

from __future__ import annotations

import hashlib
import io as bytes_io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from .errors import InputError
from .inference import load_weights, read_model_file
from .methods import architectures
from .methods.architectures import Architecture

EXPORTED_NETWORK = "ProbabilityUNet"  # the callable unetflow's bioimage.io packages name


@dataclass(frozen=True)
class StartModel:
    """A model to start training from."""

    path: str
    sha256: str
    architecture: Architecture
    state_dict: dict

    def describe(self) -> dict[str, str]:
        return {"path": self.path, "sha256": self.sha256}

    def network(self) -> torch.nn.Module:
        """The architecture's network with the file's weights (refused if they hold NaN)."""
        return load_weights(Path(self.path), self.architecture.network(), self.state_dict)


def read(path: str | Path) -> StartModel:
    """The architecture and weights of a unetflow ``model.pt`` or bioimage.io export (``.zip``).

    Raises
    ------
    InputError
        If the file is missing, unreadable, or a package of another tool.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; give a model.pt written by unetflow's train rule or a bioimage.io "
                         "package written by its export rule")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if is_package(path):
        architecture, state_dict = read_package(path)
    else:
        saved, architecture = read_model_file(path)
        state_dict = saved["state_dict"]
    return StartModel(str(path), digest, architecture, state_dict)


def is_package(path: Path) -> bool:
    """A bioimage.io package (a zip file with rdf.yaml; a model.pt is a zip file too, without one)."""
    if path.suffix.lower() == ".zip":
        return True
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return bool({"rdf.yaml", "bioimageio.yaml"} & set(archive.namelist()))


def check_fits(start: StartModel, *, num_classes: int, dims: int, setting: str,
               in_channels: int | None = None) -> None:
    """The start model predicts the config's classes in its dims from images of ``in_channels``
    (the training data's, where known), or an InputError naming ``setting``."""
    architecture = start.architecture
    if (architecture.num_classes, architecture.dims) != (num_classes, dims):
        raise InputError(f"{setting}: {start.path} is a {architecture.dims}-D model of {architecture.num_classes} "
                         f"classes, but the config has dims {dims} and num_classes {num_classes}; start from a model "
                         "of the config's kind, or change those settings to the model's")
    if in_channels is not None and architecture.in_channels != in_channels:
        raise InputError(f"{setting}: {start.path} takes images of {architecture.in_channels} channel(s), but the "
                         f"training data have {in_channels}; start from a model of as many channels, or train "
                         "from scratch")


def read_package(path: Path) -> tuple[Architecture, dict]:
    """The U-Net of a bioimage.io package that unetflow exported."""
    with zipfile.ZipFile(path) as package:
        names = set(package.namelist())
        description_name = next((name for name in ("rdf.yaml", "bioimageio.yaml") if name in names), None)
        if description_name is None:
            raise InputError(f"{path}: a zip file without rdf.yaml; give a bioimage.io model package")
        description = yaml.safe_load(package.read(description_name))
        state = (description.get("weights") or {}).get("pytorch_state_dict") or {}
        network = state.get("architecture") or {}
        if network.get("callable") != EXPORTED_NETWORK:
            raise InputError(f"{path}: a bioimage.io package of another tool (its network is "
                             f"{network.get('callable', 'not a PyTorch state dict')}); fine-tuning starts from "
                             "unetflow's own packages or model.pt files")
        kwargs = dict(network.get("kwargs") or {})
        weights = package.read(state["source"])
    build = {key: kwargs.pop(key) for key in architectures.BUILD_ARGUMENTS if key in kwargs}
    architecture = architectures.create("unet", kwargs, **build, where=str(path))
    return architecture, torch.load(bytes_io.BytesIO(weights), map_location="cpu", weights_only=True)
