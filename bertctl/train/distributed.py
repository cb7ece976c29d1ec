"""Several processes, one training run: launching through torchrun, and what each rank is.

bertctl does not run processes itself: `--nproc-per-node N` re-launches the same command through
torchrun (`python -m torch.distributed.run ... -m bertctl ...`), and a command started by an
outside `torchrun -m bertctl ...` or a scheduler that sets torchrun's variables (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) joins the group those name.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bertctl.errors import BertctlError, UsageError

DEFAULT_MASTER_PORT = 29500


@dataclass(frozen=True)
class World:
    """This process's place among the training processes.

    Attributes:
        rank: this process's index, 0 to size - 1 (rank 0 writes files and prints).
        size: how many processes train together (1: no process group).
        local_rank: this process's index on its own machine (its GPU).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched(environ: Mapping[str, str] | None = None) -> bool:
    """Whether torchrun (or a scheduler acting as it) started this process."""
    environ = os.environ if environ is None else environ
    return "WORLD_SIZE" in environ and "RANK" in environ


def world_from_env(environ: Mapping[str, str] | None = None) -> World:
    """The World torchrun's variables describe; one process when they are absent.

    LOCAL_RANK defaults to 0 when a scheduler sets only RANK and WORLD_SIZE (one process per
    machine).

    >>> world_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    World(rank=1, size=2, local_rank=1)
    >>> world_from_env({})
    World(rank=0, size=1, local_rank=0)
    """
    environ = os.environ if environ is None else environ
    if not launched(environ):
        return World()
    try:
        rank, size = int(environ["RANK"]), int(environ["WORLD_SIZE"])
        local_rank = int(environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise BertctlError(
            f"RANK={environ.get('RANK')!r} WORLD_SIZE={environ.get('WORLD_SIZE')!r} "
            f"LOCAL_RANK={environ.get('LOCAL_RANK')!r} are not whole numbers",
            "start the command through torchrun, or unset these variables",
        ) from None
    if not (size >= 1 and 0 <= rank < size and local_rank >= 0):
        raise BertctlError(
            f"RANK={rank} is outside WORLD_SIZE={size}",
            "start the command through torchrun, or unset these variables",
        )
    return World(rank, size, local_rank)


def torchrun_argv(
    args: Sequence[str],
    nproc_per_node: int,
    nnodes: int = 1,
    node_rank: int = 0,
    master_addr: str | None = None,
    master_port: int | None = None,
) -> list[str]:
    """The argv that runs `bertctl ARGS` in `nproc_per_node` processes on this machine.

    One machine without --master-addr uses torchrun's `--standalone` (a free local port); several
    machines name the first one's address and a port (default 29500) on every machine.

    >>> torchrun_argv(["pretrain", "run", "data"], 2)[1:]  # doctest: +NORMALIZE_WHITESPACE
    ['-m', 'torch.distributed.run', '--nproc-per-node=2', '--nnodes=1', '--standalone',
     '-m', 'bertctl', 'pretrain', 'run', 'data']
    """
    if nproc_per_node < 1:
        raise UsageError(f"--nproc-per-node {nproc_per_node} is out of range", "pass 1 or more")
    if nnodes < 1 or not 0 <= node_rank < nnodes:
        raise UsageError(
            f"--node-rank {node_rank} with --nnodes {nnodes} is out of range",
            "pass --nnodes M (machines) and --node-rank 0..M-1 (this machine's index)",
        )
    if nnodes > 1 and master_addr is None:
        raise UsageError(
            f"--nnodes {nnodes} needs --master-addr",
            "pass the address of the machine with --node-rank 0 (the same on every machine)",
        )
    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc_per_node}",
        f"--nnodes={nnodes}",
    ]
    if master_addr is None:
        argv.append("--standalone")
    else:
        argv += [
            f"--node-rank={node_rank}",
            f"--master-addr={master_addr}",
            f"--master-port={master_port or DEFAULT_MASTER_PORT}",
        ]
    return [*argv, "-m", "bertctl", *args]


