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
        "--auto-fit",
        help="If the estimate does not fit, apply the best settings that do.",
        metavar="",
    ),
]
Force = Annotated[bool, typer.Option("--force", help="Skip the memory check.", metavar="")]

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


# The training flags `finetune` and `pretrain run` share: one definition, one behaviour.
Out = Annotated[str | None, typer.Option("--out", "-o", metavar="DIR", help="Run folder.")]
Gpu = Annotated[int | None, typer.Option("--gpu", help="GPU index.")]
Cpu = Annotated[
    bool, typer.Option("--cpu", help="Train on the CPU even if a GPU is present.", metavar="")
]
Seed = Annotated[int | None, typer.Option("--seed", help="Data order, dropout and new weights.")]
Precision = Annotated[
    str | None, typer.Option("--precision", help="auto, fp32, bf16, fp16 (autocast on GPU).")
]
GradAccum = Annotated[
    int | None,
    typer.Option("--grad-accum", help="Split each process's batch into N micro-batches."),
]
GradCheckpointing = Annotated[
    bool | None, typer.Option("--grad-checkpointing/--no-grad-checkpointing", metavar="")
]
Threads = Annotated[
    int | None, typer.Option("--threads", help="CPU threads for torch; default all cores.")
]
SaveEvery = Annotated[
    int | None,
    typer.Option(
        "--save-every",
        help="Checkpoint every N steps; default: fine-tuning at each evaluation, pretraining 1000.",
    ),
]
EvalEvery = Annotated[
    int | None,
    typer.Option(
        "--eval-every",
        help="Evaluate every N steps; default: fine-tuning each epoch, pretraining at the end.",
    ),
]
TrainAutoFit = Annotated[
    bool | None,
    typer.Option(
        "--auto-fit",
        help="If the estimate does not fit, apply the best settings that do.",
        metavar="",
    ),
]
TrainForce = Annotated[
    bool | None, typer.Option("--force", help="Skip the memory check before training.", metavar="")
]
Resume = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue the run in --out with its settings (flags win over them).",
        metavar="",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON.", metavar="")]
