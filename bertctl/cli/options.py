"""Option definitions that several commands share, so each flag reads and behaves the same.

The memory check's flags: `bertctl evaluate` and `predict` use these; `finetune` and
`pretrain run` define the same flags with help that speaks of training.
"""

from __future__ import annotations

from typing import Annotated

import typer

GpuMemory = Annotated[
    str | None,
    typer.Option(
        "--gpu-memory",
        metavar="SIZE",
        help="Check memory against a GPU of SIZE (12GiB, 11.5G, 12000MB) instead of the "
        "free memory of the GPU in use; works on the CPU too.",
    ),
]
AutoFit = Annotated[
    bool,
    typer.Option(
        "--auto-fit", help="If the estimate does not fit, apply the best settings that do."
    ),
]
Force = Annotated[bool, typer.Option("--force", help="Skip the memory check.")]

# Scale out: `finetune` and `pretrain run` launch themselves through torchrun with these.
NprocPerNode = Annotated[
    int | None,
    typer.Option(
        "--nproc-per-node",
        metavar="N",
        help="Train in N processes on this machine (one per GPU; gloo on the CPU), "
        "launched through torchrun.",
        rich_help_panel="Scale out",
    ),
]
Nnodes = Annotated[
    int, typer.Option("--nnodes", help="Machines taking part.", rich_help_panel="Scale out")
]
NodeRank = Annotated[
    int,
    typer.Option(
        "--node-rank", help="This machine's index, 0..nnodes-1.", rich_help_panel="Scale out"
    ),
]
MasterAddr = Annotated[
    str | None,
    typer.Option(
        "--master-addr",
        help="Address of the machine with --node-rank 0 (several machines).",
        rich_help_panel="Scale out",
    ),
]
MasterPort = Annotated[
    int | None,
    typer.Option("--master-port", help="Its port; 29500.", rich_help_panel="Scale out"),
]
