"""The README of an exported model package: the network, its training, input, output and citation.

The text is built from what the model file records (architecture, ``train`` settings,
iterations) and from the export's own checks (valid input sizes, how closely each
weight format reproduced unetflow's prediction of the test tile).
"""

from __future__ import annotations

import json
from pathlib import Path

from . import package_normalization
from .methods.architectures import ModelConfig, class_names

PAPER = ("Ronneberger, O., Fischer, P., Brox, T. (2015). U-Net: Convolutional Networks for Biomedical Image "
         "Segmentation. Medical Image Computing and Computer-Assisted Intervention (MICCAI 2015), LNCS 9351, "
         "234-241.")
PAPER_DOI = "10.1007/978-3-319-24574-4_28"
INPUT_ID, OUTPUT_ID = "raw", "probabilities"  # the package's tensor names


def normalisation_text(recorded: dict | None) -> str:
    """How the package normalises its input, and how that relates to the model's training."""
    applied = package_normalization.kind(recorded)
    per_image = {"zero_mean_unit_variance": "to zero mean and unit variance", "scale_range":
                 "from its {} and {} percentile to 0 and 1".format(*(recorded or {}).get("percentiles") or (0, 0))}
    if applied in per_image:
        trained = "each image (slice)" if recorded and recorded["scope"] == "image" else "each dataset (stack)"
        return (f"The package normalises each image per channel, over (y, x), {per_image[applied]} "
                f"(`{applied}`, eps {package_normalization.EPS}); the model was trained on {trained} "
                "normalised the same way.")
    return (f"The package normalises with the fixed statistics of its training data per channel (`{applied}`: "
            f"offset {recorded['offset']}, scale {recorded['scale']}), as unetflow did in training: give images "
            "of the same intensity range (microscope, detector, bit depth).")


def readme(*, name: str, architecture: ModelConfig, saved: dict, source: Path, parameters: int,
           input_range: tuple[int, int], test_edge: int, halo: int, differences: dict[str, float]) -> str:
    """The package's documentation (markdown): model, training, input, output, citation."""
    margin = architecture.margin
    smallest, step = input_range
    train_settings = saved.get("train_settings") or {}
    training = "\n".join(f"| {key} | {json.dumps(value)} |" for key, value in sorted(train_settings.items()))
    agreement = ", ".join(f"{weights} {difference:.1g}" for weights, difference in differences.items())
    if architecture.padding == "valid":
        output_size = (f"the input size minus {2 * margin} px ({margin} px of context consumed on each side, the "
                       "network's margin); every output pixel sees its full context, so output tiles are exact "
                       f"(overlap-tile). To predict a whole image, mirror it (numpy `reflect`) by {margin} px on "
                       "each side, and more to reach a valid size, as unetflow does.")
    else:
        output_size = (f"the input size (same-padded convolutions). Crop {halo} px (the halo, the network's "
                       "receptive-field radius) from each side of output tiles before stitching them.")
    return f"""# {name}

The U-Net of Ronneberger, Fischer and Brox (MICCAI 2015), trained with unetflow (a Snakemake
workflow of the paper's method) and exported from `{source.name}` by `python -m unetflow.steps.export`.
It classifies every pixel of a 2-D grey-value image into {architecture.num_classes} classes
({", ".join(class_names(architecture.num_classes))}).

## Network

| setting | value |
|---|---|
| depth (2x2 max-poolings) | {architecture.depth} |
| channels of the first level | {architecture.base_channels} (doubling per level) |
| convolutions | 3x3, {architecture.padding} padding |
| batch normalisation | {"yes" if architecture.batch_norm else "no"} |
| drop-out (end of contracting path, training only) | {architecture.dropout} |
| classes | {architecture.num_classes} |
| affinity outputs | {affinity_text(architecture)} |
| weights | {parameters:,} |

Weights are given as a PyTorch state dict (architecture: `ProbabilityUNet` in `model.py`, which
needs only PyTorch) and as TorchScript; both give the same probabilities.

## Training

{saved.get("iterations", "An unrecorded number of")} iterations with these `train` settings of unetflow:

| setting | value |
|---|---|
{training or "| (not recorded in the model file) | |"}

## Input

{architecture.in_channels} channel(s) (`{INPUT_ID}`), axes batch, channel, y, x; float32. Edges of
{smallest} + n x {step} px (n = 0, 1, 2, ...). {normalisation_text(saved.get("normalization"))}

## Output

`{OUTPUT_ID}`: class probabilities (softmax over the first {architecture.num_classes} channels, which sum
to 1){affinity_output_text(architecture)}, axes batch, channel, y, x; float32. Channel 1
({class_names(architecture.num_classes)[1]}) is what unetflow thresholds and segments for two classes. The
output size is {output_size}

## Validation

The test input is a {test_edge} x {test_edge} px tile (raw intensities), the test output
unetflow's own prediction of it (`unetflow.inference.make_forward`, fp32 on the CPU, the tile
normalised as above). Both weight formats reproduce it, largest difference of a probability:
{agreement}. The paper validated the method on the ISBI 2012 EM
segmentation challenge; evaluate this model on your own labelled data (unetflow's evaluate rule
reports pixel errors, adapted Rand error, variation of information and the challenge's V_Rand
and V_Info).

## Citation

{PAPER} doi:[{PAPER_DOI}](https://doi.org/{PAPER_DOI})
"""


def affinity_text(architecture: ModelConfig) -> str:
    """The affinity offsets of the network, or "none"."""
    if not architecture.affinities:
        return "none"
    return f"{len(architecture.affinities)}, offsets (y, x) " + ", ".join(
        f"({', '.join(map(str, offset))})" for offset in architecture.affinities)


def affinity_output_text(architecture: ModelConfig) -> str:
    """What the output's channels after the classes hold, for a network with affinities."""
    if not architecture.affinities:
        return ""
    return (f", then {len(architecture.affinities)} affinities (a sigmoid each: the probability that a pixel "
            "and the pixel an offset away lie in one object; offsets in the Network table, in channel order)")
