"""The config ``unetflow init`` writes: assembled from a survey, checked against the
schema, written as commented YAML (comments are what a new user reads first, so the file
is written section by section rather than dumped)."""

from __future__ import annotations

import datetime
import os
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from . import presets, settings
from .errors import InputError
from .starter import Split, Stack

MODEL = "unet"


FLUORESCENCE_NORMALIZE = {"method": "percentile", "scope": "image", "percentiles": [1, 99.8]}


def assemble(split: Split, dims: int, device: str, model_file: str | None = None,
             channels: int = 1) -> dict[str, Any]:
    """The config of a run: `split`'s datasets and roles, the preset for `dims` and `device`
    (or the given model file), tuned segmentation where there is validation data; images with
    channels (fluorescence) normalised by percentiles, robust to saturated and hot pixels."""
    preset = presets.preset(dims, device)
    model = {"file": model_file} if model_file else preset["model"]
    config: dict[str, Any] = {
        "dims": dims,
        "datasets": split.datasets,
        "train_on": split.train_on,
        "validate_on": split.validate_on,
        "predict_on": split.predict_on,
        "models": {MODEL: model},
        "run_models": [MODEL],
        "segment": {"settings": "tuned"} if split.validate_on else {"settings": "fixed"},
        "predict": preset["predict"],
    }
    if not model_file:
        config["augment"], config["train"] = preset["augment"], preset["train"]
    if channels > 1 and not model_file:
        config["normalize"] = FLUORESCENCE_NORMALIZE
    return config


def check(config: dict[str, Any]) -> None:
    """The config is one the schema accepts, and it trains or predicts something."""
    try:
        jsonschema.validate(config, settings.schema())
    except jsonschema.ValidationError as error:  # a bug here, not the user's: say what
        where = ".".join(map(str, error.absolute_path))
        raise AssertionError(f"unetflow init wrote an invalid config at {where}: {error.message}") from None
    if not config["train_on"] and not config["predict_on"]:
        raise InputError("the folder's images are all labelled but too few to train and still predict; add "
                         "unlabelled images to segment, or more labelled ones")


def render(config: dict[str, Any], stacks: list[Stack], folder: Path, dims_reason: str, device: str,
           config_path: Path) -> str:
    """The config as commented YAML."""
    described = {stack.name: stack.describe() for stack in stacks}
    trains = bool(config["train_on"])
    lines = [
        f"# unetflow config for {folder}, written by `unetflow init` on {datetime.date.today()}",
        f"# for a {device.upper()} ({'training ' + MODEL if trains else 'applying ' + config['models'][MODEL]['file']}).",
        "#",
        f"#   snakemake -n --configfile {config_path}                        # what will run",
        f"#   snakemake --cores 8 --resources gpu=1 --configfile {config_path}",
        "#",
        "# Segmentations land in results/segmentation/unet/<dataset>.zarr; napari opens",
        "# results/view/unet/<dataset>.ome.zarr with the image. Every key is explained in",
        "# workflow/schemas/config.schema.yaml; keys left out take the defaults there.",
        "",
        f"dims: {config['dims']}  # {dims_reason}",
        "",
        "# One dataset per image file (slices: a part of a stack); voxel sizes from the files' metadata.",
        "datasets:",
    ]
    for name, entry in config["datasets"].items():
        source = next((text for stack, text in described.items() if name == stack or name.startswith(stack + "_")),
                      "")
        lines.append(f"  {name}:  # {source}")
        lines += [f"    {key}: {inline(value)}" for key, value in entry.items()]
    lines += ["", "# Labelled datasets train the model; validate_on ones are held out: training is validated",
              "# on them and the segmentation settings are tuned on them. predict_on: segmented with the model."]
    lines += [dump({key: config[key]}).rstrip() for key in ("train_on", "validate_on", "predict_on")]
    lines += ["", "# The model: its file (applied, never trained here), or a U-Net sized to train in about an hour",
              f"# on a {device.upper()} (unetflow/presets.py; the paper's network is depth 4, base_channels 64)."]
    lines += [dump({"models": config["models"]}, flow=False).rstrip(), dump({"run_models": config["run_models"]}).rstrip()]
    for key, comment in (("normalize", "the images have channels: each slice's channels scaled from their 1st and "
                                       "99.8th percentile to 0 and 1, robust to saturated and hot pixels"),
                         ("augment", "elastically deformed training tiles, made once (the paper's augmentation)"),
                         ("train", "max_minutes ends training before `iterations` on a slower machine"),
                         ("predict", "overlap-tile prediction in tiles of this edge"),
                         ("segment", "tuned: the tune rule chooses the settings on validate_on; fixed: the "
                                     "schema's watershed defaults. Cells that tile the image (membranes) suit the "
                                     "defaults; for sparse objects on a background (nuclei) add mask: 0.5 (fixed), or "
                                     "tune: {metric: average_precision} with a grid that tries mask (README, "
                                     "Prediction and segmentation)")):
        if key in config:
            lines += ["", *(f"# {line}" for line in textwrap.wrap(comment, 100)),
                      dump({key: config[key]}, flow=False).rstrip()]
    return "\n".join(lines) + "\n"


def inline(value: Any) -> str:
    """`value` as YAML on one line (quoted where YAML needs it)."""
    return yaml.safe_dump([value], default_flow_style=True, width=float("inf"), allow_unicode=True,
                          sort_keys=False).strip()[1:-1]


def dump(value: Any, flow: bool | None = None) -> str:
    """YAML of `value`: lists and innermost mappings inline (flow None), or all in blocks (False)."""
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=flow, width=110, allow_unicode=True)


def write(text: str, path: Path, force: bool) -> None:
    """Write the config, never over an existing file unless `force`; a temporary file is
    renamed into place, so no half-written config is left."""
    if path.exists() and not force:
        raise InputError(f"{path}: exists; give another --output, or --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)
