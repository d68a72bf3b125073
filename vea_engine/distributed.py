"""Which samples this process evaluates: rank, world size and a barrier, and the sharding rule.

Under ``accelerate launch`` / ``torchrun`` every rank evaluates
``shard(samples, rank, world)``; a plain ``python -m vea_engine eval`` is rank 0 of 1.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def shard(samples: Sequence[Any], rank: int, world: int) -> list[Any]:
    """The samples rank ``rank`` of ``world`` evaluates: every ``world``-th one from ``rank``.

    Strided (not blocked) so that ranks get similar mixes of easy and hard samples;
    the union over ranks is ``samples`` and the shards are disjoint.
    """
    if not isinstance(world, int) or world < 1:
        raise ValueError(f"shard: world size must be an int >= 1, got {world!r}.")
    if not isinstance(rank, int) or not 0 <= rank < world:
        raise ValueError(f"shard: rank must be an int in 0..{world - 1}, got {rank!r}.")
    return list(samples)[rank::world]


@dataclass(frozen=True)
class DistContext:
    """Rank, world size and a barrier; single-process when not launched distributed."""

    rank: int = 0
    world: int = 1
    state: Any = None  # accelerate.PartialState when distributed

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()

    @property
    def device(self) -> Any:
        """The device accelerate assigned this rank (None when single-process)."""
        return None if self.state is None else self.state.device


def launched_world_size() -> int:
    """``WORLD_SIZE`` set by ``accelerate launch`` / ``torchrun`` (1 when not launched)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def dist_context(cpu: bool | None = None) -> DistContext:
    """Rank and world from accelerate's ``PartialState`` when launched distributed, else ``(0, 1)``.

    Args:
        cpu: force the CPU (gloo) backend; default: when no CUDA device exists.
    """
    if launched_world_size() <= 1:
        return DistContext()
    from datetime import timedelta

    import torch
    from accelerate import PartialState

    if cpu is None:
        cpu = not torch.cuda.is_available()
    # A rank that finishes early waits at the merge barrier for the slowest one: allow long runs.
    state = PartialState(cpu=cpu, timeout=timedelta(hours=12))
    return DistContext(state.process_index, state.num_processes, state)
