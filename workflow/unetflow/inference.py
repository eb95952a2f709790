"""Running a trained U-Net: devices, precision, tile geometry, test-time augmentation."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .geometry import valid_output_size
from .model import ModelConfig, UNet, center_crop, non_finite_tensors

MODEL_FORMAT = "unetflow-model-2"
# format 1: the U-Net before it had a ReLU after each up-convolution
OLD_MODEL_FORMATS = {"unetflow-model-1": "a U-Net without the ReLU after its up-convolutions"}


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA, then Apple MPS, then the CPU; or the named device, checked to exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
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
    """Output tile edge, context margin per side, whether tiles are blended, and the alignment of
    tile origins (the network's pooling grid, 2**depth)."""

    tile: int
    margin: int
    blend: bool
    align: int


def tile_geometry(config: ModelConfig, tile: int) -> TileGeometry:
    """Valid models: the next valid output size and their own margin (overlap-tile, exact).
    Same-padded models: a multiple of 2**depth, no margin, Gaussian-blended half overlaps."""
    step = 2**config.depth
    if config.padding == "valid":
        return TileGeometry(valid_output_size(tile, config.depth), config.margin, blend=False, align=step)
    return TileGeometry(max(step, -(-tile // step) * step), 0, blend=True, align=step)


def load_model(path: Path, device: torch.device) -> UNet:
    """The U-Net saved by the train rule, on ``device``, in evaluation mode."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise InputError(f"{path}: not a readable model file ({type(error).__name__}: {error}); "
                         "delete it and rerun the train rule") from error
    if isinstance(saved, dict) and saved.get("format") in OLD_MODEL_FORMATS:
        raise InputError(f"{path}: written by an earlier unetflow ({OLD_MODEL_FORMATS[saved['format']]}), which this "
                         "version cannot run as it was trained; delete it and rerun the train rule")
    if not isinstance(saved, dict) or saved.get("format") != MODEL_FORMAT:
        raise InputError(f"{path}: not a unetflow model (format {saved.get('format') if isinstance(saved, dict) else '?'}); "
                         "give a model.pt written by the train rule")
    model = UNet(ModelConfig(**saved["model_config"]))
    try:
        model.load_state_dict(saved["state_dict"])
    except RuntimeError as error:
        raise InputError(f"{path}: its weights do not fit its architecture ({error}); retrain the model") from error
    broken = non_finite_tensors(model)
    if broken:
        raise InputError(
            f"{path}: {len(broken)} of its weight tensors hold NaN or infinity ({', '.join(broken[:3])}"
            f"{', ...' if len(broken) > 3 else ''}), so every prediction would be NaN: the training that wrote "
            "it diverged. Delete it and retrain (lower train.lr or set train.grad_clip)"
        )
    return model.to(device).eval()


def dihedral(batch: np.ndarray, index: int) -> np.ndarray:
    """Transform ``index`` (0-7) of the dihedral group: rotation by index % 4 quarter turns,
    after a flip of the last axis for index >= 4."""
    if index >= 4:
        batch = batch[..., ::-1]
    return np.rot90(batch, index % 4, axes=(-2, -1))


def undo_dihedral(batch: np.ndarray, index: int) -> np.ndarray:
    batch = np.rot90(batch, -(index % 4), axes=(-2, -1))
    return batch[..., ::-1] if index >= 4 else batch


def make_forward(model: UNet, device: torch.device, dtype: torch.dtype | None, tile: int, *,
                 test_time_augmentation: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """numpy input tiles (B, 1, h, w) -> class probabilities (B, K, tile, tile).

    With test-time augmentation, the average over the 8 flips/rotations by 90
    degrees, each undone on the output (the paper averaged rotated inputs).
    """
    channels_last = device.type == "cpu"

    def probabilities(batch: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
        if channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(device, dtype):
            logits = model(tensor)
        return torch.softmax(center_crop(logits.float(), (tile, tile)), dim=1).cpu().numpy()

    if not test_time_augmentation:
        return probabilities

    def averaged(batch: np.ndarray) -> np.ndarray:
        total = sum(undo_dihedral(probabilities(dihedral(batch, index)), index) for index in range(8))
        return np.ascontiguousarray(total / 8, dtype=np.float32)

    return averaged


MAX_AUTO_BATCH = 32
AUTO_BATCH_MEMORY_SHARE = 0.5  # of the GPU memory free when prediction starts


def auto_batch_size(forward: Callable[[np.ndarray], np.ndarray], input_edge: int, device: torch.device,
                    tiles_per_slice: int) -> int:
    """``predict.batch_size: auto``: 1 on the CPU (a batch only adds memory there); on a GPU as
    many tiles as fit in half its free memory, measured with one forward of one tile, at most
    the tiles of one slice and ``MAX_AUTO_BATCH``."""
    if device.type != "cuda":
        return 1
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    forward(np.zeros((1, 1, input_edge, input_edge), np.float32))
    per_tile = max(torch.cuda.max_memory_allocated(device) - before, 1)
    free, _ = torch.cuda.mem_get_info(device)
    return batch_for_memory(free, per_tile, min(tiles_per_slice, MAX_AUTO_BATCH))


def batch_for_memory(free_bytes: int, per_tile_bytes: int, most: int) -> int:
    """Tiles per forward pass that fit in ``AUTO_BATCH_MEMORY_SHARE`` of ``free_bytes``, 1 to ``most``."""
    return int(max(1, min(most, AUTO_BATCH_MEMORY_SHARE * free_bytes // per_tile_bytes)))


def prepare_for_inference(model: UNet, device: torch.device) -> UNet:
    """channels_last on the CPU, where oneDNN convolutions run fastest in that layout."""
    return model.to(memory_format=torch.channels_last) if device.type == "cpu" else model
