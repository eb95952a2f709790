"""Model and training presets for a machine: what trains well in about an hour.

CPU presets are the demos' networks (a depth-3, 16-channel U-Net in 2-D; depth 2 in 3-D),
which learn EM membranes on 2 cores in minutes (README, "Results"); on a GPU, a U-Net
closer to the paper's (depth 4 in 2-D, 32 base channels, batch normalisation) with larger
tiles and a longer schedule. ``max_minutes`` ends training first where iterations would run
longer, so a preset never runs away on a slower machine.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[tuple[int, str], dict[str, Any]] = {
    (2, "cpu"): {
        "model": {"depth": 3, "base_channels": 16, "padding": "valid"},
        "augment": {"samples": 1000, "output_size": 100},
        "train": {"iterations": 5000, "max_minutes": 60, "batch_size": 4, "optimizer": "adam", "lr": 0.002,
                  "schedule": "cosine", "validate_every": 250, "checkpoint_every": 250},
        "predict": {"tile": 256},
    },
    (2, "gpu"): {
        "model": {"depth": 4, "base_channels": 32, "padding": "valid", "batch_norm": True, "dropout": 0.1},
        "augment": {"samples": 2000, "output_size": 196},
        "train": {"iterations": 20000, "max_minutes": 60, "batch_size": 8, "optimizer": "adam", "lr": 0.001,
                  "schedule": "cosine", "warmup": 0.02, "validate_every": 500, "checkpoint_every": 500},
        "predict": {"tile": 1024},
    },
    (3, "cpu"): {
        "model": {"depth": 2, "base_channels": 16, "padding": "valid"},
        "augment": {"samples": 500, "output_size": 32},
        "train": {"iterations": 3000, "max_minutes": 60, "batch_size": 2, "optimizer": "adam", "lr": 0.002,
                  "schedule": "cosine", "validate_every": 250, "checkpoint_every": 250},
        "predict": {"tile": 48},
    },
    (3, "gpu"): {
        "model": {"depth": 3, "base_channels": 32, "padding": "valid", "batch_norm": True},
        "augment": {"samples": 2000, "output_size": 64},
        "train": {"iterations": 20000, "max_minutes": 60, "batch_size": 2, "optimizer": "adam", "lr": 0.001,
                  "schedule": "cosine", "warmup": 0.02, "validate_every": 500, "checkpoint_every": 500},
        "predict": {"tile": 128},
    },
}


def machine() -> str:
    """"gpu" where torch sees a CUDA device, else "cpu"."""
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def preset(dims: int, device: str) -> dict[str, Any]:
    """The model, augment, train and predict settings for `dims` on a `device` ("cpu" or "gpu")."""
    return {section: dict(values) for section, values in PRESETS[(dims, device)].items()}
