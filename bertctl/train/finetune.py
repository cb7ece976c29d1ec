"""Fine-tune BERT on a GLUE-format task: one training run, top to bottom.

Sections: settings, data and model (`setup`); tokenizing; model and optimizer; one step's
forward and backward passes (`forward`); the loop, which is every task's (`loop.train`:
schedule, update, evaluations, checkpoints, resume, Ctrl-C); the final model and Google's output
files (`publish`).
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from bertctl import glue, metrics, modelref
from bertctl.errors import BertctlError, UsageError
from bertctl.train import data as D
from bertctl.train import distributed, loop, preflight, runs
from bertctl.train.config import FinetuneConfig, small_model_defaults
from bertctl.train.modeling import (
    PreparedModel,
    default_model_spec,
    load_for_task,
    prepare,
    quiet_transformers,
)
from bertctl.train.optim import make_optimizer, steps_for, warmup_for


@dataclass(frozen=True)
class RunSummary:
    out: Path
    final: Path
    metrics: dict[str, float]
    main_metric: str
    steps: int
    train_seconds: float
    examples_per_second: float
    main: bool = True  # False in the processes torchrun started besides rank 0: they print nothing


def pick_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32. `auto` is bf16 on GPUs that support it."""
    if device.type != "cuda":
        if precision in ("bf16", "fp16"):
            raise BertctlError(
                f"--precision {precision} needs a GPU here", "use --precision fp32 on the CPU"
            )
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def make_task(cfg: FinetuneConfig) -> glue.Task:
    """The GLUE task named by `cfg.task`, or the custom task its column settings describe."""
    if cfg.task == "custom":
        if cfg.data is None or cfg.text_a is None or cfg.label_column is None:
            raise BertctlError(
                "the custom task needs --data, --text-a and --label-column",
                "e.g. --data my_task/ --text-a sentence --label-column label",
            )
        task = glue.custom_task(
            cfg.data,
            text_a=_column(cfg.text_a),
            text_b=_column(cfg.text_b) if cfg.text_b else None,
            label=_column(cfg.label_column),
            regression=cfg.regression,
        )
        return task
    return glue.get_task(cfg.task)


def load_task_data(cfg: FinetuneConfig) -> tuple[glue.Task, Path, dict[str, glue.Split]]:
    """The task, its data folder, and the labelled splits (train + dev)."""
    task = make_task(cfg)
    folder = glue.resolve_data_dir(task, cfg.data)
    splits = {
        "train": glue.read_split(
            task, folder, "train", skip_bad_rows=cfg.skip_bad_rows, language=cfg.language
        )
    }
    for name in eval_splits(task):
        splits[name] = glue.read_split(
            task, folder, name, skip_bad_rows=cfg.skip_bad_rows, language=cfg.language
        )
    return task, folder, splits


def _column(value: str) -> str | int:
    return int(value) if value.lstrip("-").isdigit() else value


def eval_splits(task: glue.Task) -> list[str]:
    """MNLI is evaluated on both dev sets (matched, mismatched); the others on dev."""
    if task.name.startswith("mnli"):
        return ["dev_matched", "dev_mismatched"]
    return ["dev"]


def evaluate_features(
    model: torch.nn.Module,
    features: D.Features,
    task: glue.Task,
    batch_size: int,
    device: torch.device,
    autocast: torch.dtype | None,
) -> tuple[torch.Tensor, float | None]:
    """Logits of every example in input order, and the mean loss when labels are known."""
    model.eval()
    lengths = [len(x) for x in features.input_ids]
    batches = D.sequential_batches(lengths, batch_size)
    out: list[torch.Tensor | None] = [None] * len(features)
    total_loss, seen = 0.0, 0
    with torch.inference_mode():
        for batch in batches:
            inputs = {
                k: v.to(device) for k, v in D.collate(features, batch, task.is_regression).items()
            }
            with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                result = model(**inputs)
            logits = result.logits.float().cpu()
            if result.loss is not None:
                total_loss += float(result.loss) * len(batch)
                seen += len(batch)
            for row, i in enumerate(batch):
                out[i] = logits[row]
    model.train()
    return torch.stack(out), (total_loss / seen if seen else None)  # type: ignore[arg-type]


def own_memory(model: torch.nn.Module) -> None:
    """Give every CPU weight of `model` memory of its own, aligned as torch aligns it.

    from_pretrained can leave weights in memory laid out by the safetensors file, at offsets
    its header decides; CPU kernels round the last bits differently on such memory. Copying
    makes a model score the same whether it was just trained or loaded from its folder (and
    whatever folder it started from).
    """
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.device.type == "cpu":
            tensor.data = tensor.data.clone()


