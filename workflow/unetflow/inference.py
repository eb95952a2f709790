"""Running a trained U-Net: devices, precision, tile geometry, test-time augmentation."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

from . import gpu_slots, io
from .errors import InputError
from .methods import architectures
from .methods.architectures import Architecture
from .model import center_crop, non_finite_tensors, probabilities_of

MODEL_FORMAT = "unetflow-model-3"  # the architecture by name and arguments
# format 2: U-Net arguments as "model_config"; format 1: the U-Net before it had a ReLU after
# each up-convolution
OLD_MODEL_FORMATS = {"unetflow-model-1": "a U-Net without the ReLU after its up-convolutions"}


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA, then Apple MPS, then the CPU; or the named device, checked to exist.
    ``auto`` and ``cuda`` take a GPU no other job on this machine holds (:mod:`unetflow.gpu_slots`)."""
    if name in ("auto", "cuda") and torch.cuda.is_available():
        index = gpu_slots.claim(torch.cuda.device_count())
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    if name == "auto":
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise InputError(f"device {name!r} is unknown ({error}); use auto, cpu, cuda, cuda:N or mps") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} is not available on this machine; set device to auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {name!r} is not available on this machine; set device to auto or cpu")
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a precision setting (None = fp32).

    ``auto``: bf16 on GPUs that support it, else fp16 on CUDA; on the CPU, bf16
    where the CPU has bf16 matrix units (Intel AMX: 1.75x faster training and
    3.3x faster prediction measured, benchmarks/RESULTS.md), fp32 elsewhere (on
    CPUs without them bf16 is emulated and many times slower).
    """
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16_matrix_units() else None
    if precision == "fp16" and device.type != "cuda":
        raise InputError(f"precision fp16 needs a CUDA GPU, the device is {device}; use bf16 or fp32")
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@cache
def cpu_has_bf16_matrix_units() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: ask PyTorch (a private helper, hence the guard)
        probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(probe and probe())
    return "amx_bf16" in flags


def describe_precision(precision: str, device: torch.device, dtype: torch.dtype | None) -> str:
    """What a precision setting resolved to, and why, for the logs: e.g. ``auto: bfloat16 on cpu
    (bf16 matrix units)``."""
    chosen = str(dtype).removeprefix("torch.") if dtype is not None else "float32"
    reason = ""
    if precision == "auto" and device.type == "cpu":
        reason = " (bf16 matrix units)" if dtype is not None else " (no bf16 matrix units)"
    return f"{precision}: {chosen} on {device}{reason}"


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


@dataclass(frozen=True)
class TileGeometry:
    """Per axis: output tile edge, context margin on each side, and the alignment of tile origins
    (the product of the network's poolings); and whether tiles are blended."""

    tile: tuple[int, ...]
    margin: tuple[int, ...]
    blend: bool
    align: tuple[int, ...]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(tile + 2 * margin for tile, margin in zip(self.tile, self.margin))


def tile_geometry(architecture: Architecture, tile: int, shape: tuple[int, ...] | None = None) -> TileGeometry:
    """Valid models: the next valid output size and their own margin (overlap-tile, exact).
    Same-size models: a valid size, no margin, Gaussian-blended half overlaps.

    ``tile`` is the edge along every axis, but never larger than needed to cover
    ``shape`` (the slice or volume) in one tile: a tile is only as large as the data.
    """
    tiles = architecture.valid_output_shape(tile)
    if shape is not None:
        tiles = tuple(min(edge, fitted) for edge, fitted in zip(tiles, architecture.valid_output_shape_for(shape)))
    return TileGeometry(tiles, architecture.margins, blend=architecture.blend, align=architecture.aligns)


def save_model(path: Path, architecture: Architecture, network: torch.nn.Module, **extra) -> None:
    """Write ``model.pt`` atomically: the architecture by name and arguments, the weights, and
    ``extra`` plain values (tensors, dicts, numbers, strings only: it is read with
    ``weights_only=True``)."""
    with io.atomic_store(path) as temporary:
        torch.save({"format": MODEL_FORMAT, "architecture": architecture.name,
                    "arguments": architecture.arguments(), "in_channels": architecture.in_channels,
                    "num_classes": architecture.num_classes, "dims": architecture.dims,
                    "state_dict": {k: v.cpu() for k, v in network.state_dict().items()}, **extra}, temporary)


def read_model_file(path: Path) -> tuple[dict, Architecture]:
    """The saved dictionary of a ``model.pt`` and its architecture."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise InputError(f"{path}: not a readable model file ({type(error).__name__}: {first_line}): it is damaged, or "
                         "holds Python objects other than tensors, numbers and strings, which unetflow does not load "
                         "(loading them could run code from the file); delete it and rerun the train rule") from error
    found = saved.get("format") if isinstance(saved, dict) else None
    if found in OLD_MODEL_FORMATS:
        raise InputError(f"{path}: written by an earlier unetflow ({OLD_MODEL_FORMATS[found]}), which this "
                         "version cannot run as it was trained; delete it and rerun the train rule")
    if found == "unetflow-model-2":
        unet = dict(saved["model_config"])
        build = {key: unet.pop(key) for key in architectures.BUILD_ARGUMENTS if key in unet}
        return saved, architectures.create("unet", unet, **build, where=str(path))
    if found != MODEL_FORMAT:
        raise InputError(f"{path}: not a unetflow model (format {found or '?'}); give a model.pt written by the "
                         "train rule")
    return saved, architectures.create(saved["architecture"], saved["arguments"], in_channels=saved["in_channels"],
                                       num_classes=saved["num_classes"], dims=saved.get("dims", 2), where=str(path))


def load_model(path: Path, device: torch.device) -> tuple[torch.nn.Module, Architecture]:
    """The network saved by the train rule, on ``device``, in evaluation mode, and its architecture."""
    saved, architecture = read_model_file(path)
    model = load_weights(path, architecture.network(), saved["state_dict"])
    return model.to(device).eval(), architecture


def load_weights(path: Path, network: torch.nn.Module, state_dict: dict) -> torch.nn.Module:
    """``network`` with the weights of model file ``path``; refused if they do not fit it or hold
    NaN or infinity."""
    try:
        network.load_state_dict(state_dict)
    except RuntimeError as error:
        raise InputError(f"{path}: its weights do not fit its architecture ({error}); retrain the model") from error
    broken = non_finite_tensors(network)
    if broken:
        raise InputError(
            f"{path}: {len(broken)} of its weight tensors hold NaN or infinity ({', '.join(broken[:3])}"
            f"{', ...' if len(broken) > 3 else ''}), so every prediction would be NaN: the training that wrote "
            "it diverged. Delete it and retrain (lower train.lr or set train.grad_clip)"
        )
    return network


def dihedral(batch: np.ndarray, index: int) -> np.ndarray:
    """Transform ``index`` (0-7) of the dihedral group: rotation by index % 4 quarter turns,
    after a flip of the last axis for index >= 4."""
    if index >= 4:
        batch = batch[..., ::-1]
    return np.rot90(batch, index % 4, axes=(-2, -1))


def undo_dihedral(batch: np.ndarray, index: int) -> np.ndarray:
    batch = np.rot90(batch, -(index % 4), axes=(-2, -1))
    return batch[..., ::-1] if index >= 4 else batch


def make_forward(model: torch.nn.Module, device: torch.device, dtype: torch.dtype | None,
                 tile: int | tuple[int, ...], *, num_classes: int | None = None,
                 test_time_augmentation: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """numpy input tiles (B, 1, h, w) or (B, 1, d, h, w) -> probabilities (B, C, *tile): the
    ``num_classes`` class probabilities (None: every channel is a class), then the affinities
    of a network that predicts them (:func:`unetflow.model.probabilities_of`); an int ``tile``
    is the edge of a square 2-D tile.

    With test-time augmentation, the class probabilities are the average over the 8
    flips/rotations by 90 degrees in the y-x plane, each undone on the output (the paper
    averaged rotated inputs). Affinities come from the input as it is: turned or flipped, an
    offset is another offset, so its channel would not average with itself.
    """
    tile = (tile, tile) if isinstance(tile, int) else tuple(tile)
    channels_last = device.type == "cpu" and len(tile) == 2

    def probabilities(batch: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
        if channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(device, dtype):
            logits = model(tensor)
        classes = logits.shape[1] if num_classes is None else num_classes
        return probabilities_of(center_crop(logits.float(), tile), classes).cpu().numpy()

    if not test_time_augmentation:
        return probabilities

    def averaged(batch: np.ndarray) -> np.ndarray:
        as_given = probabilities(batch)
        turned = (undo_dihedral(probabilities(dihedral(batch, index)), index) for index in range(1, 8))
        averaged = np.asarray(sum((as_given, *turned)) / 8, dtype=np.float32)
        classes = as_given.shape[1] if num_classes is None else num_classes
        averaged[:, classes:] = as_given[:, classes:]
        return np.ascontiguousarray(averaged)

    return averaged


MAX_AUTO_BATCH = 32
AUTO_BATCH_MEMORY_SHARE = 0.5  # of the GPU memory free when prediction starts


def auto_batch_size(forward: Callable[[np.ndarray], np.ndarray], input_shape: tuple[int, ...],
                    device: torch.device, tiles_per_slice: int) -> int:
    """``predict.batch_size: auto``: 1 on the CPU (a batch only adds memory there); on a GPU as
    many tiles as fit in half its free memory, measured with one forward of one tile, at most
    the tiles of one slice and ``MAX_AUTO_BATCH``."""
    if device.type != "cuda":
        return 1
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    forward(np.zeros((1, 1, *input_shape), np.float32))
    per_tile = max(torch.cuda.max_memory_allocated(device) - before, 1)
    free, _ = torch.cuda.mem_get_info(device)
    return batch_for_memory(free, per_tile, min(tiles_per_slice, MAX_AUTO_BATCH))


def batch_for_memory(free_bytes: int, per_tile_bytes: int, most: int) -> int:
    """Tiles per forward pass that fit in ``AUTO_BATCH_MEMORY_SHARE`` of ``free_bytes``, 1 to ``most``."""
    return int(max(1, min(most, AUTO_BATCH_MEMORY_SHARE * free_bytes // per_tile_bytes)))


def prepare_for_inference(model: torch.nn.Module, device: torch.device, dims: int = 2) -> torch.nn.Module:
    """channels_last on the CPU for 2-D networks, where oneDNN convolutions run fastest in that layout."""
    return model.to(memory_format=torch.channels_last) if device.type == "cpu" and dims == 2 else model
