"""`capcheck train --processes N`: N local processes, started by torch's elastic launcher.

The launcher is the one `torchrun --standalone` (and `accelerate launch
--multi_gpu`) runs: it picks a free port, gives each child RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT, and stops the others
when one fails. Each child is the same `capcheck train` command without
`--processes`; it reads the world from the environment (`trainer.dist`),
exactly as it does when the user's own `torchrun` or `accelerate launch`
starts it. This process only waits and hands back rank 0's exit status
(or the first failing rank's).

Only rank 0 prints. So that a failure of another rank alone (its GPU out of
memory, a file only it could not read) is not a silent exit status, each
rank writes its one-line error to `rank-N.txt` in the folder named by
CAPCHECK_RANK_ERRORS (the CLI's error printer does, `verifier.cli.console`),
and `launch` hands back the first failing rank's line, unless rank 0
(which also prints its own) left one: the same error is not said twice.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from trainer.dist import NotEnoughDevices

RANK_ERRORS = "CAPCHECK_RANK_ERRORS"  # a folder: rank N writes its error line to rank-N.txt there


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


@dataclass(frozen=True)
class Launched:
    code: int  # rank 0's exit status, else the first failing rank's; 130 when stopped by a signal
    rank: int | None = None  # the failing rank the status is from (None: every rank exited 0)
    error: str | None = None  # that rank's one-line error, when it was not rank 0 (rank 0 printed its own)


def launch(processes: int, argv: list[str]) -> Launched:
    """Run `python -m verifier.cli *argv` as `processes` ranks; how they ended."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # Its lines are not the user's business, its "failed (exitcode: 1) local_rank: 1" included: the failing
    # rank's own error is what `launch` hands back. (Each logger has its own level, set on import.)
    for name in ("torch.distributed", "torch.distributed.elastic.agent.server.api",
                 "torch.distributed.elastic.multiprocessing.api"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # Processes sharing a CPU share its cores (as torchrun and accelerate do, but without their warning).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=processes, run_id=uuid.uuid4().hex,
                          rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0, monitor_interval=0.2)
    with tempfile.TemporaryDirectory(prefix="capcheck-ranks-") as errors:
        os.environ[RANK_ERRORS] = errors  # the children inherit it
        try:
            elastic_launch(config, sys.executable)("-m", "verifier.cli", *argv)
        except ChildFailedError as exc:
            failures = exc.failures  # rank -> ProcessFailure
            exited = sorted(r for r, f in failures.items() if f.exitcode > 0)  # the others were stopped
            rank = exited[0] if exited else min(failures)
            code = failures[rank].exitcode
            # Rank 0 prints its own error (and leaves rank-0.txt): then no other rank's is said twice.
            said = None if (Path(errors) / "rank-0.txt").exists() else _read(Path(errors) / f"rank-{rank}.txt")
            return Launched(code if code > 0 else 1, rank, said)
        except (SignalException, KeyboardInterrupt):  # Ctrl-C or a kill: the launcher has stopped the ranks
            return Launched(130)
        finally:
            os.environ.pop(RANK_ERRORS, None)
    return Launched(0)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:  # it died without a typed error (a crash): its traceback is on stderr
        return None
