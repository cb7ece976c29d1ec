"""Pretrain BERT on shards from `bertctl pretrain prepare`: masked LM + next sentence prediction.

One run, top to bottom (`pretrain`): processes and device; run folder and settings; data; model
(and the memory check); optimizer and schedule; resume; the loop, with evaluation and
checkpoints; the final model. Google's run_pretraining.py recipe, written afresh:

* **Loss** = masked-LM loss + next-sentence loss. The masked-LM loss is computed as Google's
  model computes it, which is where the speed comes from: the encoder's output is gathered at
  the masked positions (about 20 of 128) and only those vectors go through the prediction head
  (transform, LayerNorm, the decoder tied to the word embeddings, bias), so vocabulary logits
  are computed for 20 positions instead of 128. Its value is Σ(w·CE)/Σw over the batch's masked
  positions (the weights are 0/1: padding predictions are dropped before the head); the NSP loss
  is the mean cross-entropy of `cls.seq_relationship(pooled output)`. `MaskedLMAndNSP` holds this
  and a test proves it equal to transformers' own full-vocabulary loss.
* **Optimizer**: Google's AdamW without bias correction (β 0.9/0.999, ε 1e-6, weight decay 0.01
  except LayerNorm and bias), gradient clipping at global norm 1.0, linear warmup then linear
  decay to 0. `--optimizer lamb` takes LAMB (bertctl.train.optim.LAMB) for large batches.
* **Learning rate** (`--lr`) by default: 5e-5 from scratch (`--config`; run_pretraining.py's
  default), 2e-5 when continuing from a model (`--model`; Google's README demo); with LAMB 20
  times those (1e-3 and 4e-4), as LAMB's step is relative to each tensor's norm.
* **Initialisation from scratch**: Google's, truncated normal (σ = initializer_range, cut at 2σ)
  for every matrix, zeros for biases, ones for LayerNorm scales. Heads a `--model` lacks (the
  MiniLM sentence model has neither MLM nor NSP head) are initialised the same way.
* **Data order**: the training instances form an endless stream of epochs, each epoch a random
  permutation seeded by (seed, epoch); global batch k is items k·B .. (k+1)·B - 1 of the stream.
  So the order depends on the seed and batch size only (never on the number of processes), a
  batch may span two epochs, and the data position of a resumed run is just its step.
* **Processes**: with W processes each takes rows r·B/W .. (r+1)·B/W - 1 of every global batch,
  split into `--grad-accum` micro-batches; the masked-LM loss is normalised by the *global*
  number of masked positions (one all-reduce per step), so 1 process and 2 compute the same
  gradient. Dropout masks come from a generator seeded by (seed, step, rank) at every step: a
  resumed run draws exactly the masks the uninterrupted run drew, and no interruption can leave
  the generators between steps.
* **Dynamic masking** (`--dynamic-masking`, RoBERTa's improvement): epoch 0 trains on the masks
  `prepare` wrote; each later epoch masks every instance anew with Google's rules (bertctl.
  pretraining_data's `mask_tokens`), from the original ids (the stored masked_lm_ids put back at their
  positions) and a generator seeded by (seed, epoch, instance).
* **Evaluation** with Google's metric names (masked_lm_accuracy, masked_lm_loss,
  next_sentence_accuracy, next_sentence_loss): by default on the first `--eval-batches` ×
  `--eval-batch-size` instances of the training data itself (Google's run_pretraining.py
  evaluates on its input files: 100 batches of 8), or with `--holdout N` on the last N instances,
  which are then left out of training. A holdout is no clean test set: `prepare` makes
  `dupe_factor` instances from each document, so held-out instances share text with trained ones.
* **Tokens/s** counts real (non-padding) tokens; each micro-batch is cut to its longest instance.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from bertctl import memory, outputs, paths
from bertctl.errors import BertctlError, UsageError
from bertctl.pretraining_data import (
    PrepareConfig,
    PretrainingDataset,
    Vocabulary,
    derive_seed,
    mask_tokens,
    open_shards,
    vocab_sha256,
)
from bertctl.tokenization import Tokenizer, Vocab
from bertctl.train import distributed, loop, runs
from bertctl.train.config import PretrainConfig, resolve
from bertctl.train.distributed import World
from bertctl.train.encoder import encode
from bertctl.train.modeling import google_init_

SETTINGS = "config.yaml"


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


# Settings whose command-line flag is not --<name with dashes>.
FLAG_NAMES = {"bert_config": "--config"}


def resolve_settings(flags: dict[str, Any], resume: bool) -> PretrainConfig:
    """Built-in defaults < the run's own config.yaml (with --resume) < flags given (not None),
    through the resolver fine-tuning uses: the same type checks and file-and-key messages."""
    path = None
    if resume:
        if not flags.get("out"):
            raise UsageError("--resume needs --out", "pass the folder of the run to continue")
        path = Path(flags["out"]) / SETTINGS
        if not path.is_file():
            raise BertctlError(
                f"--resume: {path} not found", "pass the --out folder of a `pretrain run`"
            )
    cfg, _ = resolve(
        path,
        flags,
        PretrainConfig,
        hint="pass the --out folder of a `bertctl pretrain run`",
        exclusive=(("model", "bert_config"),),
    )
    return cfg


# The command line reads: what to train, where to, how long, then how, then when.
_ARG_ORDER = (
    *("model", "bert_config", "vocab", "out", "steps", "batch_size", "lr", "warmup"),
    *("weight_decay", "max_grad_norm", "optimizer", "precision", "grad_accum"),
    *("grad_checkpointing", "dynamic_masking", "seed", "device", "save_every", "eval_every"),
)


def to_args(cfg: PretrainConfig) -> list[str]:
    """Command-line arguments for `bertctl pretrain run` that rebuild `cfg` (for torchrun)."""
    args = [str(cfg.data)] if cfg.data else []
    by_name = {f.name: f for f in fields(PretrainConfig)}
    names = [*_ARG_ORDER, *(name for name in by_name if name not in _ARG_ORDER)]
    for name in names:
        f = by_name[name]
        value = getattr(cfg, f.name)
        if f.name == "data" or value is None or value is False or value == f.default:
            continue
        if f.name == "device":
            args += ["--cpu"] if value == "cpu" else ["--gpu", str(torch.device(value).index or 0)]
            continue
        flag = FLAG_NAMES.get(f.name, "--" + f.name.replace("_", "-"))
        args += [flag] if value is True else [flag, str(value)]
    return args


def default_lr(optimizer: str, from_scratch: bool) -> float:
    """5e-5 from scratch (run_pretraining.py), 2e-5 continuing (Google's README); LAMB x20."""
    lr = 5e-5 if from_scratch else 2e-5
    return lr * 20 if optimizer == "lamb" else lr


def warmup_steps(warmup: float, total_steps: int) -> int:
    """--warmup as steps: a fraction of `total_steps` below 1, else a number of steps.

    >>> warmup_steps(0.1, 100), warmup_steps(10, 20), warmup_steps(0, 5)
    (10, 10, 0)
    """
    return int(total_steps * warmup) if warmup < 1 else int(warmup)


def default_out(label: str) -> Path:
    return runs.default_out("pretrain", label)


# --------------------------------------------------------------------------------------------
# Data: the order of instances, batches as tensors, dynamic masking
# --------------------------------------------------------------------------------------------


class InstanceStream:
    """The training instances as an endless stream of epochs, each in its own random order.

    Epoch e is `numpy.random.default_rng([seed, e]).permutation(n)`; global batch k is items
    k·B .. (k+1)·B - 1 of the stream: the same for any number of processes.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self._orders: dict[int, np.ndarray] = {}

    def order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            if len(self._orders) >= 2:
                self._orders.pop(min(self._orders))
            self._orders[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._orders[epoch]

    def batch(self, step: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """(epoch, instance index) of each item of global batch `step` (0-based)."""
        positions = np.arange(step * batch_size, (step + 1) * batch_size, dtype=np.int64)
        epochs, offsets = np.divmod(positions, self.n)
        indices = np.empty_like(positions)
        for epoch in np.unique(epochs):
            rows = epochs == epoch
            indices[rows] = self.order(int(epoch))[offsets[rows]]
        return epochs, indices


def remask(
    features: dict[str, np.ndarray],
    epochs: np.ndarray,
    indices: np.ndarray,
    settings: PrepareConfig,
    vocabulary: Vocabulary,
    seed: int,
) -> dict[str, np.ndarray]:
    """Google's masking drawn anew for each instance of a batch whose epoch is 1 or more.

    The unmasked sequence is rebuilt by putting `masked_lm_ids` back at `masked_lm_positions`;
    segment A is the segment-0 part less [CLS] and [SEP]. The generator is seeded by (seed,
    epoch, instance index), so a mask depends on nothing else. Rows of epoch 0 are kept.
    """
    out = {k: np.array(v, copy=True) for k, v in features.items()}
    counts: dict[str, int] = defaultdict(int)
    width = settings.max_predictions
    for row, (epoch, index) in enumerate(zip(epochs.tolist(), indices.tolist(), strict=True)):
        if epoch == 0:
            continue
        length = int(features["input_mask"][row].sum())
        count = int(features["masked_lm_weights"][row].sum())
        ids = features["input_ids"][row, :length].tolist()
        for position, original in zip(
            features["masked_lm_positions"][row, :count].tolist(),
            features["masked_lm_ids"][row, :count].tolist(),
            strict=True,
        ):
            ids[position] = original
        len_a = int((features["segment_ids"][row, :length] == 0).sum()) - 2
        rng = random.Random(derive_seed(seed, epoch, f"remask-{index}"))
        masked, positions, originals = mask_tokens(ids, len_a, settings, vocabulary, rng, counts)
        out["input_ids"][row, :length] = masked
        out["masked_lm_positions"][row] = 0
        out["masked_lm_positions"][row, : len(positions)] = positions
        out["masked_lm_ids"][row] = 0
        out["masked_lm_ids"][row, : len(originals)] = originals
        out["masked_lm_weights"][row] = (np.arange(width) < len(positions)).astype(np.float32)
    return out


def to_tensors(features: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """Google's features as the model's inputs, each sequence cut to the batch's longest."""
    length = max(1, int(features["input_mask"].sum(axis=1).max(initial=1)))
    tensors = {
        "input_ids": features["input_ids"][:, :length].astype(np.int64),
        "input_mask": features["input_mask"][:, :length].astype(np.int64),
        "segment_ids": features["segment_ids"][:, :length].astype(np.int64),
        "masked_lm_positions": features["masked_lm_positions"].astype(np.int64),
        "masked_lm_ids": features["masked_lm_ids"].astype(np.int64),
        "masked_lm_weights": features["masked_lm_weights"].astype(np.float32),
        "next_sentence_labels": features["next_sentence_labels"].astype(np.int64),
    }
    return {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in tensors.items()}


# --------------------------------------------------------------------------------------------
# Model: the loss computed Google's way, Google's initialisation
# --------------------------------------------------------------------------------------------


class MaskedLMAndNSP(torch.nn.Module):
    """BertForPreTraining's two losses, computed where they are read.

    `forward` takes Google's features (batch B, length S, predictions P) and returns sums, so
    that any number of micro-batches and processes add up to the batch's means:

    - mlm_loss: Σ cross-entropy over the real masked positions (weight 1; padding dropped);
    - mlm_correct, mlm_count: argmax hits and the number of those positions;
    - nsp_loss, nsp_correct, nsp_count: the same for next-sentence prediction, per instance.

    The encoder runs on the real tokens and gives the last layer at [CLS] and the masked
    positions only (`encoder.encode`), so the [M, vocab] logits (M ≈ 0.15·B·S) are the only
    vocabulary-sized tensor.
    """

    def __init__(self, model, checkpointing: bool = False) -> None:
        super().__init__()
        self.model = model  # transformers' BertForPreTraining
        self.checkpointing = checkpointing

    def forward(
        self,
        input_ids: torch.Tensor,
        input_mask: torch.Tensor,
        segment_ids: torch.Tensor,
        masked_lm_positions: torch.Tensor,
        masked_lm_ids: torch.Tensor,
        masked_lm_weights: torch.Tensor,
        next_sentence_labels: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        batch = input_ids.shape[0]
        cls = torch.zeros_like(masked_lm_positions[:, :1])
        positions = torch.cat([cls, masked_lm_positions], dim=1)  # [B, 1 + P]
        encoded = encode(
            self.model.bert, input_ids, input_mask, segment_ids, positions, self.checkpointing
        )
        pooled = self.model.bert.pooler(encoded)  # from column 0, [CLS]
        real = masked_lm_weights > 0
        logits = self.model.cls.predictions(encoded[:, 1:][real]).float()  # [M, vocab]
        targets = masked_lm_ids[real]
        mlm = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
        nsp_logits = self.model.cls.seq_relationship(pooled).float()  # [B, 2]
        nsp = torch.nn.functional.cross_entropy(nsp_logits, next_sentence_labels, reduction="sum")
        return {
            "mlm_loss": mlm,
            "mlm_correct": (logits.detach().argmax(-1) == targets).sum(),
            "mlm_count": real.sum(),
            "nsp_loss": nsp,
            "nsp_correct": (nsp_logits.detach().argmax(-1) == next_sentence_labels).sum(),
            "nsp_count": torch.tensor(batch, device=input_ids.device),
        }


@dataclass(frozen=True)
class ModelSource:
    """Where the weights and the vocabulary come from.

    Attributes:
        label: how to name the model in messages and records.
        folder: an HF-format folder to load (None: from scratch).
        config: the architecture (from scratch), else None.
        tokenizer: the vocabulary with the data's casing.
        release: the catalogue entry, when continuing from one of Google's models.
    """

    label: str
    folder: Path | None
    config: Any
    tokenizer: Tokenizer
    release: Any = None


def model_source(cfg: PretrainConfig, manifest: dict[str, Any], reporter) -> ModelSource:
    """The model to continue from (--model) or the architecture to start (--config), with the
    vocabulary checked against the one the data was prepared with."""
    from bertctl.bertconfig import load_config, require_config
    from bertctl.tokenization import bundled_vocab, load_vocab

    data_lower = bool(manifest["tokenizer"]["do_lower_case"])
    want = manifest["tokenizer"]["vocab_sha256"]
    described = manifest["tokenizer"].get("description") or "its vocabulary"
    if cfg.bert_config is not None:
        config = require_config(load_config(cfg.bert_config))
        if cfg.vocab is not None:
            vocab: Vocab = load_vocab(cfg.vocab)
            source = cfg.vocab
        else:
            vocab, source = bundled_vocab(), "the bundled uncased vocab"
        if vocab_sha256(vocab) != want:
            raise BertctlError(
                f"{cfg.data} was prepared with {described}, not {source}",
                "pass --vocab with the vocab.txt the data was prepared with",
            )
        if config.vocab_size < len(vocab):
            raise BertctlError(
                f"{cfg.bert_config}: vocab_size {config.vocab_size} is smaller than the "
                f"vocabulary ({len(vocab):,} tokens)",
                f"set vocab_size to {len(vocab)}",
            )
        label = Path(cfg.bert_config).stem
        return ModelSource(label, None, config, Tokenizer(vocab, data_lower))
    from bertctl.train.modeling import prepare

    if cfg.model is None:
        raise UsageError(
            "no model given",
            "pass --model NAME|DIR to continue from a model, or --config bert_config.json to "
            "start from scratch",
        )
    from bertctl.errors import CasingError

    try:
        prepared = prepare(cfg.model, data_lower, reporter)
    except CasingError:
        casing = "lowercased" if data_lower else "cased"
        raise BertctlError(
            f"{cfg.data} was prepared {casing}, which {cfg.model} is not",
            f"prepare it again with --model {cfg.model}",
        ) from None
    if vocab_sha256(prepared.tokenizer.vocab) != want:
        raise BertctlError(
            f"{cfg.data} was prepared with {described}, not with {prepared.label}'s vocab.txt",
            f"prepare it again with --model {cfg.model}",
        )
    return ModelSource(prepared.label, prepared.folder, None, prepared.tokenizer, prepared.release)


def build_model(source: ModelSource, seed: int, reporter):
    """BertForPreTraining with SDPA attention: loaded (missing heads get Google's init) or new."""
    from transformers import BertConfig as HFBertConfig
    from transformers import BertForPreTraining

    from bertctl.train.modeling import refuse_unloaded

    torch.manual_seed(seed)
    if source.folder is None:
        from bertctl.convert import hf_config

        hf = HFBertConfig(**hf_config(source.config, heads=True, labels=None))
        hf._attn_implementation = "sdpa"
        model = BertForPreTraining(hf)
        google_init_(model, source.config.initializer_range)
        return model
    model, info = BertForPreTraining.from_pretrained(
        source.folder,
        attn_implementation="sdpa",
        use_safetensors=True,
        output_loading_info=True,
        ignore_mismatched_sizes=True,  # heads only: an encoder tensor of another shape is refused
    )
    refuse_unloaded(source.folder, model, info, new=("cls.",), missing=False)
    # a head of another shape starts afresh, as a missing one does
    missing = set(info["missing_keys"]) | {k for k, *_ in info["mismatched_keys"]}
    if missing:
        google_init_(model, model.config.initializer_range, missing)
        heads = sorted({k.split(".")[1] for k in missing if k.startswith("cls.")})
        others = sorted(k for k in missing if not k.startswith("cls."))
        named = {"predictions": "masked-LM head", "seq_relationship": "next-sentence head"}
        what = [named.get(h, h) for h in heads] + others
        reporter.step(f"{source.label} has no {', '.join(what)}: initialised as Google does")
    return model


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def evaluate(
    scorer: MaskedLMAndNSP,
    dataset: PretrainingDataset,
    indices: np.ndarray,
    batch_size: int,
    device: torch.device,
    autocast: torch.dtype | None,
    world: World,
) -> dict[str, float]:
    """Google's four metrics over `indices` (batches shared out among the processes)."""
    scorer.eval()
    totals = torch.zeros(6, dtype=torch.float64)
    with torch.inference_mode():
        for number, start in enumerate(range(0, len(indices), batch_size)):
            if number % world.size != world.rank:
                continue
            inputs = to_tensors(dataset.batch(indices[start : start + batch_size]), device)
            with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                sums = scorer(**inputs)
            keys = ("mlm_loss", "mlm_correct", "mlm_count", "nsp_loss", "nsp_correct", "nsp_count")
            totals += torch.tensor([float(sums[k]) for k in keys], dtype=torch.float64)
    scorer.train()
    mlm_loss, mlm_correct, mlm_count, nsp_loss, nsp_correct, nsp_count = distributed.all_sum(
        totals.tolist(), world, device
    ).tolist()
    return {
        "masked_lm_accuracy": mlm_correct / max(mlm_count, 1),
        "masked_lm_loss": mlm_loss / max(mlm_count, 1),
        "next_sentence_accuracy": nsp_correct / max(nsp_count, 1),
        "next_sentence_loss": nsp_loss / max(nsp_count, 1),
    }


def eval_indices(cfg: PretrainConfig, total: int) -> tuple[np.ndarray, str]:
    """The instances to evaluate on, and a line that says which."""
    if cfg.holdout:
        return np.arange(
            total - cfg.holdout, total
        ), f"the last {cfg.holdout:,} instances (held out)"
    n = min(total, cfg.eval_batches * cfg.eval_batch_size)
    return np.arange(n), f"the first {n:,} training instances (as Google's run_pretraining.py)"


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------


def check_memory(
    cfg: PretrainConfig, config, seq: int, world: World, device, reporter
) -> PretrainConfig:
    """The fine-tuning preflight's check for pretraining (task "pretrain": gathered MLM head):
    on a GPU or with --gpu-memory, refuse (naming settings that fit), --auto-fit, or go on.

    Per process: each trains batch_size / processes instances per step. LAMB's memory is
    counted as Google's optimizer's (two moments and the same kind of temporaries).
    """
    from bertctl.train import preflight

    budget = preflight.budget_for(cfg, device)
    if budget is None:
        return cfg
    if cfg.force:
        reporter.step("Memory check skipped (--force)")
        return cfg
    settings = memory_settings(cfg, seq, world, device)
    need = memory.estimate_settings(config, settings, preflight.ATTENTION, task="pretrain")
    fmt = memory.format_bytes
    if need.total <= budget.bytes:
        reporter.step(f"Memory: {fmt(need.total)} needed of {fmt(budget.bytes)} ({budget.source})")
        return cfg
    found = memory.fit(
        config,
        settings,
        budget.bytes,
        bf16=budget.bf16,
        attention=preflight.ATTENTION,
        task="pretrain",
    )
    # The sequence length is the data's: only the settings this command has can be suggested.
    found = [s for s in found if "max_seq_length" not in s.changes]

    def flags(changes: dict[str, Any]) -> str:
        parts = []
        if "grad_accum" in changes:
            parts.append(f"--grad-accum {changes['grad_accum']}")
        if "precision" in changes:
            parts.append(f"--precision {changes['precision']}")
        if changes.get("grad_checkpointing"):
            parts.append("--grad-checkpointing")
        return " ".join(parts)

    if cfg.auto_fit and found:
        reporter.step(
            f"--auto-fit: {flags(found[0].changes)} ({fmt(found[0].estimate.total)} of "
            f"{fmt(budget.bytes)}; the settings as given need {fmt(need.total)})"
        )
        return replace(cfg, **found[0].changes)
    preflight.report(need, budget, found, reporter)
    message = (
        f"pretraining needs about {fmt(need.total)} of GPU memory per process "
        f"({preflight.describe(settings)}) but {fmt(budget.bytes)} is available ({budget.source})"
    )
    if found:
        hint = (
            f"pass {flags(found[0].changes)} (about {fmt(found[0].estimate.total)}), or "
            "--auto-fit to apply it, or --force to skip this check"
        )
    else:
        hint = "use a GPU with more memory, more processes, a smaller model, or --force"
    raise BertctlError(message, hint)


def memory_settings(cfg: PretrainConfig, seq: int, world: World, device) -> memory.Settings:
    """The memory planner's settings for one process of this run."""
    from bertctl.train import preflight

    return memory.Settings(
        batch_size=cfg.batch_size // world.size,
        max_seq_length=seq,
        precision=preflight.run_precision(cfg.precision, device),
        grad_accum=cfg.grad_accum,
        grad_checkpointing=cfg.grad_checkpointing,
    )


def out_of_memory_error(
    cfg: PretrainConfig, config, seq: int, world: World, device, out: Path, step: int
) -> BertctlError:
    """Fine-tuning's out-of-memory error, with pretraining's next smaller setting: twice the
    micro-batches for the same batch; else gradient checkpointing; else bf16. (The sequence
    length is the data's, and the batch stays as given.)"""
    from bertctl.train import preflight

    settings = memory_settings(cfg, seq, world, device)
    if settings.batch_size % (2 * settings.grad_accum) == 0:
        flags = f" --grad-accum {2 * settings.grad_accum}"
    elif not settings.grad_checkpointing:
        flags = " --grad-checkpointing"
    elif settings.precision == "fp32":
        flags = " --precision bf16"
    else:
        flags = ""
    resume = f"bertctl pretrain run --out {out} --resume{flags}"
    if not flags:
        resume += " (with more processes, or on a GPU with more memory)"
    return preflight.out_of_memory_error(config, settings, "pretrain", device, out, step, resume)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PretrainSummary:
    out: Path
    final: Path
    steps: int
    train_seconds: float
    tokens_per_second: float
    metrics: dict[str, float]
    world_size: int
    main: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def pretrain(cfg: PretrainConfig, reporter, resume: bool = False) -> PretrainSummary:
    """Run one pretraining job (in this process's part of a torchrun group, if any); the run
    folder is locked for the run, so a second `--resume` of it is refused."""
    with distributed.joined(cfg.device, reporter, cfg.out) as (world, device, reporter):
        return _pretrain(cfg, world, device, reporter, resume)


def _pretrain(
    cfg: PretrainConfig, world: World, device: torch.device, reporter, resume: bool
) -> PretrainSummary:
    from bertctl.train.finetune import own_memory, pick_precision
    from bertctl.train.modeling import PreparedModel, quiet_transformers
    from bertctl.train.optim import make_pretraining_optimizer

    quiet_transformers()

    # ---- settings and data -----------------------------------------------------------------
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dataset = _open_data(cfg, world, resume)
    manifest, settings = dataset.manifest, dataset.settings
    total_instances = len(dataset)
    train_instances = total_instances - cfg.holdout
    seq = settings.max_seq_length

    # ---- model source and memory -----------------------------------------------------------
    cfg, arch, source = _model_and_memory(cfg, manifest, seq, world, device, reporter)
    autocast = pick_precision(cfg.precision, device)
    total_steps = cfg.steps or max(1, math.ceil(train_instances / cfg.batch_size))
    lr_peak = cfg.lr or default_lr(cfg.optimizer, source.folder is None)
    cfg = replace(cfg, steps=total_steps, lr=lr_peak)
    warmup = warmup_steps(cfg.warmup, total_steps)

    model = build_model(source, cfg.seed, reporter)  # before the run folder: a refused one has none

    # ---- run folder ---------------------------------------------------------------------------
    if cfg.out is None:  # a new, timestamped folder
        cfg = replace(cfg, out=str(default_out(source.label)))
    runs.check_out(Path(cfg.out), resume, _inputs(cfg))
    out = Path(cfg.out)
    distributed.barrier(world)  # every process has checked the folder before rank 0 writes into it
    if world.main:
        _start_folder(out, cfg, source, world, resume)
    reporter.step(_describe(cfg, source, total_instances, seq, world, warmup))

    # ---- model ------------------------------------------------------------------------------
    if device.type == "cpu":
        own_memory(model)
    model.to(device)
    model.train()
    scorer = MaskedLMAndNSP(model, checkpointing=cfg.grad_checkpointing)

    # ---- optimizer, resume ---------------------------------------------------------------------
    optimizer = make_pretraining_optimizer(model, cfg.optimizer, lr_peak, cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast is torch.float16)
    the_loop = loop.Loop(
        out=out,
        model=model,
        optimizer=optimizer,
        scaler=scaler,
        schedule=loop.Schedule(
            steps=total_steps,
            warmup=warmup,
            lr=lr_peak,
            eval_every=cfg.eval_every or total_steps,
            save_every=cfg.save_every,
            keep_checkpoints=cfg.keep_checkpoints,
            max_grad_norm=cfg.max_grad_norm,
        ),
        forward=lambda step: forward(step),
        evaluate=lambda at: run_eval(at),
        epoch=lambda step: step * cfg.batch_size / train_instances,
        title="Pretraining",
        resume_command=f"bertctl pretrain run --out {out} --resume",
        out_of_memory=lambda step: out_of_memory_error(cfg, arch, seq, world, device, out, step),
        main=world.main,
    )
    start = loop.resume(the_loop, device, reporter) if resume else loop.START
    trainer = distributed.wrap(
        scorer, world, device
    )  # after loading: every process starts alike anyway

    # ---- data order, evaluation set ---------------------------------------------------------
    stream = InstanceStream(train_instances, cfg.seed)
    vocabulary = Vocabulary(source.tokenizer.vocab) if cfg.dynamic_masking else None
    held, eval_source = eval_indices(cfg, total_instances)
    per_process = cfg.batch_size // world.size
    micro = per_process // cfg.grad_accum
    mine = slice(world.rank * per_process, (world.rank + 1) * per_process)

    def run_eval(at: int) -> dict[str, Any] | None:
        """Google's metrics on the held-out instances (none held out: nothing to score)."""
        if not len(held):
            return None
        found = evaluate(scorer, dataset, held, cfg.eval_batch_size, device, autocast, world)
        epoch = round(at * cfg.batch_size / train_instances, 4)
        return eval_record(at, epoch, len(held), eval_source, found)

    # ---- one step: the forward and backward passes of one batch ------------------------------
    def forward(step: int) -> loop.Step:
        # Dropout masks from (seed, step, rank): a resumed run draws the same ones.
        torch.manual_seed(distributed.step_seed(cfg.seed, step, world.rank))
        epochs, indices = stream.batch(step, cfg.batch_size)
        epochs, indices = epochs[mine], indices[mine]
        features = dataset.batch(indices)
        if vocabulary is not None:
            features = remask(features, epochs, indices, settings, vocabulary, cfg.seed)
        # Normalise by the masked positions of the whole batch, over every process.
        local = [float(features["masked_lm_weights"].sum())]
        masked_total = float(distributed.all_sum(local, world, device)[0])
        mlm_part = nsp_part = tokens = 0.0
        for part in range(0, per_process, micro):
            rows = slice(part, part + micro)
            inputs = to_tensors({k: v[rows] for k, v in features.items()}, device)
            last = part + micro >= per_process
            sync = contextlib.nullcontext()
            if world.distributed and not last:
                sync = trainer.no_sync()  # type: ignore[operator]
            with sync:
                with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                    sums = trainer(**inputs)
                mlm = sums["mlm_loss"] / max(masked_total, 1.0)
                nsp = sums["nsp_loss"] / cfg.batch_size
                # DDP averages gradients over the processes: scale back up to the sum.
                scaler.scale((mlm + nsp) * world.size).backward()
            mlm_part += float(mlm.detach())
            nsp_part += float(nsp.detach())
            tokens += float(inputs["input_mask"].sum())
        mlm_loss, nsp_loss, step_tokens = distributed.all_sum(
            [mlm_part, nsp_part, tokens], world, device
        ).tolist()
        loss = mlm_loss + nsp_loss
        return loop.Step(
            loss,
            cfg.batch_size,
            log={"masked_lm_loss": mlm_loss, "next_sentence_loss": nsp_loss, "tokens": step_tokens},
            postfix=f"loss {loss:.4f} (mlm {mlm_loss:.3f} nsp {nsp_loss:.3f})  lr {{lr:.2e}}  "
            "{tokens_per_second:,.0f} tokens/s",
        )

    # ---- the loop, then the final model ---------------------------------------------------------
    trained = loop.train(the_loop, reporter, start, resumed=resume)
    if world.main:
        vocab_holder = PreparedModel(out, source.label, source.tokenizer, source.release)
        _publish(out, model, vocab_holder, trained)
    distributed.barrier(
        world
    )  # no process leaves (and tears down the group) before rank 0 has written
    return PretrainSummary(
        out=out,
        final=out / "final",
        steps=trained.step,
        train_seconds=trained.train_seconds,
        tokens_per_second=trained.tokens / max(trained.train_seconds, 1e-9),
        metrics=dict(trained.history[-1]["metrics"]) if trained.history else {},
        world_size=world.size,
        main=world.main,
    )


def eval_record(step: int, epoch: float, instances: int, data: str, found: dict) -> dict:
    """One evaluation, as metrics.json holds it: the total loss is Google's MLM + NSP."""
    return {
        "step": step,
        "epoch": epoch,
        "instances": instances,
        "data": data,
        "metrics": found,
        "loss": found["masked_lm_loss"] + found["next_sentence_loss"],
    }


def _open_data(cfg: PretrainConfig, world: World, resume: bool) -> PretrainingDataset:
    """The prepared shards, once the settings that split them are known to fit and --out is
    known to be free (before any model is fetched or built)."""
    if cfg.data is None:
        raise UsageError("no data given", "pass the folder made by `bertctl pretrain prepare`")
    if cfg.out is not None:
        runs.check_out(Path(cfg.out), resume, _inputs(cfg))
    dataset = open_shards(cfg.data)
    total_instances = len(dataset)
    if total_instances - cfg.holdout < 1:
        raise UsageError(
            f"--holdout {cfg.holdout} leaves no training instance ({total_instances:,} in all)",
            f"pass a --holdout below {total_instances}",
        )
    if cfg.batch_size % (world.size * cfg.grad_accum):
        raise UsageError(
            f"--batch-size {cfg.batch_size} does not split into {world.size} process(es) x "
            f"{cfg.grad_accum} micro-batch(es)",
            f"pass a multiple of {world.size * cfg.grad_accum}",
        )
    return dataset


def _model_and_memory(cfg: PretrainConfig, manifest, seq: int, world: World, device, reporter):
    """Where the model comes from and its architecture, with the memory check made as early as
    the architecture is known: from --config, a local folder or a run before any download."""
    from bertctl.bertconfig import load_config, require_config

    if cfg.bert_config is not None:
        arch = require_config(load_config(cfg.bert_config))
    else:
        from bertctl.train import preflight

        arch = preflight.model_config(cfg.model) if cfg.model else None
    if arch is not None:
        cfg = check_memory(cfg, arch, seq, world, device, reporter)
    source = model_source(cfg, manifest, reporter)
    if arch is None:  # a Hub model: its config arrived with the download
        arch = require_config(load_config(source.folder / "config.json"))
        cfg = check_memory(cfg, arch, seq, world, device, reporter)
    if seq > arch.max_position_embeddings:
        raise BertctlError(
            f"{cfg.data} holds sequences of {seq} tokens but the model has "
            f"{arch.max_position_embeddings} position embeddings",
            f"prepare the data with --max-seq-length {arch.max_position_embeddings} or less",
        )
    return cfg, arch, source


def _start_folder(out: Path, cfg: PretrainConfig, source, world: World, resume: bool) -> None:
    """The run's settings, its vocabulary (save_final copies it into final/) and run.json."""
    out.mkdir(parents=True, exist_ok=True)
    settings_text = "# bertctl pretrain run settings; continue with: "
    settings_text += f"bertctl pretrain run --out {out} --resume\n"
    saved = cfg.to_dict()
    for key in ("data", "model", "bert_config", "vocab"):
        if saved[key] and paths.expand(saved[key]).exists():
            saved[key] = str(paths.expand(saved[key]).resolve())
    outputs.write_atomic(out / SETTINGS, settings_text + yaml.safe_dump(saved, sort_keys=False))
    outputs.write_atomic(out / "vocab.txt", "\n".join(source.tokenizer.vocab.tokens) + "\n")
    info = {
        "status": "running",
        "kind": "pretrain",
        "model": source.label,
        "model_folder": str(source.folder) if source.folder else None,
        "release": source.release.name if source.release else None,
        "data": str(Path(cfg.data).resolve()),
        "processes": world.size,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if resume and (out / runs.RUN_JSON).is_file():
        before = json.loads((out / runs.RUN_JSON).read_text(encoding="utf-8"))
        info.update(started=before.get("started"), resumed=info["started"])
    outputs.write_json_atomic(out / runs.RUN_JSON, info)


def _publish(out: Path, model, vocab_holder, trained: loop.Trained) -> None:
    """`final/`, Google's eval_results.txt, the accuracy curves and the finished run record."""
    from bertctl.glue import write_eval_results

    step, history = trained.step, trained.history
    metrics = dict(history[-1]["metrics"]) if history else {}
    runs.save_final(out / "final", model, vocab_holder, None, step=step)
    google = {"global_step": step, "loss": history[-1]["loss"] if history else trained.last_loss}
    google.update(metrics)
    write_eval_results(out / "eval_results.txt", google)
    accuracies = [
        {"step": h["step"], "metrics": {k: v for k, v in h["metrics"].items() if "acc" in k}}
        for h in history
    ]
    runs.plot(out, accuracies)
    info = json.loads((out / runs.RUN_JSON).read_text(encoding="utf-8"))
    info.update(
        status="done",
        finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
        steps=step,
        train_seconds=round(trained.train_seconds, 2),
        tokens_per_second=round(trained.tokens / max(trained.train_seconds, 1e-9), 1),
        metrics=metrics,
    )
    outputs.write_json_atomic(out / runs.RUN_JSON, info)


def _describe(cfg: PretrainConfig, source, instances: int, seq: int, world, warmup: int) -> str:
    """The line that says what is about to be trained, on what, and how."""
    where = f" on {world.size} processes" if world.distributed else ""
    return (
        f"Pretraining {source.label} on {instances:,} instances of {seq} tokens ({cfg.data}): "
        f"{cfg.steps:,} steps of {cfg.batch_size}{where}, lr {cfg.lr:g} ({cfg.optimizer}), "
        f"warmup {warmup:,} steps"
    )


def _inputs(cfg: PretrainConfig) -> tuple:
    """What the run reads: its folder may not be, or hold, any of them."""
    return (cfg.data, cfg.model, cfg.bert_config, cfg.vocab)
