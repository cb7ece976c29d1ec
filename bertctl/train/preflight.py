"""The memory check before a training run: refuse, fit, or let it start.

It runs before any data is read or weights are loaded (for a catalogue model, before the
download), when training on a GPU (against its free memory) or when `--gpu-memory SIZE` names a
card to plan for (on any device: the documented way to plan, and to test, without a GPU). When the
estimate does not fit, the run stops with need vs available and the best settings that fit, as
flags; `--auto-fit` applies them instead; `--force` skips the check.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from bertctl import memory, modelref
from bertctl.bertconfig import BertConfig, load_config, require_config
from bertctl.errors import BertctlError
from bertctl.train.config import FinetuneConfig
from bertctl.train.modeling import RUN_MARKER, default_model_spec

# bertctl loads every model with attn_implementation="sdpa".
ATTENTION = "sdpa"


@dataclass(frozen=True)
class Budget:
    """Memory the run may use, where that figure comes from, and whether bf16 is an option."""

    bytes: int
    source: str
    bf16: bool


def check(
    cfg: FinetuneConfig, device, reporter, folder: Path | None = None
) -> tuple[FinetuneConfig, bool]:
    """Check that training fits in memory; returns the settings to train with and whether it
    could check (False when the model's config is not here yet: a Hub model before its download;
    call again with its `folder`).

    Raises:
        BertctlError: the estimate exceeds the budget (and neither --auto-fit nor --force).
    """
    budget = budget_for(cfg, device)
    if budget is None:
        return cfg, True
    if cfg.force:
        reporter.step("Memory check skipped (--force)")
        return cfg, True
    config = model_config(cfg.model or default_model_spec(), folder)
    if config is None:
        return cfg, False
    seq = min(cfg.max_seq_length, config.max_position_embeddings)
    current = replace(
        memory.settings_of(cfg, precision=run_precision(cfg.precision, device)), max_seq_length=seq
    )
    need = memory.estimate_settings(config, current, ATTENTION)
    if need.total <= budget.bytes:
        reporter.step(
            f"Memory: {memory.format_bytes(need.total)} needed of {memory.format_bytes(budget.bytes)} "
            f"({budget.source})"
        )
        return cfg, True
    suggestions = memory.fit(config, current, budget.bytes, bf16=budget.bf16, attention=ATTENTION)
    if cfg.auto_fit and suggestions:
        best = suggestions[0]
        reporter.step(
            f"--auto-fit: {best.flags} ({memory.format_bytes(best.estimate.total)} of "
            f"{memory.format_bytes(budget.bytes)}; the settings as given need "
            f"{memory.format_bytes(need.total)})"
        )
        return replace(cfg, **best.changes), True
    report(need, budget, suggestions, reporter)
    raise refusal(config, current, need, budget, suggestions)


def budget_for(cfg: FinetuneConfig, device) -> Budget | None:
    """--gpu-memory (a card's total, less the CUDA context), else the free memory of the GPU the
    run uses, else None (a CPU run: nothing to check)."""
    on_gpu = device.type == "cuda"
    if cfg.gpu_memory is not None:
        card = memory.parse_size(cfg.gpu_memory, "--gpu-memory")
        return Budget(
            memory.usable(card),
            f"--gpu-memory {cfg.gpu_memory} less {memory.format_bytes(memory.CONTEXT_BYTES)} "
            "for the CUDA context",
            on_gpu and _bf16(device),
        )
    if not on_gpu:
        return None
    from bertctl import gpus

    gpu = gpus.describe(device.index or 0)
    return Budget(gpu.free, f"free on {device} ({gpu.name})", gpu.bf16)


def run_precision(precision: str, device) -> str:
    """The precision the run will use (`auto` resolved as `pick_precision` resolves it)."""
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp32"


def _bf16(device) -> bool:
    from bertctl import gpus

    return gpus.describe(device.index or 0).bf16


def model_config(spec: str, folder: Path | None = None) -> BertConfig | None:
    """The architecture of `--model`, without downloading or converting: None for a Hub model
    that is not downloaded yet. `folder`: an HF-format folder to read instead."""
    if folder is not None:
        return require_config(load_config(folder / "config.json"))
    run = Path(spec).expanduser()
    if (run / RUN_MARKER).is_file():
        final = run / "final" / "config.json"
        return require_config(load_config(final)) if final.is_file() else None
    if spec.startswith("hub:"):
        from bertctl import hub

        local = hub.local_folder(hub.parse(spec)) / "config.json"
        return require_config(load_config(local)) if local.is_file() else None
    return modelref.bert_config(modelref.resolve(spec))


def describe(settings: memory.Settings) -> str:
    """'batch 32 (micro-batch 8 x 4) x 128 tokens, fp32, checkpointing' for messages."""
    batch = f"batch {settings.batch_size}"
    if settings.grad_accum > 1:
        batch += f" (micro-batch {settings.micro_batch} x {settings.grad_accum})"
    extra = ", gradient checkpointing" if settings.grad_checkpointing else ""
    return f"{batch} x {settings.max_seq_length} tokens, {settings.precision}{extra}"


def report(
    need: memory.Estimate,
    budget: Budget,
    suggestions: list[memory.Suggestion],
    reporter,
) -> None:
    """The breakdown and every setting that fits, as lines for the user."""
    fmt = memory.format_bytes
    parts = ", ".join(f"{name} {fmt(value)}" for name, value in need.breakdown())
    reporter.step(f"Memory estimate (peak at the {need.phase}): {parts} = {fmt(need.total)}")
    reporter.step(f"Available: {fmt(budget.bytes)} ({budget.source})")
    if suggestions:
        reporter.step("Settings that fit, best first:")
        for s in suggestions:
            reporter.step(f"  {s.flags:<44} {fmt(s.estimate.total):>10}  {s.why}")


def refusal(
    config: BertConfig,
    current: memory.Settings,
    need: memory.Estimate,
    budget: Budget,
    suggestions: list[memory.Suggestion],
) -> BertctlError:
    """One line: need vs available, and the flags to pass."""
    fmt = memory.format_bytes
    message = (
        f"training needs about {fmt(need.total)} of GPU memory ({describe(current)}) "
        f"but {fmt(budget.bytes)} is available ({budget.source})"
    )
    if suggestions:
        best = suggestions[0]
        hint = (
            f"pass {best.flags} (about {fmt(best.estimate.total)}), or --auto-fit to apply it, "
            "or --force to skip this check"
        )
        return BertctlError(message, hint)
    smallest = replace(
        current,
        grad_accum=current.batch_size,
        grad_checkpointing=True,
        precision="bf16" if budget.bf16 else current.precision,
    )
    floor = memory.estimate_settings(config, smallest, ATTENTION).total
    card = fmt(floor + memory.CONTEXT_BYTES)
    return BertctlError(
        message,
        f"no settings fit: even a micro-batch of 1 with gradient checkpointing needs about "
        f"{fmt(floor)}; use a GPU with at least {card} (try bertctl plan MODEL --gpu-memory SIZE), "
        "a smaller model, or --force to skip this check",
    )


def out_of_memory(cfg: FinetuneConfig, device, folder: Path, out: Path, step: int) -> BertctlError:
    """The error for a run that ran out of GPU memory: the estimate vs what happened, the
    checkpoint kept, and the settings to resume with (half the micro-batch, same effective batch;
    else gradient checkpointing; else bf16 or a shorter sequence)."""
    import torch

    from bertctl.train import runs

    fmt = memory.format_bytes
    config = model_config(str(folder), folder)
    assert config is not None
    settings = replace(
        memory.settings_of(cfg, precision=run_precision(cfg.precision, device)),
        max_seq_length=min(cfg.max_seq_length, config.max_position_embeddings),
    )
    predicted = memory.estimate_settings(config, settings, ATTENTION)
    peak = torch.cuda.max_memory_allocated(device)
    card = torch.cuda.get_device_properties(device).total_memory
    latest = runs.latest_checkpoint(out)
    kept = f"checkpoint {latest.name} is in {out}" if latest else "no checkpoint was written yet"
    flags = _smaller(settings)
    return BertctlError(
        f"out of GPU memory at step {step} on {device} ({fmt(card)}): "
        f"{fmt(peak)} was allocated at the peak (torch.cuda.max_memory_allocated) where "
        f"{fmt(predicted.allocated)} was estimated for {describe(settings)}; {kept}",
        f"resume with: bertctl finetune --out {out} --resume {flags}",
    )


def _smaller(s: memory.Settings) -> str:
    """Flags for the next smaller setting after an out-of-memory error."""
    if s.batch_size % (2 * s.grad_accum) == 0:
        return f"--batch-size {s.batch_size} --grad-accum {2 * s.grad_accum}"
    if not s.grad_checkpointing:
        return f"--batch-size {s.batch_size} --grad-accum {s.grad_accum} --grad-checkpointing"
    if s.precision == "fp32":
        return f"--batch-size {s.batch_size} --grad-accum {s.grad_accum} --precision bf16"
    return f"--batch-size {s.batch_size} --grad-accum {s.grad_accum} --max-seq-length {max(64, s.max_seq_length // 2)}"
