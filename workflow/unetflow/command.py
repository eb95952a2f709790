"""The ``unetflow`` command: ``unetflow init FOLDER`` writes a config from a folder of images;
``unetflow check CONFIG`` checks a config as the workflow does before any job and prints its plan."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import yaml

from . import plan_checks, presets, settings, starter, starter_config
from .cli import run
from .errors import InputError
from .plan import Plan

log = logging.getLogger("unetflow")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="unetflow", description="unetflow: the U-Net of Ronneberger et al. "
                                     "(2015) as a Snakemake workflow; `snakemake` runs it.")
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="write a config that runs, from a folder of images (and labels)",
                               description="Survey FOLDER (FOLDER/images + FOLDER/labels, or images with "
                               "<name>_labels.tif beside them) and write a commented config: labelled images "
                               "train and validate a U-Net, the others are segmented.")
    init.add_argument("folder", type=Path, help="the folder of TIFF/PNG images")
    init.add_argument("--labels", type=Path, help="the folder of their labels (same file names), if elsewhere")
    init.add_argument("--output", "-o", type=Path, help="the config to write (default: <folder name>.yaml)")
    init.add_argument("--dims", type=int, choices=(2, 3),
                      help="2: slices; 3: volumes (default: from the files' axes and voxel sizes)")
    init.add_argument("--device", choices=("cpu", "gpu"),
                      help="the machine that will train: sizes the model (default: this machine)")
    init.add_argument("--model", type=Path, help="a trained model.pt to apply instead of training one")
    init.add_argument("--force", action="store_true", help="replace an existing config file")
    check = commands.add_parser("check", help="check a config as the workflow does before any job; print its plan",
                                description="Validate CONFIG against the schema, refuse what the workflow refuses "
                                "before any job (unetflow.plan_checks), and print which datasets train, validate "
                                "and are predicted, and which models train on which samples.")
    check.add_argument("config", type=Path, nargs="+", help="config files, each on top of the ones before (as "
                       "snakemake --configfile takes them)")
    return parser.parse_args(argv)


def init(args: argparse.Namespace) -> Path:
    stacks = starter.survey(args.folder, args.labels)
    dims, reason = (args.dims, "as given (--dims)") if args.dims else starter.infer_dims(stacks)
    device = args.device or presets.machine()
    model_file = starter.portable(args.model) if args.model else None
    if model_file is None and not any(stack.labels for stack in stacks):
        raise InputError(f"{args.folder}: no labels found (looked for labels/ or masks/ beside images/, and "
                                 "<name>_labels.tif beside each image); give --labels FOLDER, or --model FILE to "
                                 "apply a trained model to these images")
    split = starter.split(stacks, training=model_file is None)
    config = starter_config.assemble(split, dims, device, model_file, channels=stacks[0].channels)
    if dims == 3 and model_file is None:
        poolings = starter.planar_poolings(stacks, config["models"][starter_config.MODEL]["depth"])
        if poolings:
            config["models"][starter_config.MODEL]["planar_poolings"] = poolings
    starter_config.check(config)
    output = args.output or Path(f"{starter.dataset_name(args.folder.resolve())}.yaml")
    text = starter_config.render(config, stacks, args.folder, reason, device, output)
    starter_config.write(text, output, args.force)
    log.info("%s: %d datasets (train %s, validate %s, predict %s), %d-D, a %s preset", output,
             len(config["datasets"]), config["train_on"] or "-", config["validate_on"] or "-",
             config["predict_on"] or "-", dims, device.upper())
    print(f"wrote {output}; next:\n  snakemake -n --configfile {output}\n"
          f"  snakemake --cores 8 --resources gpu=1 --configfile {output}")
    return output


def merged(paths: list[Path]) -> dict:
    """The config files merged as Snakemake merges them (its own ``update_config``): nested
    mappings key by key, later files on top."""
    from snakemake.utils import update_config  # Snakemake's import is slow: only for this command

    config: dict = {}
    for path in paths:
        if not path.is_file():
            raise InputError(f"{path}: no such config file")
        update_config(config, yaml.safe_load(path.read_text()) or {})
    return config


def check(args: argparse.Namespace) -> Plan:
    plan = Plan(settings.whole_config(merged(args.config)))
    plan_checks.check(plan)
    trained = plan.trained_models()
    print(f"{', '.join(map(str, args.config))}: the workflow accepts it")
    print(f"  train on:    {', '.join(plan.training_datasets() if trained else []) or '-'}")
    print(f"  validate on: {', '.join(plan.validation_datasets()) or '-'}"
          f"{' (and tune the segmentation)' if plan.tuned() else ''}")
    print(f"  predict:     {', '.join(plan.prediction_datasets()) or '-'}"
          f" (scored: {', '.join(plan.evaluated_datasets()) or 'none'})")
    for model, origin in plan.model_origins().items():
        sizes = f"; samples {' -> '.join(map(str, plan.model_sample_sizes(model)))}" if model in trained else ""
        print(f"  model {model}: {origin}{sizes}")
    return plan


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "init":
        init(args)
    elif args.command == "check":
        check(args)


def entry_point() -> None:
    run(main)


if __name__ == "__main__":
    entry_point()