def score(task: glue.Task, logits: torch.Tensor, labels: list) -> dict[str, float]:
    """The task's metrics from logits (argmax, or the single regression output)."""
    predictions = logits[:, 0].numpy() if task.is_regression else logits.argmax(-1).numpy()
    return metrics.compute(task, labels, predictions)


def score_split(
    task: glue.Task, split: str, logits: torch.Tensor, labels: list
) -> dict[str, float]:
    """`score`, with MNLI's mismatched dev set named apart: accuracy_mm."""
    found = score(task, logits, labels)
    return metrics.suffixed(found, "_mm") if split == "dev_mismatched" else found


def check_seq_length(max_seq_length: int, explicit: bool, positions: int, reporter) -> int:
    """The sequence length to use: Google refuses a length beyond the model's position table.

    A default of 128 on a model with fewer positions is lowered to fit, with a note; a length
    the user asked for is an error, as in Google's run_classifier.py.
    """
    if max_seq_length <= positions:
        return max_seq_length
    if explicit:
        raise BertctlError(
            f"--max-seq-length {max_seq_length} is longer than the model's "
            f"{positions} position embeddings",
            f"pass --max-seq-length {positions} or less",
        )
    reporter.step(f"max_seq_length lowered to {positions}, the model's position table")
    return positions


def finetune(cfg: FinetuneConfig, explicit: set[str], reporter, resume: bool = False) -> RunSummary:
    """Run one fine-tuning job (in this process's part of a torchrun group, if any) and return
    where it landed and how it scored.

    The run folder is locked for the whole run: a second `--resume` of it is refused at once.
    """
    with distributed.joined(cfg.device, reporter, cfg.out) as (world, device, reporter):
        return _finetune(cfg, explicit, reporter, resume, world, device)


