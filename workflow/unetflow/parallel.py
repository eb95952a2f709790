"""Where Dask work runs, and its progress in the log."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

import dask
from dask.callbacks import Callback

from .errors import InputError

log = logging.getLogger(__name__)
LOCAL_SCHEDULERS = ("threads", "processes", "synchronous")
LOG_INTERVAL_S = 10.0


@contextmanager
def dask_config(scheduler: str, workers: int) -> Iterator[None]:
    """Run the Dask computations inside on ``scheduler``.

    ``threads`` (default), ``processes`` or ``synchronous`` with ``workers``
    workers on this machine, or the address of a running ``distributed``
    scheduler (``tcp://host:8786``), e.g. one started by dask-jobqueue.
    """
    if scheduler in LOCAL_SCHEDULERS:
        with dask.config.set(scheduler=scheduler, num_workers=max(1, workers)):
            yield
        return
    if "://" not in scheduler:
        raise InputError(
            f"dask scheduler {scheduler!r} is unknown; use one of {', '.join(LOCAL_SCHEDULERS)} or the "
            "address of a distributed scheduler such as tcp://host:8786"
        )
    from distributed import Client

    with Client(scheduler) as client:
        log.info("dask: computing on %s (%d workers)", scheduler, len(client.scheduler_info()["workers"]))
        yield


class SliceProgress(Callback):
    """Logs ``desc: done/total`` as the blocks of a ``dask.array.store`` finish.

    Counts the store tasks, one per output chunk; with one chunk per slice (the
    usual layout) that is slices done of the total.
    """

    def __init__(self, numblocks: tuple[int, ...], desc: str):
        super().__init__()
        self.total = math.prod(numblocks)
        self.unit = "slices" if numblocks[1:] == (1,) * (len(numblocks) - 1) else "tiles"
        self.desc = desc
        self.done = 0
        self.last_report = time.monotonic()

    def _posttask(self, key, result, dsk, state, worker_id):
        name = key[0] if isinstance(key, tuple) else key
        if isinstance(name, str) and name.startswith("store-map"):
            self.done += 1
            if time.monotonic() - self.last_report >= LOG_INTERVAL_S:
                self._report()

    def _finish(self, dsk, state, errored):
        if not errored:
            self._report()

    def _report(self) -> None:
        log.info("%s: %d/%d %s done", self.desc, self.done, self.total, self.unit)
        self.last_report = time.monotonic()
