"""A trained U-Net as a bioimage.io model package (model spec 0.5): its files and description.

The package holds the network twice, as a PyTorch state dict with its architecture
(``unetflow/model.py``, which imports on its own, and :class:`~unetflow.model.ProbabilityUNet`'s
keyword arguments) and as TorchScript, both giving class probabilities (softmax over the
classes, as the predict step writes). The input has the model's channels, normalised by the
package's preprocessing as in training (:mod:`unetflow.package_normalization`); valid input sizes are
``min + n * step``. A valid-padded network's output is smaller than its input by twice its
margin (the context it consumes per side), stated as the output size's offset; a
same-padded network's output keeps the size and states a halo (its receptive-field radius)
to crop when tiles are stitched. A test tile with unetflow's own prediction of it, a cover
image and a README describing the model and its training complete the package.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import numpy as np
import tifffile
import torch

from . import geometry, io, model, package_normalization, synthetic
from .errors import InputError
from .inference import load_weights, make_forward
from .intensity import setting_in
from .methods.architectures import Architecture, ModelConfig, channel_names
from .model_card import INPUT_ID, OUTPUT_ID, PAPER, PAPER_DOI, readme
from .mirror import mirrored_window
from .model import ProbabilityUNet, count_parameters
from .plots import pyplot, save_figure

log = logging.getLogger(__name__)

PAPER_OUTPUT_TILE = 388  # the paper's output tile (572 px in for its network): the default test tile


WEIGHTS_TOLERANCE = 1e-5  # largest difference of a probability allowed between each weight format and unetflow


DEFAULT_TAGS = ("unet", "2d", "pytorch", "semantic-segmentation", "unetflow")


NAME_CHARACTERS = re.compile(r"[A-Za-z0-9_+\- ()]{5,128}")  # the spec's rule for model names


def check_exportable(architecture: Architecture, source: Path) -> None:
    """Refuse architectures other than the U-Net, the only one with a standalone source, and
    3-D networks, whose package (z axis, 3-D test tensors and tiling) is not written yet."""
    if architecture.name != "unet":
        raise InputError(f"export: {source} holds a {architecture.name!r} network; export supports unet only "
                         "(its architecture source, unetflow/model.py, imports without unetflow). Export a model "
                         "trained with architecture unet")
    if architecture.dims != 2:
        raise InputError(f"export: {source} is a {architecture.dims}-D U-Net; export writes bioimage.io packages of "
                         "2-D models only. Apply the 3-D model with unetflow (models.<name>.file), or export a "
                         "model trained with dims: 2")


def output_halo(architecture: ModelConfig) -> int:
    """Pixels per side to crop from a same-padded network's output tiles before stitching them.

    The receptive-field radius of the network (the margin of its valid-padded twin), rounded
    up to a multiple of ``2**depth / 2`` so that an input padded by it on both sides stays a
    valid size. Cropped outputs never see the zero padding of the convolutions, so stitched
    tiles are seamless. 0 for a valid-padded network, whose output is already cropped.
    """
    if architecture.padding == "valid":
        return 0
    unit = max(1, 2**architecture.depth // 2)
    return -(-geometry.margin(architecture.depth, "valid") // unit) * unit


def input_sizes(architecture: ModelConfig) -> tuple[int, int]:
    """(min, step) of the valid input edges ``min + n * step`` (bioimage.io's ParameterizedSize).

    Valid padding: the input of the smallest valid output, then steps of ``2**depth``. Same
    padding: multiples of ``2**depth`` larger than twice the halo, so a cropped tile is not empty.
    """
    step = 2**architecture.depth
    if architecture.padding == "valid":
        return architecture.input_size(architecture.valid_output_size(1)), step
    return (2 * output_halo(architecture) // step + 1) * step, step


def example_edge(architecture: ModelConfig, tile: int) -> int:
    """Edge of the test input: the valid input whose output is at least ``tile`` px, at least the
    smallest valid input (both are ``min + n * step``)."""
    return max(architecture.input_size(architecture.valid_output_size(tile)), input_sizes(architecture)[0])


def centre_window(plane, edge: int) -> np.ndarray:
    """The central ``edge`` x ``edge`` window of a 2-D array-like, mirrored where it leaves it."""
    top, left = (plane.shape[0] - edge) // 2, (plane.shape[1] - edge) // 2
    return mirrored_window(plane, (top, top + edge), (left, left + edge))


def example_tile(edge: int, *, data: Path | None, seed: int, channels: int = 1) -> np.ndarray:
    """The raw (c, y, x) test tile (float32): the centre of the middle slice of ``data``, else
    synthetic EM-like slices (one per channel)."""
    if data is None:
        images = [synthetic.generate_stack(1, edge, seed=seed + channel)[0][0] for channel in range(channels)]
        return np.stack(images).astype(np.float32)
    raw = io.open_raw(io.open_store(data))
    middle = raw.shape[-3] // 2
    plane = raw[:, middle] if raw.ndim == 4 else raw[middle][None]
    return np.stack([centre_window(channel, edge) for channel in plane]).astype(np.float32)


def reference_probabilities(unet: torch.nn.Module, tile: np.ndarray, output_edge: int,
                            recorded: dict | None) -> np.ndarray:
    """unetflow's prediction (its forward, fp32 on the CPU) of a raw (c, y, x) tile normalised as
    the package says: (1, C, output_edge, output_edge), classes then affinities."""
    forward = make_forward(unet, torch.device("cpu"), None, output_edge, num_classes=unet.config.num_classes)
    return forward(package_normalization.normalize(tile, recorded)[None])


def package_probabilities(network: torch.nn.Module, tile: np.ndarray, recorded: dict | None) -> np.ndarray:
    """The output of the package's network (either weight format) for a raw (c, y, x) tile."""
    with torch.no_grad():
        return network(torch.from_numpy(package_normalization.normalize(tile, recorded)[None])).numpy()


def exported_network(path: Path, architecture: ModelConfig, state_dict: dict) -> ProbabilityUNet:
    """The package's network: the U-Net's weights in :class:`ProbabilityUNet`, in evaluation mode
    (refused when they hold NaN or infinity, as for prediction)."""
    return load_weights(path, ProbabilityUNet(**architecture_kwargs(architecture)), state_dict).eval()


def architecture_kwargs(architecture: ModelConfig) -> dict:
    """:class:`ProbabilityUNet`'s keyword arguments (plain values: the package's YAML holds them;
    ``affinities`` only for a network that predicts them)."""
    kwargs = {key: getattr(architecture, key) for key in ("depth", "base_channels", "padding", "batch_norm",
                                                           "dropout", "in_channels", "num_classes")}
    if architecture.affinities:
        kwargs["affinities"] = [list(offset) for offset in architecture.affinities]
    return kwargs


def trace(network: torch.nn.Module, edge: int, channels: int = 1) -> torch.jit.ScriptModule:
    """TorchScript of ``network``, traced on an input of ``edge`` px (sizes stay free)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.* is deprecated")
        return torch.jit.trace(network, torch.zeros(1, channels, edge, edge))


def foreground(probabilities: np.ndarray, num_classes: int) -> np.ndarray:
    """P(not background) of (C, y, x) probabilities, classes first (as :func:`unetflow.io.foreground_probability`)."""
    return probabilities[1] if num_classes == 2 else 1.0 - probabilities[0]


def write_cover(path: Path, tile: np.ndarray, probabilities: np.ndarray, num_classes: int) -> None:
    """The test input (its part under the output) beside the foreground probability, 2:1."""
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(8, 4))
    crop = (tile.shape[-1] - probabilities.shape[-1]) // 2
    left.imshow(tile[crop : tile.shape[0] - crop, crop : tile.shape[1] - crop], cmap="gray")  # the first channel
    left.set_title("input")
    right.imshow(foreground(probabilities, num_classes), cmap="magma", vmin=0.0, vmax=1.0)
    right.set_title("foreground probability")
    for axis in (left, right):
        axis.set_axis_off()
    save_figure(figure, path)


def check_name(name: str) -> str:
    if not NAME_CHARACTERS.fullmatch(name):
        raise InputError(f"export: --name {name!r} is not a valid bioimage.io model name; use 5 to 128 letters, "
                         "digits, spaces and _+-()")
    return name


def check_license(license_id: str) -> str:
    from bioimageio.spec.model.v0_5 import LicenseId

    try:
        return LicenseId(license_id)
    except ValueError:
        raise InputError(f"export: --license {license_id!r} is not an SPDX license identifier; use one such as MIT, "
                         "Apache-2.0 or CC-BY-4.0") from None


def default_name(model_path: Path) -> str:
    """``unetflow U-Net <model>``, the model being the folder of ``model.pt``."""
    return f"unetflow U-Net {re.sub(r'[^A-Za-z0-9_+() -]', '-', model_path.resolve().parent.name)}"[:128]


def training_details(architecture: ModelConfig, saved: dict):
    """What the model file records of its training, as bioimage.io's training details."""
    from bioimageio.spec.model.v0_5 import TrainingDetails

    train_settings = saved.get("train_settings") or {}
    setting = setting_in(saved.get("normalization"))
    method = "zero mean, unit variance" if setting["method"] == "zscore" else \
        f"percentiles {setting['percentiles'][0]} and {setting['percentiles'][1]} to 0 and 1"
    return TrainingDetails(
        training_preprocessing=f"{method} per channel, with the statistics of each {setting['scope']}; random "
                               "elastic deformations, flips and rotations (unetflow augment)",
        training_batch_size=train_settings.get("batch_size"), initial_learning_rate=train_settings.get("lr"),
        learning_rate_schedule=train_settings.get("schedule"), loss_function=train_settings.get("loss"),
        optimizer=train_settings.get("optimizer"),
        regularization=f"drop-out {architecture.dropout}, weight decay "
                       f"{train_settings.get('weight_decay')}" if train_settings else None)


def describe(*, name: str, authors: list[str], license_id: str, tags: list[str], architecture: ModelConfig,
             saved: dict, files: dict[str, Path], input_range: tuple[int, int], halo: int, parameters: int):
    """The bioimage.io model description (spec 0.5) of the staged ``files``."""
    from bioimageio.spec.model import v0_5 as spec

    smallest, step = input_range
    space_size = spec.ParameterizedSize(min=smallest, step=step)
    input_channels = [INPUT_ID] if architecture.in_channels == 1 else [
        f"channel{index}" for index in range(architecture.in_channels)]
    input_axes = [spec.BatchAxis(), spec.ChannelAxis(channel_names=input_channels),
                  spec.SpaceInputAxis(id=spec.AxisId("y"), size=space_size),
                  spec.SpaceInputAxis(id=spec.AxisId("x"), size=space_size)]
    offset = -2 * architecture.margin

    def output_axis(axis: str):
        size = spec.SizeReference(tensor_id=spec.TensorId(INPUT_ID), axis_id=spec.AxisId(axis), offset=offset)
        if halo:
            return spec.SpaceOutputAxisWithHalo(id=spec.AxisId(axis), size=size, halo=halo,
                                                description="crop the halo before stitching tiles")
        return spec.SpaceOutputAxis(id=spec.AxisId(axis), size=size,
                                    description=f"input size minus the margin of {architecture.margin} px per side")

    output_axes = [spec.BatchAxis(), spec.ChannelAxis(channel_names=channel_names(architecture)),
                   output_axis("y"), output_axis("x")]
    pytorch_version = spec.Version(torch.__version__.split("+")[0])
    return spec.ModelDescr(
        name=name,
        description=(f"U-Net (Ronneberger et al. 2015) for {architecture.num_classes}-class pixel classification "
                     "of 2-D images, trained with unetflow; outputs class probabilities"
                     + (f", then {len(architecture.affinities)} affinities (offsets "
                        f"{[list(offset) for offset in architecture.affinities]})." if architecture.affinities else ".")),
        authors=[spec.Author(name=author) for author in authors],
        cite=[spec.CiteEntry(text=PAPER, doi=spec.Doi(PAPER_DOI))],
        license=spec.LicenseId(license_id),
        tags=tags,
        documentation=spec.FileDescr(source=files["readme"]),
        covers=[spec.FileDescr(source=files["cover"])],
        inputs=[spec.InputTensorDescr(
            id=spec.TensorId(INPUT_ID), axes=input_axes,
            description="grey-value image" if architecture.in_channels == 1 else "image, channels first",
            data=spec.IntervalOrRatioDataDescr(type="float32"),
            test_tensor=spec.FileDescr(source=files["test_input"]),
            sample_tensor=spec.FileDescr(source=files["sample_input"]), pad=spec.ReflectPadding(mode="reflect"),
            preprocessing=[package_normalization.describe(saved.get("normalization"))])],
        outputs=[spec.OutputTensorDescr(
            id=spec.TensorId(OUTPUT_ID), axes=output_axes, description="class probabilities (softmax)",
            data=spec.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
            test_tensor=spec.FileDescr(source=files["test_output"]),
            sample_tensor=spec.FileDescr(source=files["sample_output"]))],
        weights=spec.WeightsDescr(
            pytorch_state_dict=spec.PytorchStateDictWeightsDescr(
                source=files["state_dict"], pytorch_version=pytorch_version,
                architecture=spec.ArchitectureFromFileDescr(source=Path(model.__file__),
                                                            callable=spec.Identifier(ProbabilityUNet.__name__),
                                                            kwargs=architecture_kwargs(architecture))),
            torchscript=spec.TorchscriptWeightsDescr(source=files["torchscript"], pytorch_version=pytorch_version,
                                                     parent="pytorch_state_dict")),
        config=spec.Config(bioimageio=spec.BioimageioConfig(
            architecture_type="2D U-Net", task="semantic segmentation",
            model_parameter_count=parameters,
            training=training_details(architecture, saved))),
    )


def stage_files(folder: Path, *, architecture: ModelConfig, saved: dict, network: ProbabilityUNet, source: Path,
                name: str, tile: np.ndarray, input_range: tuple[int, int], halo: int) -> dict[str, Path]:
    """Write the package's files into ``folder``: weights (state dict and TorchScript, each checked
    to reproduce unetflow's prediction of the test tile), test and sample tensors, cover, README."""
    unet = architecture.network()
    unet.load_state_dict(saved["state_dict"])
    recorded = saved.get("normalization")
    probabilities = reference_probabilities(unet.eval(), tile, tile.shape[-1] - 2 * architecture.margin, recorded)
    torchscript = trace(network, input_range[0], architecture.in_channels)
    differences = {weights: float(np.abs(package_probabilities(exported, tile, recorded) - probabilities).max())
                   for weights, exported in (("pytorch_state_dict", network), ("torchscript", torchscript))}
    if max(differences.values()) > WEIGHTS_TOLERANCE:
        raise RuntimeError(f"export: the exported network of {source} does not reproduce unetflow's prediction of the "
                           f"test tile (largest differences {differences}, allowed {WEIGHTS_TOLERANCE}); report "
                           "this as a unetflow bug")
    files = {"state_dict": folder / "weights.pt", "torchscript": folder / "weights_torchscript.pt",
             "test_input": folder / "test_input.npy", "test_output": folder / "test_output.npy",
             "sample_input": folder / "sample_input.tif", "sample_output": folder / "sample_output.tif",
             "cover": folder / "cover.png", "readme": folder / "README.md"}
    torch.save(network.state_dict(), files["state_dict"])
    torchscript.save(str(files["torchscript"]))
    np.save(files["test_input"], tile[None])
    np.save(files["test_output"], probabilities)
    tifffile.imwrite(files["sample_input"], tile[0] if len(tile) == 1 else tile, photometric="minisblack")
    tifffile.imwrite(files["sample_output"], probabilities[0], photometric="minisblack")
    write_cover(files["cover"], package_normalization.normalize(tile, recorded)[0], probabilities[0],
                architecture.num_classes)
    files["readme"].write_text(readme(name=name, architecture=architecture, saved=saved, source=source,
                                      parameters=count_parameters(network), input_range=input_range,
                                      test_edge=tile.shape[-1], halo=halo, differences=differences))
    log.info("on the %d px test tile, the weight formats differ from unetflow's prediction by at most %s",
             tile.shape[-1], differences)
    return files
