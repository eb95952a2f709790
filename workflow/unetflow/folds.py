"""Cross-validation folds: the labelled slices split into contiguous slabs, one model per slab.

A model with ``folds: k`` (``models.<name>.folds``) pools the slices of the ``train_on`` and
``validate_on`` datasets, in that order, and cuts the pool into ``k`` runs of consecutive
slices (neighbouring slices are correlated, so a shuffled split would validate on near
copies of the training data). Fold ``i`` trains a model of its own on every slice but run
``i`` and holds run ``i`` out: it validates that model's training, and the held-out slabs of
all folds together tune the segmentation (each slice predicted by the one model that never
saw it). The name itself is then the ensemble of the fold models (:mod:`unetflow.ensemble`).

Datasets that differ only in their slices (the same stacks and settings) are pooled as one
stack, so a fold's training data is one dataset per stack whatever the config's split of it.
Standard library only: the plan reads this while Snakemake builds the DAG.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .config_checks import parse_slice_selection


@dataclass(frozen=True)
class Fold:
    """One fold of a model: its name and the datasets (name -> config entry) it trains and
    holds out."""

    model: str
    number: int
    train: dict[str, dict]
    held_out: dict[str, dict]


def contiguous_slabs(count: int, k: int) -> list[range]:
    """``k`` runs of consecutive positions covering ``range(count)``, sizes differing by at most one
    (the first ``count % k`` one longer)."""
    if not 1 <= k <= count:
        raise ValueError(f"cannot cut {count} slices into {k} non-empty slabs")
    size, longer = divmod(count, k)
    starts = [number * size + min(number, longer) for number in range(k + 1)]
    return [range(starts[number], starts[number + 1]) for number in range(k)]


def format_slices(indices: list[int]) -> str:
    """A slice selection as the config writes it: ``[0, 1, 2, 6]`` -> ``"0-2,6"``."""
    runs, ordered = [], sorted(indices)
    for index in ordered:
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return ",".join(str(first) if first == last else f"{first}-{last}" for first, last in runs)


def pooled_stacks(names: list[str], datasets: dict[str, dict], count_slices) -> list[tuple[str, dict, list[int]]]:
    """(name, entry, sorted slices) per stack of ``names``: datasets whose entries differ only in
    ``slices`` are one stack, named after the first. ``count_slices(name)`` gives the number of
    slices of a dataset that selects none (all of them)."""
    stacks: dict[str, tuple[str, dict, set[int]]] = {}
    for name in names:
        entry = datasets[name]
        identity = json.dumps({key: value for key, value in entry.items() if key != "slices"}, sort_keys=True)
        selected = parse_slice_selection(entry["slices"], f"config: datasets.{name}.slices")
        indices = set(range(count_slices(name)) if selected is None else selected)
        if identity in stacks:
            stacks[identity][2].update(indices)
        else:
            stacks[identity] = (name, entry, indices)
    return [(name, entry, sorted(indices)) for name, entry, indices in stacks.values()]


def split(model: str, k: int, stacks: list[tuple[str, dict, list[int]]]) -> list[Fold]:
    """The ``k`` folds of ``model`` over the pooled ``stacks`` (:func:`pooled_stacks`): fold ``i``
    holds out the ``i``-th slab of the pool and trains on the rest. A generated dataset is named
    ``<model>-fold<i>-<train|heldout>-<stack>`` and is its stack's entry with the fold's slices."""
    pool = [(stack, index) for stack, (_, _, indices) in enumerate(stacks) for index in indices]
    folds = []
    for number, slab in enumerate(contiguous_slabs(len(pool), k), start=1):
        held = {pool[position] for position in slab}
        parts: dict[str, dict[str, dict]] = {"train": {}, "heldout": {}}
        for stack, (name, entry, indices) in enumerate(stacks):
            for role, chosen in (("train", [i for i in indices if (stack, i) not in held]),
                                 ("heldout", [i for i in indices if (stack, i) in held])):
                if chosen:
                    parts[role][f"{model}-fold{number}-{role}-{name}"] = {**entry, "slices": format_slices(chosen)}
        folds.append(Fold(f"{model}-fold{number}", number, parts["train"], parts["heldout"]))
    return folds
