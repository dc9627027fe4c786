"""Who this process is in a data-parallel run: the one small object the loop asks.

A run is started by `capcheck train --processes N` (torch's elastic launcher,
the one `torchrun` is), by `torchrun` or by `accelerate launch`: either way
the world comes from the environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT), read by accelerate's `PartialState` (gloo on a
CPU, NCCL on GPUs). A process started without them is a world of one: no
process group, every collective a no-op, so a plain run pays nothing.

The rank decides who writes (nanochat's `print0`): `main_only` wraps a
callback so only rank 0 runs it; the loop never asks `if rank == 0`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from trainer.errors import TrainError


class NotEnoughDevices(TrainError):
    """--processes asks for more GPUs than the machine has (the CLI's exit 5)."""


def world_from_env() -> int:
    """The process count a launcher put in the environment (1: not launched)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise TrainError(None, f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a process count") from None


def main_from_env() -> bool:
    """Whether this process is rank 0 of its world (a lone process is), before the world is joined."""
    return os.environ.get("RANK", "0") == "0"


@dataclass
class Rank:
    index: int = 0
    world: int = 1
    local: int = 0
    state: object = None  # accelerate's PartialState when world > 1

    @property
    def main(self) -> bool:
        return self.index == 0

    @classmethod
    def start(cls, device) -> Rank:
        """Join the world the launcher described (or be alone); `device` picks gloo (CPU) or NCCL."""
        if world_from_env() <= 1:
            return cls()
        import warnings

        from accelerate import PartialState

        with warnings.catch_warnings():  # on a CPU it sets the threads per process itself, and says so
            warnings.filterwarnings("ignore", message="OMP_NUM_THREADS")
            state = PartialState(cpu=device.type == "cpu")
        return cls(state.process_index, state.num_processes, state.local_process_index, state)

    def device(self, device):
        """This process's device: its own GPU (LOCAL_RANK) on CUDA."""
        import torch

        if device.type != "cuda" or self.world == 1:
            return device
        if self.local >= torch.cuda.device_count():
            raise NotEnoughDevices(None, f"process {self.index} wants GPU {self.local}, but torch sees "
                                         f"{torch.cuda.device_count()}")
        torch.cuda.set_device(self.local)
        return torch.device("cuda", self.local)

    def main_only(self, fn: Callable) -> Callable:
        """`fn` on rank 0, a no-op elsewhere: for the console, progress and every file a run writes."""
        return fn if self.main else (lambda *args, **kwargs: None)

    def share(self, items: list) -> list:
        """This process's contiguous share of `items` (accelerate's split; a share may be empty)."""
        if self.world == 1:
            return list(items)
        with self.state.split_between_processes(list(items)) as mine:
            return list(mine)

    def sum(self, tensor):
        """The sum of `tensor` over every process (accelerate's reduce: one all-reduce)."""
        if self.world == 1:
            return tensor
        from accelerate.utils import reduce

        return reduce(tensor, reduction="sum")

    def same_start(self, params: list) -> None:
        """Every process starts from rank 0's weights (accelerate's broadcast), whatever each one's RNG did."""
        if self.world == 1:
            return
        from accelerate.utils import broadcast

        for p in params:
            p.data.copy_(broadcast(p.data.clone(), from_process=0))

    def gather(self, items: list) -> list:
        """Every process's `items`, concatenated in rank order (accelerate's gather_object)."""
        if self.world == 1:
            return list(items)
        from accelerate.utils import gather_object

        return gather_object(list(items))

    def wait(self) -> None:
        """Every process reaches this point before any goes on (after a shared cache is filled)."""
        if self.world > 1:
            self.state.wait_for_everyone()

    def close(self) -> None:
        if self.world > 1:
            self.state.destroy_process_group()