def _finetune(
    cfg: FinetuneConfig, explicit: set[str], reporter, resume: bool, world, device
) -> RunSummary:
    # ---- settings, data and model (checked before anything is written) ----------------------
    run = setup(cfg, explicit, reporter, resume, world, device)
    cfg, device, autocast, task, prepared, model, out = (
        run.cfg,
        run.device,
        run.autocast,
        run.task,
        run.prepared,
        run.model,
        run.out,
    )
    reporter.step(
        f"Tokenizing {task.display} ({', '.join(f'{n} {len(s):,}' for n, s in run.splits.items())})"
    )
    feats = {
        name: D.featurize(split.examples, task, prepared.tokenizer, cfg.max_seq_length)
        for name, split in run.splits.items()
    }
    skipped = {n: len(s.skipped) for n, s in run.splits.items() if s.skipped}
    if skipped:
        reporter.step(f"Skipped malformed rows (--skip-bad-rows): {skipped}")
    train = feats["train"]
    if len(train) == 0:
        raise BertctlError(f"{run.splits['train'].path} has no examples", "check the file")
    lengths = [len(x) for x in train.input_ids]
    batches_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total_steps = cfg.max_steps or max(1, steps_for(len(train), cfg.batch_size, cfg.epochs))
    eval_every = cfg.eval_every or batches_per_epoch

    # ---- model, optimizer -------------------------------------------------------------------
    if cfg.grad_checkpointing:
        model.gradient_checkpointing_enable()
    if device.type == "cpu":
        own_memory(model)
    model.to(device)
    model.train()
    optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, device)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast is torch.float16)

    # ---- one step: the forward and backward passes of one batch ------------------------------
    # Under torchrun each process takes its share of every batch; DDP averages the gradients
    # over the processes, so each share's loss is scaled back up to the whole batch's sum.
    micro = cfg.batch_size // (cfg.grad_accum * world.size)
    epoch_batches: dict[int, list[list[int]]] = {}

    def forward(step: int) -> loop.Step:
        epoch, index = divmod(step, batches_per_epoch)
        if epoch not in epoch_batches:  # the same batches for (seed, epoch): resumes exactly
            epoch_batches.clear()
            epoch_batches[epoch] = D.length_grouped_batches(
                lengths, cfg.batch_size, cfg.seed, epoch
            )
        batch = epoch_batches[epoch][index]
        if world.distributed:  # dropout masks from (seed, step, rank): a resume draws the same
            torch.manual_seed(distributed.step_seed(cfg.seed, step, world.rank))
        share, weight = D.share(batch, world.rank, world.size)
        loss_value = 0.0
        for part in range(0, len(share), micro):
            chunk = share[part : part + micro]
            inputs = {
                k: v.to(device, non_blocking=True)
                for k, v in D.collate(train, chunk, task.is_regression).items()
            }
            last = part + micro >= len(share)
            no_sync = world.distributed and not last  # gradients are summed once, at the end
            with trainer.no_sync() if no_sync else contextlib.nullcontext():
                with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                    loss = trainer(**inputs).loss * (weight * len(chunk) / len(batch))
                scaler.scale(loss * world.size if world.distributed else loss).backward()
            loss_value += float(loss.detach())
        if world.distributed:
            loss_value = float(distributed.all_sum([loss_value], world, device)[0])
        after = (step + 1) / batches_per_epoch
        postfix = f"epoch {after:.2f}  loss {loss_value:.4f}  lr {{lr:.2e}}  "
        return loop.Step(loss_value, len(batch), postfix=postfix + "{examples_per_second:.1f} ex/s")

    # ---- the loop ---------------------------------------------------------------------------
    the_loop = loop.Loop(
        out=out,
        model=model,
        optimizer=optimizer,
        scaler=scaler,
        schedule=loop.Schedule(
            steps=total_steps,
            warmup=warmup_for(total_steps, cfg.warmup),
            lr=cfg.lr,
            eval_every=eval_every,
            save_every=cfg.save_every or eval_every,
            keep_checkpoints=cfg.keep_checkpoints,
            max_grad_norm=cfg.max_grad_norm,
        ),
        forward=forward,
        # Rank 0 scores the dev set alone (the others wait for it at the next gradient sum).
        evaluate=lambda at: (
            run_eval(model, feats, run.splits, task, cfg, device, autocast, at, batches_per_epoch)
            if world.main
            else None
        ),
        epoch=lambda step: step / batches_per_epoch,
        title="Fine-tuning",
        resume_command=f"bertctl finetune --out {out} --resume",
        out_of_memory=lambda step: preflight.out_of_memory(cfg, device, prepared.folder, out, step),
        main=world.main,
    )
    start = loop.resume(the_loop, device, reporter) if resume else loop.START
    trainer = distributed.wrap(model, world, device)  # after loading: all start alike anyway
    trained = loop.train(the_loop, reporter, start, resumed=resume)
    summary = publish(run, trained) if world.main else None
    distributed.barrier(world)  # no process leaves before rank 0 has written
    return summary or RunSummary(
        out, out / "final", {}, task.main_metric, trained.step, 0, 0, False
    )


@dataclass(frozen=True)
class _Run:
    """A fine-tuning run ready to train: settings settled, data read, model loaded, folder made."""

    cfg: FinetuneConfig
    device: torch.device
    autocast: torch.dtype | None
    task: glue.Task
    splits: dict[str, glue.Split]
    prepared: PreparedModel
    model: torch.nn.Module
    out: Path


def setup(cfg: FinetuneConfig, explicit: set[str], reporter, resume: bool, world, device) -> _Run:
    """Settle the settings, read the data, load the model and make the run folder, in the order
    that refuses a bad run before anything slow or anything written."""
    quiet_transformers()
    if cfg.batch_size % (world.size * cfg.grad_accum):
        raise UsageError(
            f"--batch-size {cfg.batch_size} does not split into {world.size} process(es) x "
            f"{cfg.grad_accum} micro-batch(es)",
            f"pass a multiple of {world.size * cfg.grad_accum}",
        )
    # Memory: on a GPU (or for --gpu-memory SIZE) the estimate must fit before anything is read,
    # downloaded or loaded; --auto-fit may change batch, precision, checkpointing or length.
    cfg, memory_checked = _check_memory(cfg, device, reporter, world)
    pick_precision(cfg.precision, device)  # refuses bf16/fp16 on the CPU before any work
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    task, data_dir, splits = load_task_data(cfg)
    modelref.check_name_casing(cfg.model or default_model_spec(), cfg.lowercase)
    inputs = (data_dir, cfg.model)  # a run never lands in (or over) its model or data folder
    if cfg.out:  # checked before the model is fetched or converted, which can take minutes
        runs.check_out(Path(cfg.out), resume, inputs)
    # One process per machine fetches or converts the model; the others then find it done.
    if world.local_rank:
        distributed.barrier(world)
    prepared: PreparedModel = prepare(cfg.model, cfg.lowercase, reporter)
    if not world.local_rank:
        distributed.barrier(world)  # ... and every process has checked --out before it is made
    if not memory_checked:  # a Hub model's config arrived with its download
        cfg, _ = _check_memory(cfg, device, reporter, world, prepared.folder)
    cfg = _fit_to_model(cfg, explicit, prepared, reporter)
    torch.manual_seed(cfg.seed)  # the new classifier's initial weights come from the seed
    model = load_for_task(prepared, task)  # before the run folder: a refused model writes none
    if world.main:
        out = runs.prepare_folder(cfg, task, prepared, resume, inputs)
        runs.save_settings(out, cfg, task, prepared, data_dir)
    else:
        out = Path(cfg.out)
    autocast = pick_precision(cfg.precision, device)
    return _Run(cfg, device, autocast, task, splits, prepared, model, out)


