"""One GPU per job on a machine with several.

``snakemake --resources gpu=4`` lets four GPU jobs run at once, but says nothing
about which card each takes; left alone, all four would use the first. A job
that asks for any GPU (``device: auto`` or ``cuda``) claims the first card no
other job holds: an exclusive lock on ``gpu-N.lock`` in a folder shared by the
user's jobs on this machine, held until the process ends (the kernel releases it
even when the job is killed). Only the cards the job sees count: under SLURM,
``CUDA_VISIBLE_DEVICES`` holds the job's own allocation, so a job never takes a
card of another job's allocation, and a card named explicitly (``cuda:2``) is
used as named.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)
WAIT_S = 2.0
_held: list[IO] = []  # the claimed locks, open for the life of the process


def lock_folder() -> Path:
    """``$UNETFLOW_GPU_LOCKS``, else a per-user folder in the temporary directory."""
    folder = os.environ.get("UNETFLOW_GPU_LOCKS") or Path(tempfile.gettempdir()) / f"unetflow-gpus-{os.getuid()}"
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder)


def claim(count: int) -> int:
    """The index (0 .. ``count``-1) of a visible GPU no other job of this machine holds, waiting
    while all are held; the claim lasts until the process ends."""
    if count <= 1:
        return 0
    folder = lock_folder()
    waited = False
    while True:
        for index in range(count):
            handle = open(folder / f"gpu-{index}.lock", "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            _held.append(handle)
            log.info("claimed GPU %d of the %d visible ones (locks in %s)", index, count, folder)
            return index
        if not waited:
            log.info("all %d visible GPUs are held by other jobs; waiting for one", count)
            waited = True
        time.sleep(WAIT_S)
