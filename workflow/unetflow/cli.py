"""Shared plumbing of the ``python -m unetflow.<step>`` entry points."""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Callable

from . import settings
from .errors import InputError

log = logging.getLogger("unetflow")


def run(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a step's ``main`` with logging set up; user errors exit 1 without a traceback."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        main(argv)
    except InputError as error:
        fail(str(error))
    except OSError as error:
        if error.errno not in DISK_FULL:
            raise
        fail(disk_full_message(error))


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full_message(error: OSError) -> str:
    """Name the file being written when the disk (or quota) ran out, and the fix."""
    where = error.filename or "a file of this step"
    return (f"{where}: {error.strerror} while writing it; nothing of this step was kept. Free space on that "
            "disk (or raise the quota), or run the workflow where results/ has room, then rerun")


def fail(message: str) -> None:
    """Log ``message`` once, as the job's last line, and exit 1."""
    log.error("%s", message)
    sys.exit(1)


def add_settings_option(parser: argparse.ArgumentParser, section: str) -> None:
    """``--settings``: the config section ``section`` as JSON; the schema's defaults fill the rest."""
    parser.add_argument("--settings", default="{}", help=f"the config's {section} section as JSON (the schema's "
                        "defaults for missing keys)")


def add_dims_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--dims 2|3``: the config's ``dims`` (slices, or volumes); the schema's default."""
    parser.add_argument("--dims", type=int, choices=(2, 3), default=settings.default("dims"), help=help)


def add_part_options(parser: argparse.ArgumentParser) -> None:
    """``--part K --parts N``: do part K of N of the stack (see :mod:`unetflow.parts`)."""
    parser.add_argument("--part", type=int, default=1, help="the part of the stack to do, 1 to --parts")
    parser.add_argument("--parts", type=int, default=1, help="the parts the stack is split into (jobs)")


def add_dask_options(parser: argparse.ArgumentParser) -> None:
    """``--scheduler`` (the config's ``dask.scheduler``) and ``--workers`` of a Dask step."""
    parser.add_argument("--scheduler", default=settings.section("dask")["scheduler"],
                        help="threads, processes, synchronous or a distributed scheduler's address")
    parser.add_argument("--workers", type=int, default=1)


def add_blocks_option(parser: argparse.ArgumentParser) -> None:
    """``--blocks``: the config's ``blocks`` section as JSON (data larger than memory, block by block)."""
    parser.add_argument("--blocks", default="{}", help="the config's blocks section as JSON (edge, plane_edge, halo; "
                        "the schema's defaults for missing keys)")
