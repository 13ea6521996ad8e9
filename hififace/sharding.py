"""Batch work spread over the processes of `accelerate launch`: each takes its share, one merges.

    accelerate launch --num_processes 4 -m hififace swap --source s.jpg --target folder/ --output out/
    accelerate launch --num_processes 4 -m hififace evaluate --pairs pairs.csv --model M --out eval/

Launched like this, every process gets its own device (`PartialState().device`: one GPU each, or the
CPU) and a contiguous share of the work (`PartialState().split_between_processes`); the outputs go
to the same folder (each file written by exactly one process), and the main process merges what
must be merged (the evaluation's metrics and report, the list of failed files). Started without
`accelerate launch` (or with one process) nothing changes and accelerate is not even imported.

On CPUs, `ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes N` gives N real
processes (gloo); plain `--cpu --num_processes N` runs only one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["gather_lists", "launched_state", "share", "shut_down"]


def launched_state() -> Any | None:
    """Accelerate's `PartialState` when this process is one of several launched together, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # PartialState only sets up CPU processes (gloo) when told so; the launcher says it in this variable
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    return state if state.num_processes > 1 else None


def share(items: Sequence[T], state: Any | None) -> list[T]:
    """This process's contiguous share of `items` (all of them without `state`); shares are disjoint
    and together hold every item once, in order."""
    items = list(items)
    if state is None:
        return items
    with state.split_between_processes(items) as mine:
        return list(mine)


def gather_lists(items: list[T], state: Any | None) -> list[T]:
    """Every process's `items`, concatenated in process order, on every process (a collective call:
    all processes must make it)."""
    if state is None:
        return list(items)
    from accelerate.utils import gather_object

    return list(gather_object(list(items)))


def shut_down() -> None:
    """Wait for every launched process, then tear the process group down (nothing when not launched).

    Call it once, when the process is done: a process that exits with gloo still up can abort
    ("terminate called without an active exception") and fail the whole launch.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
