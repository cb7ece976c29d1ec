"""The memory check before a training run or an evaluation: refuse, fit, or let it start.

It runs before any data is read or weights are loaded (for a catalogue model, before the
download), when the run uses a GPU (against its free memory) or when `--gpu-memory SIZE` names a
card to plan for (on any device: the documented way to plan, and to test, without a GPU). When the
estimate does not fit, the run stops with need vs available and the best settings that fit, as
flags; `--auto-fit` applies them instead; `--force` skips the check. `check` serves
`bertctl finetune`, `check_inference` serves `bertctl evaluate` and `predict`; both end in
`settle`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bertctl import memory, modelref, paths
from bertctl.bertconfig import BertConfig, load_config, require_config
from bertctl.errors import BertctlError, UsageError
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
    best = settle(
        need,
        budget,
        lambda: memory.fit(config, current, budget.bytes, bf16=budget.bf16, attention=ATTENTION),
        cfg.auto_fit,
        reporter,
        lambda found: refusal(config, current, need, budget, found),
    )
    return (replace(cfg, **best.changes) if best else cfg), True


def check_inference(
    spec: str,
    settings: memory.InferenceSettings,
    device,
    reporter,
    *,
    gpu_memory: str | None,
    auto_fit: bool,
    force: bool,
    what: str = "evaluation",
    folder: Path | None = None,
) -> tuple[dict[str, Any], bool]:
    """`check` for `bertctl evaluate` and `predict`: does a forward pass without gradients fit?

    Args:
        spec: the model (a run folder, model folder, catalogue name or hub:ORG/NAME).
        settings: the eval batch, sequence length, precision (`auto` allowed) and labels.
        device: the torch device the model will run on.
        gpu_memory, auto_fit, force: the flags of the same names.
        what: "evaluation" or "prediction", for the error message.
        folder: an HF-format folder to read the architecture from (a Hub model, once downloaded).

    Returns:
        The changes --auto-fit made (`batch_size`, `precision`, `max_seq_length`; empty when
        none), and whether it could check (False when the model's config is not here yet).

    Raises:
        BertctlError: the estimate exceeds the budget (and neither --auto-fit nor --force).
    """
    budget = budget_of(gpu_memory, device)
    if budget is None:
        return {}, True
    if force:
        reporter.step("Memory check skipped (--force)")
        return {}, True
    config = model_config(spec, folder)
    if config is None:
        return {}, False
    current = replace(
        settings,
        precision=run_precision(settings.precision, device),
        max_seq_length=min(settings.max_seq_length, config.max_position_embeddings),
    )
    need = memory.estimate_settings(config, current, ATTENTION)
    best = settle(
        need,
        budget,
        lambda: memory.fit(config, current, budget.bytes, bf16=budget.bf16, attention=ATTENTION),
        auto_fit,
        reporter,
        lambda found: inference_refusal(config, current, need, budget, found, what),
    )
    return (dict(best.changes) if best else {}), True


def check_flags(gpu_memory: str | None, auto_fit: bool, force: bool) -> None:
    """Usage errors in the memory flags, before anything else is done."""
    if auto_fit and force:
        raise UsageError("--auto-fit and --force both given; pass one")
    if gpu_memory is not None:
        memory.parse_size(gpu_memory, "--gpu-memory")


def settle(
    need: memory.Estimate | memory.InferenceEstimate,
    budget: Budget,
    find: Callable[[], list[memory.Suggestion]],
    auto_fit: bool,
    reporter,
    refuse: Callable[[list[memory.Suggestion]], BertctlError],
) -> memory.Suggestion | None:
    """The end of every check: None when `need` fits the budget; else, with --auto-fit, the best
    of the settings `find` returns; else the breakdown and those settings are shown and the
    error `refuse` makes of them is raised."""
    fmt = memory.format_bytes
    if need.total <= budget.bytes:
        reporter.step(f"Memory: {fmt(need.total)} needed of {fmt(budget.bytes)} ({budget.source})")
        return None
    suggestions = find()
    if auto_fit and suggestions:
        best = suggestions[0]
        reporter.step(
            f"--auto-fit: {best.flags} ({fmt(best.estimate.total)} of {fmt(budget.bytes)}; "
            f"the settings as given need {fmt(need.total)})"
        )
        return best
    report(need, budget, suggestions, reporter)
    raise refuse(suggestions)


def budget_for(cfg: FinetuneConfig, device) -> Budget | None:
    """The budget for a run configured by `cfg` (its `gpu_memory`): see `budget_of`."""
    return budget_of(cfg.gpu_memory, device)


def budget_of(gpu_memory: str | None, device) -> Budget | None:
    """--gpu-memory (a card's total, less the CUDA context), else the free memory of the GPU the
    run uses, else None (a CPU run: nothing to check)."""
    on_gpu = device.type == "cuda"
    if gpu_memory is not None:
        card = memory.parse_size(gpu_memory, "--gpu-memory")
        return Budget(
            memory.usable(card),
            f"--gpu-memory {gpu_memory} less {memory.format_bytes(memory.CONTEXT_BYTES)} "
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
    run = paths.expand(spec)
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
    need: memory.Estimate | memory.InferenceEstimate,
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


def inference_refusal(
    config: BertConfig,
    current: memory.InferenceSettings,
    need: memory.InferenceEstimate,
    budget: Budget,
    suggestions: list[memory.Suggestion],
    what: str = "evaluation",
) -> BertctlError:
    """`refusal` for evaluate and predict: need vs available, and the flags to pass."""
    fmt = memory.format_bytes
    message = (
        f"{what} needs about {fmt(need.total)} of GPU memory (batch {current.batch_size} x "
        f"{current.max_seq_length} tokens, {current.precision}) but {fmt(budget.bytes)} is "
        f"available ({budget.source})"
    )
    if suggestions:
        best = suggestions[0]
        return BertctlError(
            message,
            f"pass {best.flags} (about {fmt(best.estimate.total)}), or --auto-fit to apply it, "
            "or --force to skip this check",
        )
    smallest = replace(
        current, batch_size=1, precision="bf16" if budget.bf16 else current.precision
    )
    floor = memory.estimate_settings(config, smallest, ATTENTION)
    return BertctlError(
        message,
        f"no settings fit: even a batch of 1 needs about {fmt(floor.total)} (the weights alone "
        f"{fmt(floor.weights)}); use a GPU with at least {fmt(floor.total + memory.CONTEXT_BYTES)}, "
        "a smaller model, or --force to skip this check",
    )


def out_of_memory(cfg: FinetuneConfig, device, folder: Path, out: Path, step: int) -> BertctlError:
    """The error for a fine-tuning run that ran out of GPU memory, with the settings to resume
    with (half the micro-batch, same effective batch; else gradient checkpointing; else bf16 or
    a shorter sequence)."""
    config = model_config(str(folder), folder)
    assert config is not None
    settings = replace(
        memory.settings_of(cfg, precision=run_precision(cfg.precision, device)),
        max_seq_length=min(cfg.max_seq_length, config.max_position_embeddings),
    )
    resume = f"bertctl finetune --out {out} --resume {_smaller(settings)}"
    return out_of_memory_error(config, settings, "classify", device, out, step, resume)


def out_of_memory_error(
    config: BertConfig,
    settings: memory.Settings,
    task: str,
    device,
    out: Path,
    step: int,
    resume: str,
) -> BertctlError:
    """What a run that ran out of GPU memory at `step` says: the peak against the estimate for
    `settings`, the checkpoint kept in `out`, and the `resume` command (fine-tuning and
    pretraining alike)."""
    import torch

    from bertctl.train import runs

    fmt = memory.format_bytes
    predicted = memory.estimate_settings(config, settings, ATTENTION, task=task)
    peak = torch.cuda.max_memory_allocated(device)
    card = torch.cuda.get_device_properties(device).total_memory
    latest = runs.latest_checkpoint(out)
    kept = f"checkpoint {latest.name} is in {out}" if latest else "no checkpoint was written yet"
    return BertctlError(
        f"out of GPU memory at step {step} on {device} ({fmt(card)}): "
        f"{fmt(peak)} was allocated at the peak (torch.cuda.max_memory_allocated) where "
        f"{fmt(predicted.allocated)} was estimated for {describe(settings)}; {kept}",
        f"resume with: {resume}",
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