def _check_memory(cfg: FinetuneConfig, device, reporter, world, folder=None):
    """The memory check for one process's share of the batch (`preflight.check`)."""
    if not world.distributed:
        return preflight.check(cfg, device, reporter, folder)
    share = replace(cfg, batch_size=cfg.batch_size // world.size)
    share, checked = preflight.check(share, device, reporter, folder)
    return replace(share, batch_size=share.batch_size * world.size), checked


def _fit_to_model(cfg: FinetuneConfig, explicit: set[str], prepared, reporter) -> FinetuneConfig:
    """Google's settings for a compact model, and a sequence length its positions allow."""
    model_config = json.loads((prepared.folder / "config.json").read_text(encoding="utf-8"))
    tuned = {
        k: v
        for k, v in small_model_defaults(
            model_config["hidden_size"], model_config["num_hidden_layers"]
        ).items()
        if k not in explicit
    }
    if tuned:
        cfg = replace(cfg, **tuned)
        reporter.step(
            "Compact model: "
            + ", ".join(f"{k} {v:g}" for k, v in tuned.items())
            + " (Google tuned its small BERTs over lr 3e-5..3e-4; pass --lr/--epochs to override)"
        )
    seq_length = check_seq_length(
        cfg.max_seq_length,
        "max_seq_length" in explicit,
        model_config.get("max_position_embeddings", 512),
        reporter,
    )
    return replace(cfg, max_seq_length=seq_length) if seq_length != cfg.max_seq_length else cfg


def publish(run: _Run, trained: loop.Trained) -> RunSummary:
    """`final/`, Google's eval_results.txt, the curves and the run record."""
    out, step, history = run.out, trained.step, trained.history
    final = out / "final"
    runs.save_final(final, run.model, run.prepared, run.task, step=step)
    last = history[-1] if history else {}
    final_metrics = dict(last.get("metrics", {}))
    google = {f"eval_{k}": v for k, v in final_metrics.items()}
    # Google's Estimator writes the mean evaluation loss as `loss` (and `eval_loss`); the last
    # training step's loss is run.json's `train_loss`. With no evaluation, the training loss.
    eval_loss = last.get("loss")
    google.update(global_step=step, loss=trained.last_loss if eval_loss is None else eval_loss)
    if eval_loss is not None:
        google["eval_loss"] = eval_loss
    glue.write_eval_results(out / "eval_results.txt", google)
    runs.plot(out, history)
    runs.mark_done(
        out, run.cfg, run.task, run.prepared, final_metrics, step, trained.train_seconds,
        train_loss=trained.last_loss,
    )  # fmt: skip
    return RunSummary(
        out=out,
        final=final,
        metrics=final_metrics,
        main_metric=run.task.main_metric,
        steps=step,
        train_seconds=trained.train_seconds,
        examples_per_second=trained.examples / max(trained.train_seconds, 1e-9),
    )


def run_eval(
    model, feats, splits, task, cfg, device, autocast, step: int, batches_per_epoch: int
) -> dict[str, Any]:
    """Evaluate on every dev split; one record for metrics.json."""
    record: dict[str, Any] = {
        "step": step,
        "epoch": round(step / batches_per_epoch, 4),
        "metrics": {},
    }
    for name in eval_splits(task):
        logits, loss = evaluate_features(
            model, feats[name], task, cfg.eval_batch_size, device, autocast
        )
        record["metrics"].update(score_split(task, name, logits, feats[name].labels))
        record.setdefault("examples", {})[name] = len(feats[name])
        if name != "dev_mismatched":
            record["loss"] = loss
    return record