def start(world: World, device) -> None:
    """Join the process group (nccl on GPUs, gloo on the CPU); nothing for one process."""
    if not world.distributed:
        return
    import datetime

    import torch.distributed as dist

    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise BertctlError(
                f"RANK and WORLD_SIZE are set but {name} is not",
                "start the command through torchrun, or set MASTER_ADDR and MASTER_PORT",
            )
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(
        backend,
        rank=world.rank,
        world_size=world.size,
        timeout=datetime.timedelta(minutes=30),
        **kwargs,
    )


def stop(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def all_sum(values: Sequence[float], world: World, device):
    """Each value summed over every process, as a float64 tensor on the CPU (one collective)."""
    import torch

    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    if world.distributed:
        import torch.distributed as dist

        dist.all_reduce(tensor)
    return tensor.cpu()


def run_torchrun(argv: Sequence[str]) -> int:
    """Run `argv` (from torchrun_argv) and wait for it; its exit code.

    Ctrl-C reaches torchrun and its workers too (one process group): they checkpoint and stop,
    and this process only waits for them.
    """
    import signal
    import subprocess

    proc = subprocess.Popen(list(argv))
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)


# The flags that launch; the processes torchrun starts get the command line without them.
LAUNCH_FLAGS = ("--nproc-per-node", "--nnodes", "--node-rank", "--master-addr", "--master-port")


def without_launch_flags(args: Sequence[str]) -> list[str]:
    """`args` with the scale-out flags and their values taken out (`--flag V` and `--flag=V`).

    >>> without_launch_flags(["finetune", "mrpc", "--nproc-per-node", "2", "--nnodes=1"])
    ['finetune', 'mrpc']
    """
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in LAUNCH_FLAGS:
            skip = True
        elif not arg.startswith(tuple(f"{flag}=" for flag in LAUNCH_FLAGS)):
            kept.append(arg)
    return kept


def pick_device(spec: str | None):
    """--gpu N / --cpu / default: the first GPU if there is one."""
    import torch

    if spec:
        device = torch.device(spec)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise BertctlError(f"--gpu asked for {spec}, but no CUDA GPU is visible", "pass --cpu")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise BertctlError(
                f"{spec}: only {torch.cuda.device_count()} GPU(s) visible",
                f"pass --gpu 0..{torch.cuda.device_count() - 1}",
            )
        return device
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def run_device(spec: str | None, world: World):
    """--gpu N / --cpu / default; under torchrun each process takes the GPU of its local rank."""
    import torch

    if world.distributed and spec != "cpu" and torch.cuda.is_available():
        if world.local_rank >= torch.cuda.device_count():
            raise BertctlError(
                f"LOCAL_RANK {world.local_rank} but only {torch.cuda.device_count()} GPU(s)",
                "start at most one process per GPU (--nproc-per-node)",
            )
        return torch.device(f"cuda:{world.local_rank}")
    return pick_device(spec)


def barrier(world: World) -> None:
    """Wait for every process (nothing for one)."""
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()


def wrap(module, world: World, device):
    """The module a step runs: DDP around `module` under torchrun, else `module` itself."""
    if not world.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None
    )


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of one process's dropout generator for one step: a resumed run draws the masks
    a straight run drew (each process its own)."""
    from bertctl.pretraining_data import derive_seed

    return derive_seed(seed, step, f"dropout-{rank}") & ((1 << 63) - 1)


@contextlib.contextmanager
def joined(device_spec: str | None, reporter, out) -> Iterator[tuple[World, Any, Any]]:
    """This process's part of a training run: its place in the torchrun group (if any), its
    device, the reporter it prints with (rank 0 alone prints), and the run folder locked while
    the body runs (by rank 0; a second `--resume` is refused). Yields (world, device, reporter).
    """
    import torch

    from bertctl.install import noop_reporter
    from bertctl.train import runs

    world = world_from_env()
    if world.distributed and out is None:
        raise UsageError("--out is needed with several processes", "pass the run folder with --out")
    device = run_device(device_spec, world)
    if world.distributed and device.type == "cuda":
        torch.cuda.set_device(device)
    start(world, device)
    try:
        with runs.locked(out, world.main):
            yield world, device, reporter if world.main else noop_reporter()
    finally:
        stop(world)
