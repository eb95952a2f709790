"""A stack processed as several jobs over disjoint slice ranges that fill one store.

Part ``k`` of ``n`` (1-based) takes a contiguous, balanced range of slices. Every
part opens the shared store in the output's hidden workspace ``.NAME.parts/``, or
creates it there if it is the first (created under a temporary name and renamed,
so two parts never both create it). Each part writes only its own slices, then its
flag ``k-of-n.done``; a killed part leaves no flag and is redone by the next run,
while finished parts are kept. The merge step renames the store to ``NAME`` once
every flag is there: no copy, and nothing at ``NAME`` looks finished before then.
A store left by a run with other settings (its signature differs) is replaced.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import zarr

from .errors import InputError

log = logging.getLogger(__name__)
SIGNATURE = "unetflow-parts"


def slice_range(part: int, parts: int, count: int, step: int = 1) -> range:
    """The slices of part ``part`` (1..``parts``) of a stack of ``count`` slices: balanced runs of
    whole ``step``s (a volume's chunk depth; the last may be shorter)."""
    if not 1 <= part <= parts:
        raise InputError(f"part {part} of {parts}: parts are numbered 1 to {parts}")
    steps = -(-count // step)
    return range(min(count, (part - 1) * steps // parts * step), min(count, part * steps // parts * step))


def workspace(output: Path) -> Path:
    return Path(output).parent / f".{Path(output).name}.parts"


def flag(output: Path, part: int, parts: int) -> Path:
    return workspace(output) / f"{part}-of-{parts}.done"


def shared_store(output: Path, signature: dict, create: Callable[[Path], None]) -> zarr.Group:
    """The store the parts of ``output`` fill, created by ``create(path)`` if no part has yet.

    ``signature`` (JSON-able) says what the store holds (shape, settings, inputs); a
    store with another signature is left from other settings and is replaced.
    """
    store = workspace(output) / "store"
    store.parent.mkdir(parents=True, exist_ok=True)
    wanted = json.loads(json.dumps(signature))
    while True:
        if store.exists():
            try:
                found = zarr.open_group(str(store), mode="r").attrs.get(SIGNATURE)
            except (FileNotFoundError, ValueError):
                found = None  # renamed away by another part meanwhile, or half-removed
            if found == wanted:
                return zarr.open_group(str(store), mode="r+")
            _discard(store, "left by a run with other settings")
            continue
        temporary = store.parent / f".store.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        shutil.rmtree(temporary, ignore_errors=True)
        create(temporary)
        zarr.open_group(str(temporary), mode="r+").attrs[SIGNATURE] = wanted
        try:
            os.rename(temporary, store)
        except OSError as error:
            shutil.rmtree(temporary, ignore_errors=True)
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            continue  # another part created it first: open that one
        log.info("created the shared store %s", store)
        return zarr.open_group(str(store), mode="r+")


def _discard(store: Path, why: str) -> None:
    aside = store.parent / f".stale-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(store, aside)
    except FileNotFoundError:
        return  # another part moved it first
    log.info("replacing %s, %s", store, why)
    shutil.rmtree(aside, ignore_errors=True)


def discard_workspace(output: Path) -> None:
    """Remove the workspace a split run left (the stack is now done as one job)."""
    if workspace(output).exists():
        log.info("removing %s, left by a run in parts", workspace(output))
        shutil.rmtree(workspace(output), ignore_errors=True)


def mark_done(output: Path, part: int, parts: int, done: range | list[int], what: str = "slices") -> None:
    """Write part ``part``'s flag, naming what it did (``done``: its slices, or its blocks)."""
    flag(output, part, parts).write_text(f"{what} {done[0]}-{done[-1]}\n" if len(done) else f"no {what}\n")


def merge(output: Path, parts: int) -> None:
    """Rename the filled store to ``output`` once every part's flag is there."""
    missing = [part for part in range(1, parts + 1) if not flag(output, part, parts).exists()]
    store = workspace(output) / "store"
    if missing or not store.is_dir():
        raise InputError(f"{output}: parts {missing or 'all'} of {parts} are not finished (no flag in "
                         f"{workspace(output)}); rerun the workflow to redo them")
    group = zarr.open_group(str(store), mode="r+")
    del group.attrs[SIGNATURE]
    if output.exists():
        shutil.rmtree(output)
    os.replace(store, output)
    shutil.rmtree(workspace(output), ignore_errors=True)
    log.info("merged %d parts into %s", parts, output)
