"""`capcheck train --processes N`: N local processes, started by torch's elastic launcher.

The launcher is the one `torchrun --standalone` (and `accelerate launch
--multi_gpu`) runs: it picks a free port, gives each child RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT, and stops the others
when one fails. Each child is the same `capcheck train` command without
`--processes`; it reads the world from the environment (`trainer.dist`),
exactly as it does when the user's own `torchrun` or `accelerate launch`
starts it. This process only waits and hands back rank 0's exit status
(or the first failing rank's).
"""

from __future__ import annotations

import logging
import os
import sys
import uuid

from trainer.dist import NotEnoughDevices


def check_devices(processes: int, device: str) -> None:
    """One process per GPU on CUDA; on `device: cpu` the processes share the CPU (gloo)."""
    if device == "cpu":
        return
    import torch

    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found >= processes:
        return
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(found))
    there = f"{found} CUDA GPU(s): {names}" if found else "no CUDA GPU"
    raise NotEnoughDevices(None, f"--processes {processes} needs {processes} CUDA GPUs, torch sees {there}")


def launch(processes: int, argv: list[str]) -> int:
    """Run `python -m verifier.cli *argv` as `processes` ranks; their exit status."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    for name in ("torch.distributed", "torch.distributed.elastic.agent.server.api"):  # its own level, set on import
        logging.getLogger(name).setLevel(logging.ERROR)  # its INFO and WARNING lines are not the user's business
    # Processes sharing a CPU share its cores (as torchrun and accelerate do, but without their warning).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=processes, run_id=uuid.uuid4().hex,
                          rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0, monitor_interval=0.2)
    try:
        elastic_launch(config, sys.executable)("-m", "verifier.cli", *argv)
    except ChildFailedError as exc:
        failures = exc.failures  # rank -> ProcessFailure; rank 0 has already printed why
        first = failures.get(0) or failures[min(failures)]
        return first.exitcode if first.exitcode > 0 else 1
    except (SignalException, KeyboardInterrupt):  # Ctrl-C or a kill: the launcher has stopped the ranks
        return 130
    return 0
