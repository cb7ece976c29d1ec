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
