"""Step: train one model on its augmented samples (or on data and weight maps drawn from
online) and write ``model.pt``, ``metrics.csv`` and ``loss.png`` (:mod:`unetflow.training`)."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from .. import cli, start_model
from .. import settings as settings_module
from ..augmentation import AugmentSettings, OnlineSamples
from ..errors import InputError
from ..fingerprints import store_fingerprint
from ..geometry import parse_size
from ..methods import architectures
from ..training import TrainSettings, train
from ..training_data import SampleBank, load_validation

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unetflow.steps.train", description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, nargs="*", default=[], help="augmented.zarr stores (precomputed)")
    parser.add_argument("--data", type=Path, nargs="*", default=[], help="data.zarr stores (online mode)")
    parser.add_argument("--weights", type=Path, nargs="*", default=[], help="weights.zarr stores (online mode)")
    parser.add_argument("--validation", type=Path, nargs="*", default=[], help="labelled data.zarr stores")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--model", default="{}", help="the config's models.<name> entry as JSON")
    parser.add_argument("--start-from", type=Path, help="fine-tune: a model.pt or bioimage.io package to start from "
                        "(its architecture replaces --model)")
    cli.add_settings_option(parser, "train")
    parser.add_argument("--runtime", default="{}", help="train runtime keys (device, workers, ...) as JSON")
    parser.add_argument("--online", default=None, help="augment settings as JSON: draw samples on the fly")
    parser.add_argument("--sample-sizes", nargs=2, metavar=("INPUT", "OUTPUT"),
                        help="online samples' input and output tile: N (2-D) or ZxYxX (3-D)")
    cli.add_dims_option(parser, help="2: a network over slices; 3: over volumes")
    parser.add_argument("--num-classes", type=int, default=settings_module.default("num_classes"))
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = its default)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = TrainSettings.from_config({**json.loads(args.settings), **json.loads(args.runtime)})
    refuse_missing_samples(args)
    if args.online is not None:
        online = settings_module.section("augment", json.loads(args.online))
        input_size, output_size = (parse_size(size, "--sample-sizes") for size in args.sample_sizes)
        samples = OnlineSamples(args.data, args.weights, settings=AugmentSettings.from_config(online["transforms"]),
                                input_size=input_size, output_size=output_size,
                                seed=online["seed"], length=online["samples"])
        sources = [str(p) for p in args.data]
    else:
        samples = SampleBank(args.samples)
        sources = [str(p) for p in args.samples]
        log.info("sample bank of %.2f GB %s", samples.nbytes / 1e9,
                 "read into memory" if samples.in_memory else "read from disk batch by batch (larger than half "
                 "the available memory)")
    start = None
    if args.start_from:
        start = start_model.read(args.start_from)
        start_model.check_fits(start, num_classes=args.num_classes, dims=args.dims, in_channels=samples.channels,
                               setting=f"models.{args.out_dir.name}.start_from")
        architecture = start.architecture
    else:
        architecture = architectures.from_config(json.loads(args.model), num_classes=args.num_classes,
                                                 dims=args.dims, in_channels=samples.channels,
                                                 where=f"models.{args.out_dir.name}")
    validation = load_validation(args.validation, architecture.dims)
    log.info("training the %d-D %s on %d samples (%s), validating on %d %s", architecture.dims, args.out_dir.name,
             len(samples), ", ".join(sources), len(validation), "slices" if architecture.dims == 2 else "volumes")
    train(architecture=architecture, settings=settings, samples=samples, validation=validation,
          out_dir=args.out_dir, fingerprint_of=inputs_fingerprint(args), start_from=start)


def refuse_missing_samples(args: argparse.Namespace) -> None:
    """Training needs samples (precomputed) or data and weight maps (online): refused before
    anything is written, with the setting that names them."""
    given = {"--data": args.data, "--weights": args.weights} if args.online is not None else {"--samples": args.samples}
    missing = [option for option, paths in given.items() if not paths]
    if missing:
        raise InputError(f"model '{args.out_dir.name}': no training data ({' and '.join(missing)} name no store): the "
                         "config's train_on names no dataset to train on; name labelled datasets in train_on, or "
                         f"give a trained model file as models.{args.out_dir.name}.file to apply it without training")


def inputs_fingerprint(args: argparse.Namespace) -> dict:
    """What a checkpoint must have been trained on to be resumed: the content of every input
    store (not only its path) and the online augmentation settings."""
    started = time.perf_counter()
    stores = [*args.samples, *args.data, *args.weights, *args.validation]
    fingerprints = {str(path): store_fingerprint(path) for path in stores}
    log.info("fingerprinted %d input stores in %.1f s", len(stores), time.perf_counter() - started)
    return {"inputs": fingerprints, "online": args.online, "sample_sizes": args.sample_sizes}


if __name__ == "__main__":
    cli.run(main)
