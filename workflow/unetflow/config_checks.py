"""Checks of settings that the schema cannot express, run before any job starts.

The workflow calls these while it builds the DAG (``unetflow.plan_checks``, from ``rules/common.smk``),
and the steps call the ones that concern them again, so that a step run by hand
refuses the same settings with the same message. Only the standard library is
imported: Snakemake imports this module on every invocation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from .errors import InputError

# Snakemake reads "{name}" in a path as a wildcard; such paths cannot be inputs.
BRACES = ("{", "}")
# tune metrics that score 2-D slices only
SLICE_METRICS = ("v_rand", "v_info")


def parse_slice_selection(spec: str | list[int] | None, where: str) -> list[int] | None:
    """Slice indices of a selection: ``"0-17"``, ``"0,3,5-7"`` or a list; None (or "") = all.

    Ranges are inclusive and ascending, no index may appear twice (it would be
    ingested twice and weigh double in training and scores).
    """
    if spec is None or spec == "":
        return None
    parts = spec if isinstance(spec, list) else str(spec).split(",")
    indices: list[int] = []
    for part in parts:
        first, last = _bounds(part, spec, where)
        if last < first:
            raise InputError(f"{where}: slice range {str(part).strip()!r} runs backwards; write it as "
                             f"\"{last}-{first}\" (ranges are inclusive and ascending)")
        indices += range(first, last + 1)
    repeated = sorted(index for index, times in Counter(indices).items() if times > 1)
    if repeated:
        raise InputError(f"{where}: slice selection {spec!r} names slices {repeated} more than once; "
                         "name each slice once")
    return indices


def _bounds(part: str | int, spec: str | list[int], where: str) -> tuple[int, int]:
    """First and last index of one part of a selection ("5" or "5-7")."""
    try:
        if isinstance(part, str) and "-" in part.strip()[1:]:
            first, last = part.split("-")
            return int(first), int(last)
        return int(part), int(part)
    except ValueError:
        raise InputError(f"{where}: slice selection {spec!r} is not understood; write e.g. \"0-17\" or "
                         "\"0,3,5-7\"") from None


def check_seed_height(seeds: str, h: float, where: str = "segment") -> None:
    """``h`` must be a height the seeding landscape can have: probabilities stay within [0, 1]."""
    if seeds == "probability" and h >= 1:
        raise InputError(
            f"{where}.h is {h} with {where}.seeds: probability, but probabilities lie in [0, 1], so no "
            f"maximum is {h} high and every slice would get no object; set {where}.h below 1 (e.g. 0.15), "
            "or use seeds: distance, where h is in pixels"
        )


def check_mask(mask: float, threshold: float, where: str = "segment") -> None:
    """A watershed's ``mask`` lies in [0, ``threshold``]: the seeds (foreground >= threshold) lie in the mask."""
    if not 0 <= mask <= threshold:
        raise InputError(
            f"{where}.mask is {mask} with {where}.threshold {threshold}, but the watershed's seeds lie in the "
            f"interior (foreground >= threshold), which the flooded mask (foreground >= mask) must hold; set "
            f"{where}.mask to at most the threshold, or 0 to flood every pixel"
        )


# the segmentation methods seeded by a watershed (those that take seeds and h): checked here, where
# Snakemake checks a config without importing scikit-image (tests/test_detection.py keeps it true)
SEEDED_METHODS = ("watershed", "agglomeration")


def check_watershed(settings: dict, where: str = "segment") -> None:
    """Refuse watershed settings that cannot give objects (:func:`check_seed_height`, :func:`check_mask`)."""
    check_seed_height(settings["seeds"], settings["h"], where)
    check_mask(settings.get("mask", 0.0), settings["threshold"], where)


def check_tune_metric(metric: str, dims: int) -> None:
    """The ISBI 2012 challenge's V_Rand and V_Info of a segmentation are scores of 2-D slices (its
    borders are thinned in the plane): refused as the tune metric of volumes."""
    if dims == 3 and metric in SLICE_METRICS:
        raise InputError(f"config: tune.metric is {metric}, the ISBI 2012 challenge's score of 2-D slices, but "
                         "with dims 3 the tune rule scores volumes; set tune.metric: adapted_rand_error or "
                         "variation_of_information")


def check_class_weight_source(source: str, dims: int) -> None:
    """Refuse per-slice class weights for 3-D weight maps (a volume has one set of weights)."""
    if dims == 3 and source == "slice":
        raise InputError(
            "config: weights.class_weights is 'slice', but 3-D weight maps (--dims 3) are computed over the whole "
            "volume and take one set of class weights; set weights.class_weights to dataset, or compute 2-D "
            "weight maps"
        )


def check_unique(names: Iterable[str], key: str) -> None:
    """Each name once: a repeated dataset would be trained on, or reported, twice."""
    repeated = sorted(name for name, times in Counter(names).items() if times > 1)
    if repeated:
        raise InputError(f"config: {key} names {', '.join(repeated)} more than once; name each once")


def _has_braces(path: str) -> bool:
    return any(brace in str(path) for brace in BRACES)


def check_path(path: str, key: str) -> None:
    """A dataset path that Snakemake can take as an input file."""
    if _has_braces(path):
        raise InputError(
            f"config: {key} is {path!r}, whose braces Snakemake reads as a wildcard; rename the file or "
            "folder without '{' and '}' (or link it under such a name)"
        )


def check_checkout(path: str) -> None:
    """The workflow's own folder: Snakemake formats it into commands, so braces break every job."""
    if _has_braces(path):
        raise InputError(
            f"the workflow's folder {path!r} holds braces, which Snakemake reads as wildcards in every job; "
            "move or clone the checkout to a path without '{' and '}'"
        )


def check_disjoint(roles: dict[str, list[str]], datasets: dict[str, dict]) -> None:
    """Datasets of different roles (train, tune, report) share no slice of a stack.

    ``roles`` maps a role to the dataset names that play it; two datasets overlap when
    their ``images`` name the same file or folder and their slice selections meet (no
    selection = every slice). Scores on slices the model trained on, or chose its
    post-processing on, would be optimistic, so such a config is refused.
    """
    named = [(role, name) for role, names in roles.items() for name in names]
    for index, (role, name) in enumerate(named):
        for other_role, other in named[index + 1:]:
            if role == other_role:
                continue
            shared = shared_slices(datasets[name], datasets[other])
            if shared:
                raise InputError(
                    f"config: {name} ({role}) and {other} ({other_role}) share {shared} of "
                    f"{datasets[name]['images']}; data used to train, to tune and to report must be disjoint, "
                    "or the reported scores are optimistic: give each its own slices (datasets.<name>.slices) "
                    "or remove one of them from train_on / validate_on / predict_on")


def shared_slices(first: dict, second: dict) -> str:
    """The slices two dataset entries both use, in words ("" when none)."""
    if Path(first["images"]).resolve() != Path(second["images"]).resolve():
        return ""
    selections = [parse_slice_selection(entry.get("slices", ""), "config: datasets") for entry in (first, second)]
    if None in selections:  # one of them uses the whole stack
        return "every slice"
    common = sorted(set(selections[0]) & set(selections[1]))
    return f"slices {common}" if common else ""
