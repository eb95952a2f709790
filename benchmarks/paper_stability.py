"""Does the paper network train without diverging? Loss curves of short runs, several settings.

Run: python benchmarks/paper_stability.py SAMPLES.zarr [--stop-after 400] [--schedule-iterations 6000]
     [--precision fp32 bf16] [--set lr=0.01 grad_clip=12 ...] [--out curves.csv]

Trains the paper's U-Net (depth 4, 64 channels, drop-out 0.5, batch 1, SGD with
momentum 0.99) on the precomputed samples of an ``augmented.zarr`` store (e.g.
the ISBI 2012 training slices) through ``unetflow.training.train``, once per
precision, for ``--stop-after`` iterations of a schedule planned for
``--schedule-iterations`` (so a warm-up of 5% of 6000 iterations is the 300
iterations it would be in a long run). Prints the mean loss and gradient norm
every 25 iterations and the skipped (non-finite) steps; a run that diverges is
reported with the error it stopped with. On the CPU, bf16 autocast mimics the
GPU's mixed precision.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
import tempfile
from pathlib import Path

import pandas as pd
import torch
import yaml

from common import machine
from unetflow.errors import InputError
from unetflow import inference
from unetflow.methods.architectures import ModelConfig
from unetflow.training import TrainSettings, train
from unetflow.training_data import SampleBank

PAPER_MODEL = ModelConfig(depth=4, base_channels=64, dropout=0.5)
PAPER_PRESET = Path(__file__).resolve().parents[1] / "config" / "isbi2012.yaml"


class Stop(Exception):
    pass


def preset_settings() -> dict:
    """The ``paper`` preset's own train settings from config/isbi2012.yaml."""
    config = yaml.safe_load(PAPER_PRESET.read_text())
    return {**config.get("train", {}), **config["models"]["paper"]["train"]}


def run(samples: SampleBank, settings: TrainSettings, stop_after: int,
        folder: Path) -> tuple[pd.DataFrame, str]:
    """Metrics rows up to ``stop_after`` and how the run ended."""
    def stop(iteration: int) -> None:
        if iteration == stop_after:
            raise Stop

    out_dir = folder / f"paper-{settings.precision}"
    try:
        train(architecture=PAPER_MODEL, settings=settings, samples=samples, validation=[], out_dir=out_dir,
              fingerprint_of={"stability": settings.precision}, on_iteration=stop)
        return pd.read_csv(out_dir / "metrics.csv"), "finished"
    except Stop:
        state = torch.load(out_dir / "checkpoint.pt", weights_only=False)
        return pd.DataFrame(state["metrics"]), f"stopped at {stop_after}"
    except InputError as error:
        return pd.read_csv(out_dir / "metrics.csv"), f"diverged: {error}"


def save_model(checkpoint: Path, path: Path, settings: TrainSettings) -> None:
    """The checkpointed network as a model.pt that predict (and benchmarks/predict.py) reads."""
    state = torch.load(checkpoint, weights_only=False)
    network = PAPER_MODEL.network()
    network.load_state_dict(state["model"])
    inference.save_model(path, PAPER_MODEL, network, train_settings=asdict(settings), iterations=state["iteration"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", type=Path, help="augmented.zarr store")
    parser.add_argument("--stop-after", type=int, default=400)
    parser.add_argument("--schedule-iterations", type=int, default=6000)
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="train settings over the paper preset's, values as JSON")
    parser.add_argument("--out", type=Path, help="write every curve to this CSV")
    parser.add_argument("--model-out", type=Path, help="save the last precision's network here, as a model.pt")
    args = parser.parse_args()
    overrides = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)}
    base = {**preset_settings(), **overrides, "iterations": args.schedule_iterations, "max_minutes": None,
            "device": "cpu", "log_every": 25, "validate_every": 10**9, "checkpoint_every": args.stop_after}
    samples = SampleBank([args.samples])
    print(f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"samples: {args.samples} ({len(samples)}, {samples.input_size} -> {samples.output_size} px)")
    curves = []
    with tempfile.TemporaryDirectory() as folder:
        for precision in args.precision:
            settings = TrainSettings.from_config(dict(**{**base, "precision": precision}))
            print(f"\n{precision}: " + ", ".join(f"{k} {v}" for k, v in sorted(overrides.items())) +
                  f" | lr {settings.lr}, warmup {settings.warmup}, schedule {settings.schedule}, "
                  f"grad_clip {settings.grad_clip}, momentum {settings.momentum}")
            metrics, ending = run(samples, settings, args.stop_after, Path(folder))
            if args.model_out and ending.startswith("stopped"):
                save_model(Path(folder) / f"paper-{precision}" / "checkpoint.pt", args.model_out, settings)
            columns = ["iteration", "loss", "lr", "grad_norm", "grad_norm_max", "skipped_steps", "seconds"]
            print(metrics[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
            print(f"-> {ending}")
            curves.append(metrics.assign(precision=precision, ending=ending.split(":")[0]))
    if args.out:
        pd.concat(curves).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
