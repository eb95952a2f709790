"""Where Dask work runs, and its progress in the log."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager

import dask
from dask.callbacks import Callback

from .errors import InputError
from .progress import LOG_INTERVAL_S

log = logging.getLogger(__name__)
LOCAL_SCHEDULERS = ("threads", "processes", "synchronous")


@contextmanager
def dask_config(scheduler: str, workers: int) -> Iterator[None]:
    """Run the Dask computations inside on ``scheduler``.

    ``threads`` (default), ``processes`` or ``synchronous`` with ``workers``
    workers on this machine, or the address of a running ``distributed``
    scheduler (``tcp://host:8786``), e.g. one started by dask-jobqueue.
    """
    if scheduler in LOCAL_SCHEDULERS:
        with local_pool(scheduler, max(1, workers)) as pool, \
                dask.config.set(scheduler=scheduler, num_workers=max(1, workers), pool=pool):
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


@contextmanager
def local_pool(scheduler: str, workers: int) -> Iterator[Executor | None]:
    """For the ``threads`` scheduler, a thread pool that on leaving waits for the tasks still
    running (Dask's ``processes`` scheduler already does).

    When one task fails, ``dask.compute`` raises at once while the others run
    on; without the wait they would go on writing into an output that the
    failing step has already removed (see ``io.atomic_store``).
    """
    if scheduler != "threads":
        yield None
        return
    pool = ThreadPoolExecutor(workers)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class TaskProgress(Callback):
    """Logs ``desc: done/total unit done`` as the Dask tasks whose key starts with ``prefix`` finish."""

    def __init__(self, *, total: int, desc: str, unit: str, prefix: str):
        super().__init__()
        self.total, self.desc, self.unit, self.prefix = total, desc, unit, prefix
        self.done = 0
        self.last_report = time.monotonic()

    def _posttask(self, key, result, dsk, state, worker_id):
        name = key[0] if isinstance(key, tuple) else key
        if isinstance(name, str) and name.startswith(self.prefix):
            self.done += 1
            if time.monotonic() - self.last_report >= LOG_INTERVAL_S:
                self._report()

    def _finish(self, dsk, state, errored):
        if not errored:
            self._report()

    def _report(self) -> None:
        log.info("%s: %d/%d %s done", self.desc, self.done, self.total, self.unit)
        self.last_report = time.monotonic()


def store_progress(numblocks: tuple[int, ...], desc: str) -> TaskProgress:
    """Progress of a ``dask.array.store``: one task per output chunk, i.e. per slice when
    slices are not tiled."""
    untiled = numblocks[1:] == (1,) * (len(numblocks) - 1)
    return TaskProgress(
        total=math.prod(numblocks), desc=desc, unit="slices" if untiled else "tiles", prefix="store-map"
    )
