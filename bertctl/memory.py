"""Peak GPU memory of training BERT, from the config alone: estimate, largest batch, what fits.

Pure arithmetic (no torch): `bertctl plan`, the fine-tuning and evaluation preflights and the
tests use it on any machine. The model is the one `bertctl finetune` trains: transformers'
BertModel with a sequence-classification head (or Google's pretraining heads), PyTorch autograd,
the caching allocator, and bertctl's optimizers.

What is counted, for a micro-batch of b sequences of length s (hidden h, heads a, intermediate i,
L layers, vocabulary V, P parameters; 16-bit means bf16 or fp16 autocast):

- weights: fp32 master weights (4P) and, under autocast, the 16-bit copy of every matmul weight
  that autocast casts once per forward and the backward keeps until it has used it (2 bytes per
  matmul parameter).
- gradients: fp32, 4P. Without accumulation, the backward frees each layer's activations as it
  writes that layer's gradients, so at the start of the backward (the usual peak) only the head's
  gradients exist; with accumulation the gradients of the earlier micro-batches stay resident.
- optimizer state: Adam's two fp32 moments, 8P (`google` and `adamw` alike). So weights,
  gradients and moments are 16P, the ZeRO paper's figure (`Estimate.model_state`).
- activations: the tensors autograd saves in the forward pass (`layer_activation_bytes`).
- temporaries: what the backward or the optimizer step allocates on top. Google's optimizer runs
  on torch's `_foreach` kernels, which materialise sqrt(v) and m/(sqrt(v)+eps) for every weight at
  once (8 bytes per decayed parameter); `adamw` is torch's fused AdamW on a GPU (none).
- workspace: cuBLAS/cuBLASLt workspaces and the caching allocator's slack (memory it reserves but
  has not handed out: block rounding, fragmentation from dynamic padding).

The CUDA context (~0.5 GiB, kernels and handles) is kept apart (`CONTEXT_BYTES`):
`torch.cuda.max_memory_allocated` excludes it, and so does the free memory a process reads after
creating its own context. `Estimate.allocated` (total less allocator slack) is the figure to set
beside `max_memory_allocated`.

The peak is the largest of three moments of a training step: the start of the backward pass
(every activation saved), the end of the backward pass (every gradient written) and the optimizer
step (moments and their temporaries). Evaluation runs without gradients and needs less: see
`inference_moments` and `estimate_inference`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, overload

from bertctl.bertconfig import BertConfig, count_parameters
from bertctl.errors import BertctlError, UsageError

PRECISIONS = ("fp32", "bf16", "fp16")
OPTIMIZERS = ("google", "adamw")
ATTENTIONS = ("sdpa", "flash", "eager")
TASKS = ("classify", "pretrain")

MiB = 1 << 20
GiB = 1 << 30
# A CUDA 12 context with PyTorch's kernels loaded lazily, cuBLAS and cuDNN handles: 300-600 MiB
# depending on the card and driver (nvidia-smi shows it for a process that allocated nothing).
CONTEXT_BYTES = 512 * MiB
# cuBLAS workspace (PyTorch's default CUBLAS_WORKSPACE_CONFIG: 8 x 4 MiB on Hopper, less on
# older cards) and cuBLASLt's, both taken from the caching allocator.
CUBLAS_BYTES = 64 * MiB
# Memory the caching allocator reserves beyond what tensors hold, as a share of the memory that
# comes and goes every step (activations and temporaries). Dynamic padding varies the shapes.
ALLOCATOR_SLACK = 0.10
# Google's sequence-length ladder, as in its README's out-of-memory table.
SEQ_LENGTHS = (64, 128, 256, 320, 384, 512)

# The largest batch any flag accepts: LAMB's BERT pretraining used 65,536 sequences, the most any
# published BERT recipe uses. Beyond it a value is a typo, and refusing it keeps every search
# over batches (and the accumulation steps that divide one) small.
MAX_BATCH = 1 << 16
# Google's README: the largest batch that fit a 12 GB Titan X with TensorFlow 1.11, fp32, Adam,
# by (layers, hidden, heads, intermediate) and sequence length (0: not even one sequence).
GOOGLE_2018 = {
    (12, 768, 12, 3072): dict(zip(SEQ_LENGTHS, (64, 32, 16, 14, 12, 6), strict=True)),
    (24, 1024, 16, 4096): dict(zip(SEQ_LENGTHS, (12, 6, 2, 1, 0, 0), strict=True)),
}


# --------------------------------------------------------------------------------------------
# Parameters by role


@dataclass(frozen=True)
class ParamCounts:
    """Parameters of the trained model, split by how training treats them.

    Attributes:
        total: every trainable parameter (the encoder, pooler and the task's head).
        matmul: weights that run through a matmul, which autocast copies to 16 bits.
        no_decay: biases and LayerNorm parameters (no weight decay, so Google's optimizer makes
            no temporaries for them).
        layer: one encoder layer.
        head: the pooler and the task's head (their gradients come first in the backward).
        word_embeddings: the V x h table, whose dense gradient the embedding backward writes.
    """

    total: int
    matmul: int
    no_decay: int
    layer: int
    head: int
    word_embeddings: int


def param_counts(config: BertConfig, task: str = "classify", num_labels: int = 2) -> ParamCounts:
    """Count the parameters of BERT with a classifier (`classify`) or Google's MLM+NSP heads.

    >>> from bertctl.bertconfig import BertConfig
    >>> param_counts(BertConfig(vocab_size=30522, type_vocab_size=2)).total
    109483778
    """
    _check_task(task)
    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    layer_matmul = 4 * h * h + 2 * h * i
    layer_no_decay = (3 * h + h + i + h) + 4 * h  # biases, then two LayerNorms
    layer = layer_matmul + layer_no_decay
    pretrain = task == "pretrain"
    total = count_parameters(config, heads=pretrain)
    matmul = config.num_hidden_layers * layer_matmul + h * h  # + pooler
    no_decay = 2 * h + config.num_hidden_layers * layer_no_decay + h
    head = h * h + h
    if pretrain:
        # MLM transform (dense + LayerNorm), output bias; the decoder is tied to the word
        # embeddings, which autocast copies like any matmul weight. NSP: 2 x h + 2.
        matmul += h * h + v * h + 2 * h
        no_decay += h + 2 * h + v + 2
        head += h * h + 3 * h + v + 2 * h + 2
    else:
        total += num_labels * h + num_labels
        matmul += num_labels * h
        no_decay += num_labels
        head += num_labels * h + num_labels
    return ParamCounts(total, matmul, no_decay, layer, head, v * h)


# --------------------------------------------------------------------------------------------
# Activations


def layer_activation_bytes(
    config: BertConfig, batch: int, seq: int, precision: str = "fp32", attention: str = "sdpa"
) -> int:
    """Bytes one encoder layer saves for its backward pass, in the manner of Korthikanti et al.

    Korthikanti et al. (2022) count s·b·h·(34 + 5·a·s/h) bytes per layer for 16-bit training with
    one-byte dropout masks. Counting the same way what transformers' BertLayer saves under
    PyTorch autograd, with p the bytes of an activation (4 for fp32, 2 under autocast):

    =========================================  ==================  ===========  ==========
    tensor (saved by)                           shape               fp32 bytes   autocast
    =========================================  ==================  ===========  ==========
    layer input x (Q, K, V linears)             b·s·h               4            3 x 2 (1)
    Q, K, V (attention)                         3 x b·s·h           3 x 4        3 x 2
    attention output O (output dense)           b·s·h               4            2
    dropout mask after attention                b·s·h               1            1
    residual sum (LayerNorm 1) (2)              b·s·h               4            4
    LayerNorm 1 output (intermediate dense)     b·s·h               4            2 (1)
    intermediate output (GELU)                  b·s·i               4            2
    GELU output (output dense)                  b·s·i               4            2
    dropout mask after the MLP                  b·s·h               1            1
    residual sum (LayerNorm 2) (2)              b·s·h               4            4
    LayerNorm mean and 1/std, twice             4 x b·s             4            4
    =========================================  ==================  ===========  ==========

    so s·b·h·(34 + 8·i/h) bytes in fp32 (66·sbh for i = 4h: Korthikanti's 34 with every 16-bit
    tensor doubled) and s·b·h·(26 + 4·i/h) = 42·sbh under autocast, plus 16·b·s for the
    LayerNorm statistics. (1) autocast casts x for each of the three linears separately and
    caches only weight casts, so three 16-bit copies are saved, and LayerNorm's fp32 output is
    saved as its 16-bit cast. (2) a 16-bit sublayer output plus the fp32 residual is fp32, and
    LayerNorm runs in fp32 under autocast.

    Attention scores (the 5·a·s/h term):

    - `eager` (transformers' eager attention, like Google's TensorFlow code) saves the softmax
      output (fp32 under autocast too, softmax being an fp32 op), the dropout mask (1 byte) and
      the dropped-out probabilities (p bytes): (9 in fp32, 7 under autocast)·b·a·s².
    - `sdpa` (memory-efficient or flash kernels; bertctl's default) saves none of these, only the
      log-sum-exp (fp32, b·a·s, s rounded up to 32) and, when the batch is padded, the additive
      mask that SDPA makes from the boolean one in every layer: b·s²·p.
    - `flash`: the log-sum-exp only (flash attention runs unpadded, with no mask).

    Dropout with probability 0 saves no mask and no second copy.

    >>> from bertctl.bertconfig import BertConfig
    >>> base = BertConfig(vocab_size=30522, type_vocab_size=2)
    >>> layer_activation_bytes(base, 1, 128, "fp32", "flash") // (128 * 768)
    66
    """
    _check(precision, PRECISIONS, "precision")
    _check(attention, ATTENTIONS, "attention")
    b, s, h, a, i = _dims(config, batch, seq)
    p = _act_bytes(precision)
    hidden_mask = 1 if config.hidden_dropout_prob > 0 else 0
    x_bytes = 4 if p == 4 else 3 * p
    per_sbh = x_bytes + 3 * p + p + 2 * hidden_mask + 2 * 4 + p
    total = b * s * h * per_sbh + b * s * i * 2 * p + 4 * b * s * 4
    if attention == "eager":
        if config.attention_probs_dropout_prob > 0:
            per_score = 4 + 1 + p  # softmax output, mask, dropped-out probabilities
        else:
            per_score = 4 + (p if p != 4 else 0)  # softmax output (and its 16-bit cast)
        total += per_score * b * a * s * s
    else:
        total += 4 * b * a * _round_up(s, 32)
        if attention == "sdpa":
            total += p * b * s * s
    return total


def activation_bytes(
    config: BertConfig,
    batch: int,
    seq: int,
    precision: str = "fp32",
    attention: str = "sdpa",
    grad_checkpointing: bool = False,
    task: str = "classify",
    max_predictions: int | None = None,
) -> int:
    """Every activation saved at the end of the forward pass: embeddings, layers, head.

    Embeddings save the LayerNorm input (4·sbh), its statistics, the dropout mask and the token
    and segment ids. With gradient checkpointing each layer keeps only its input (fp32, 4·sbh)
    and the backward recomputes one layer at a time, whose activations are counted once.

    The classification head keeps the last hidden states alive in fp32 (the pooler saves a view of
    the first token); under autocast it saves a 16-bit copy of the first token only. Google's
    pretraining gathers `max_predictions` masked positions per sequence (`max_predictions_per_seq`)
    before the MLM head: the gathered states through the transform (dense, GELU, LayerNorm), and
    the fp32 log-softmax over the vocabulary, b·P·V·4 bytes.
    """
    _check_task(task)
    b, s, h, v = batch, seq, config.hidden_size, config.vocab_size
    p = _act_bytes(precision)
    mask = 1 if config.hidden_dropout_prob > 0 else 0
    embeddings = b * s * h * (4 + mask) + 2 * b * s * 4 + 2 * b * s * 8 + s * 8
    layer = layer_activation_bytes(config, batch, seq, precision, attention)
    if grad_checkpointing:
        layers = config.num_hidden_layers * 4 * b * s * h + layer
    else:
        layers = config.num_hidden_layers * layer
    head = (4 * b * s * h if p == 4 else 0) + 4 * b * h * 4  # hidden states view; pooler, logits
    if task == "pretrain":
        n = b * _predictions(seq, max_predictions)
        head += n * h * ((4 + 4 + 4 + 4) if p == 4 else (2 + 2 + 4 + 2)) + n * v * 4
    return embeddings + layers + head


def backward_temporary_bytes(
    config: BertConfig,
    batch: int,
    seq: int,
    precision: str = "fp32",
    attention: str = "sdpa",
    task: str = "classify",
    max_predictions: int | None = None,
) -> int:
    """The largest set of gradient buffers alive at once inside the backward of one layer or head.

    MLP: the gradients of the GELU's output and input (2·b·s·i·p) and of the fp32 residual
    stream in and out (2·sbh·4). Eager attention: the gradients of the probabilities and the
    scores (2·b·a·s²·4). SDPA: dQ, dK, dV, dO (4·sbh·p) and an fp32 dQ accumulator. Plus the
    largest weight gradient before it lands in `.grad` (h·i, in p bytes and then fp32). The MLM
    head: the gradients of the log-softmax output (fp32) and of the logits (b·P·V·(4 + p)).
    """
    b, s, h, a, i = _dims(config, batch, seq)
    p = _act_bytes(precision)
    residual = 2 * b * s * h * 4
    mlp = 2 * b * s * i * p + residual
    if attention == "eager":
        attn = 2 * b * a * s * s * 4 + residual
    else:
        attn = 4 * b * s * h * p + b * s * h * 4 + residual
    weight_grad = h * i * (4 + (p if p != 4 else 0))
    temp = max(mlp, attn) + weight_grad
    if task == "pretrain":
        n = b * _predictions(seq, max_predictions)
        temp = max(temp, n * config.vocab_size * (4 + p))
    return temp


def _predictions(seq: int, max_predictions: int | None) -> int:
    """Google's max_predictions_per_seq: 20 at 128, 80 at 512 (15% of the tokens, rounded up to
    a multiple of 4), unless given."""
    if max_predictions is not None:
        return max_predictions
    return _round_up(math.ceil(0.15 * seq), 4)


# --------------------------------------------------------------------------------------------
# The estimate


@dataclass(frozen=True)
class Estimate:
    """Peak GPU memory of one training step, in bytes, broken down as it stands at the peak.

    Attributes:
        batch: sequences per forward pass (the micro-batch).
        seq: sequence length.
        precision, optimizer, attention, grad_checkpointing, task, grad_accum: the settings.
        params: trainable parameters.
        weights: fp32 weights, plus autocast's 16-bit copies when the peak is in the backward.
        gradients: fp32 gradients alive at the peak.
        optimizer_state: Adam's moments.
        activations: saved activations alive at the peak (none at the optimizer step).
        temporaries: backward buffers or optimizer temporaries at the peak.
        workspace: cuBLAS workspaces plus `slack`.
        slack: the caching allocator's reserve beyond live tensors.
        phase: "backward (start)", "backward (end)" or "optimizer step".
        saved_activations: every activation saved by the forward pass, whatever the phase.
        context: the CUDA context, outside `total`.
    """

    batch: int
    seq: int
    precision: str
    optimizer: str
    attention: str
    grad_checkpointing: bool
    task: str
    grad_accum: int
    params: int
    weights: int
    gradients: int
    optimizer_state: int
    activations: int
    temporaries: int
    workspace: int
    slack: int
    phase: str
    saved_activations: int
    context: int = CONTEXT_BYTES

    @property
    def total(self) -> int:
        """What the process needs beyond its CUDA context: compare with free memory."""
        return (
            self.weights
            + self.gradients
            + self.optimizer_state
            + self.activations
            + self.temporaries
            + self.workspace
        )

    @property
    def allocated(self) -> int:
        """The predicted `torch.cuda.max_memory_allocated` (the total less allocator slack)."""
        return self.total - self.slack

    @property
    def model_state(self) -> int:
        """fp32 weights, gradients and Adam moments: 16 bytes per parameter."""
        return 16 * self.params

    def breakdown(self) -> list[tuple[str, int]]:
        """(component, bytes) at the peak, in display order; they sum to `total`."""
        return [
            ("weights", self.weights),
            ("gradients", self.gradients),
            ("optimizer state", self.optimizer_state),
            ("activations", self.activations),
            ("temporaries", self.temporaries),
            ("workspace", self.workspace),
        ]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(total=self.total, allocated=self.allocated, model_state=self.model_state)
        return data


def estimate(
    config: BertConfig,
    batch: int,
    seq: int,
    precision: str = "fp32",
    optimizer: str = "google",
    grad_checkpointing: bool = False,
    attention: str = "sdpa",
    task: str = "classify",
    grad_accum: int = 1,
    max_predictions: int | None = None,
    num_labels: int = 2,
    keep_grads: bool | None = None,
) -> Estimate:
    """Peak memory of a training step of `batch` sequences of `seq` tokens.

    Args:
        config: the architecture.
        batch: sequences per forward pass (with accumulation, the micro-batch).
        seq: tokens per sequence (padded length).
        precision: fp32, or bf16/fp16 autocast (fp32 master weights, gradients and moments).
        optimizer: google (bertctl's `_foreach` Adam without bias correction) or adamw (torch's
            fused AdamW on a GPU).
        grad_checkpointing: recompute each layer in the backward.
        attention: sdpa (bertctl's), flash, or eager (scores materialised, as in TF 2018).
        task: classify (sequence classification) or pretrain (MLM + NSP, gathered positions).
        grad_accum: micro-batches per optimizer step; above 1 the gradients stay resident.
        max_predictions: masked positions per sequence for pretraining (default Google's).
        num_labels: classifier outputs.
        keep_grads: gradients stay allocated between steps, as with accumulation or with
            `zero_grad()` before PyTorch 2.0 (which zeroed them instead of freeing them);
            default: `grad_accum > 1`.

    >>> from bertctl.bertconfig import BertConfig
    >>> e = estimate(BertConfig(vocab_size=30522, type_vocab_size=2), batch=32, seq=128)
    >>> e.model_state == 16 * e.params, e.phase
    (True, 'backward (start)')
    """
    _check(precision, PRECISIONS, "precision")
    _check(optimizer, OPTIMIZERS, "optimizer")
    _check(attention, ATTENTIONS, "attention")
    _check_task(task)
    if batch < 0 or seq < 1 or grad_accum < 1:
        raise UsageError(f"batch {batch}, seq {seq}, grad_accum {grad_accum}: out of range")
    counts = param_counts(config, task, num_labels)
    resident = grad_accum > 1 if keep_grads is None else keep_grads
    p = _act_bytes(precision)
    weights = 4 * counts.total
    copies = 2 * counts.matmul if p != 4 else 0
    grads = 4 * counts.total
    moments = 8 * counts.total
    saved = activation_bytes(
        config, batch, seq, precision, attention, grad_checkpointing, task, max_predictions
    )
    if batch == 0:
        saved = 0
    back = (
        backward_temporary_bytes(config, batch, seq, precision, attention, task, max_predictions)
        if batch
        else 0
    )
    head_grads = 4 * counts.head + (4 * counts.word_embeddings if task == "pretrain" else 0)
    # A dense V x h embedding gradient is written, then added to `.grad` when one exists.
    embedding_temp = 4 * counts.word_embeddings if (resident or task == "pretrain") and batch else 0
    step_temp = 8 * (counts.total - counts.no_decay) if optimizer == "google" else 0
    phases = [
        ("backward (start)", weights + copies, grads if resident else head_grads, saved, back),
        ("backward (end)", weights, grads, 0, embedding_temp),
        ("optimizer step", weights, grads, 0, step_temp),
    ]

    def build(phase: tuple[str, int, int, int, int]) -> Estimate:
        name, w, g, act, temp = phase
        slack = int(ALLOCATOR_SLACK * (act + temp))
        return Estimate(
            batch=batch,
            seq=seq,
            precision=precision,
            optimizer=optimizer,
            attention=attention,
            grad_checkpointing=grad_checkpointing,
            task=task,
            grad_accum=grad_accum,
            params=counts.total,
            weights=w,
            gradients=g,
            optimizer_state=moments,
            activations=act,
            temporaries=temp,
            workspace=CUBLAS_BYTES + slack,
            slack=slack,
            phase=name,
            saved_activations=saved,
        )

    return max((build(ph) for ph in phases), key=lambda e: e.total)


def max_batch(
    config: BertConfig,
    seq: int,
    precision: str,
    budget_bytes: int,
    optimizer: str = "google",
    grad_checkpointing: bool = False,
    attention: str = "sdpa",
    task: str = "classify",
    grad_accum: int = 1,
    limit: int = MAX_BATCH,
) -> int:
    """The largest batch whose estimate fits `budget_bytes` (0 when not even one sequence fits).

    `budget_bytes` is memory for this process beyond its CUDA context: a card's total less
    `CONTEXT_BYTES` (see `usable`), or the free memory a running process reads.
    """

    def fits(b: int) -> bool:
        return (
            estimate(
                config,
                b,
                seq,
                precision,
                optimizer,
                grad_checkpointing,
                attention,
                task,
                grad_accum,
            ).total
            <= budget_bytes
        )

    if not fits(1):
        return 0
    low, high = 1, 2
    while high <= limit and fits(high):
        low, high = high, high * 2
    return _last_fitting(fits, low, min(high, limit + 1))


def _last_fitting(fits: Callable[[int], bool], low: int, high: int) -> int:
    """The largest batch in [low, high) that fits, by bisection, given fits(low) and not
    fits(high) (or high past the limit): a larger batch never needs less memory."""
    while high - low > 1:
        mid = (low + high) // 2
        if fits(mid):
            low = mid
        else:
            high = mid
    return low


def google_2018(config: BertConfig) -> dict[int, int] | None:
    """Google's published maximum batch per sequence length for this shape (BERT-Base or
    BERT-Large, 12 GB, TensorFlow 1.11, fp32), or None for other shapes."""
    shape = (
        config.num_hidden_layers,
        config.hidden_size,
        config.num_attention_heads,
        config.intermediate_size,
    )
    return GOOGLE_2018.get(shape)


def usable(card_bytes: int) -> int:
    """Memory a process can fill on a card of `card_bytes`, after its CUDA context."""
    return max(0, card_bytes - CONTEXT_BYTES)


# --------------------------------------------------------------------------------------------
# Inference: evaluate and predict


@dataclass(frozen=True)
class Moment:
    """Bytes alive at one point of an inference forward pass (see `inference_moments`).

    Attributes:
        name: the op that has just allocated its output.
        activations: the batch, the attention mask and every activation alive there.
        weight_copy: autocast's 16-bit copy of the weight and bias of the matmul running there.
        in_kernel: of `activations`, what a fused kernel allocates for itself during the call
            (SDPA's mask conversions), which no Python-visible tensor holds.
    """

    name: str
    activations: int
    weight_copy: int = 0
    in_kernel: int = 0

    @property
    def total(self) -> int:
        return self.activations + self.weight_copy


def inference_moments(
    config: BertConfig,
    batch: int,
    seq: int,
    precision: str = "fp32",
    attention: str = "sdpa",
    num_labels: int = 2,
) -> list[Moment]:
    """Bytes alive at each point where an inference forward pass can peak, in forward order.

    `bertctl evaluate` and `predict` run transformers' BertForSequenceClassification under
    `torch.inference_mode`: nothing is saved for a backward pass, so a tensor is freed as soon as
    Python drops its last reference, and besides the tensors of the op running only these live
    across ops, for b sequences of s tokens (t = b·s):

    - the batch: token ids, segment ids and padding mask (int64: 24·t bytes), labels (int64,
      8·b; fp32 regression targets, 4·b);
    - the attention mask transformers builds once per forward pass: boolean b·s² for `sdpa`,
      fp32 additive 4·b·s² for `eager`, none for `flash`. Counted for every batch: dynamic
      padding pads each batch to its longest sequence, and only an unpadded batch has no mask;
    - the embedding output (fp32, 4·t·h), which BertModel.forward holds until the encoder
      returns, and from the second layer on that layer's input (4·t·h), which the encoder's
      loop holds until the layer returns. So the second layer is the worst, and a model of any
      depth peaks as a two-layer one does: inference memory does not grow with depth.

    Inside a layer, with p the bytes of a matmul output (4 in fp32, 2 under bf16/fp16 autocast)
    and c those of autocast's 16-bit cast of an fp32 matmul input (0 in fp32, else 2), the
    residual stream and LayerNorm outputs being fp32 (4), the layer's own tensors at each
    moment, in bytes per token:

    ======================  =================================================  ================
    moment (op just run)    alive, per token                                   16-bit copy of
    ======================  =================================================  ================
    query/key/value         Q and K, V's input cast and V: (3p + c)·h          value (h² + h)
    attention (sdpa)        Q, K, V and the output: 4p·h, + the masks (1)      -
    attention output dense  attention output O, dense output: 2p·h             dense (h² + h)
    attention LayerNorm     O, dense, residual sum, LayerNorm output A:        -
                            (2p + 8)·h
    intermediate dense      A, its cast, intermediate output: (4 + c)·h + p·i  dense (h·i + i)
    GELU                    A, intermediate and GELU outputs: 4·h + 2p·i       -
    output dense            A, GELU output, dense output: (4 + p)·h + p·i      dense (h·i + h)
    output LayerNorm        A, GELU output, dense, residual sum, LayerNorm:    -
                            (12 + p)·h + p·i
    ======================  =================================================  ================

    (1) torch's SDPA turns the boolean mask into an additive one in the query's dtype (b·s²·p)
    and, for the memory-efficient CUDA kernel, expands it over the heads and pads the key axis
    to a multiple of 16 (b·a·s·⌈s⌉₁₆·p); without gradients the kernel keeps no log-sum-exp.
    `flash` takes no mask and returns its log-sum-exp (4·b·a·s).

    `eager` (transformers' eager attention) materialises the scores, B = b·a·s² elements: the
    matmul and its scaled copy (2p·B), the masked scores (4·B: the mask is fp32), the softmax
    (4·B, fp32 under autocast too), the probabilities' 16-bit cast for the second matmul (c·B),
    and a transposed copy of the output (p·t·h). The layer returns the probabilities to
    BertLayer, which holds them until it returns: 4·B through the rest of the layer.

    For i = 4h the peak is 44·t·h bytes in fp32 (at the GELU: embedding output, layer input,
    A, and two b·s·i tensors) and 30·t·h under autocast (at the output LayerNorm), plus the
    batch and the mask, against the 66 and 42 per layer, for every layer, that training saves
    (`layer_activation_bytes`). At 512 tokens the SDPA masks can set the peak instead.

    Autocast's weight copies (2 bytes per weight and bias): under inference_mode it keeps none
    of its casts (measured with torch 2.13: each cast is freed when its matmul returns; under
    no_grad they would all stay until autocast exits), so only the running matmul's is alive.

    The embeddings (word, segment, position vectors, their sum and its LayerNorm: 16·t·h +
    4·s·h) and the classifier head (pooler, logits: a few b·h) run with the embedding output
    and the last hidden state alone, and peak lower.

    >>> from bertctl.bertconfig import BertConfig
    >>> base = BertConfig(vocab_size=30522, type_vocab_size=2)
    >>> peak = max(inference_moments(base, 64, 128), key=lambda m: m.total)
    >>> peak.name, round(peak.total / (64 * 128 * 768), 1)
    ('GELU', 44.2)
    """
    _check(precision, PRECISIONS, "precision")
    _check(attention, ATTENTIONS, "attention")
    b, s, h, a, i = _dims(config, batch, seq)
    t = b * s
    p = _act_bytes(precision)
    c = 0 if p == 4 else 2  # autocast's 16-bit cast of an fp32 matmul input
    copy = 0 if p == 4 else 2  # and of an fp32 weight, per parameter
    inputs = 3 * 8 * t + (4 if num_labels == 1 else 8) * b  # regression targets are fp32
    mask = {"sdpa": b * s * s, "eager": 4 * b * s * s, "flash": 0}[attention]
    embedded = 4 * t * h
    layer_input = 4 * t * h if config.num_hidden_layers > 1 else 0
    live = inputs + mask + embedded + layer_input  # through every op of the worst layer

    moments = [
        Moment("embeddings", inputs + 16 * t * h + 4 * s * h),
        Moment("query/key/value", live + (3 * p + c) * t * h, copy * (h * h + h)),
    ]
    qkv = live + 3 * p * t * h
    probs = 0  # eager attention's probabilities, held until the layer returns
    if attention == "eager":
        scores = b * a * s * s
        probs = 4 * scores
        moments += [
            Moment("attention scores", qkv + 2 * p * scores),
            Moment("attention mask", qkv + (p + 4) * scores),
            Moment("softmax", qkv + 8 * scores),
            Moment("attention x values", qkv + (4 + c) * scores + p * t * h),
            Moment("attention transpose", qkv + probs + 2 * p * t * h),
        ]
    elif attention == "sdpa":
        masks = b * s * s * p + b * a * s * _round_up(s, 16) * p
        moments.append(Moment("attention", qkv + p * t * h + masks, in_kernel=masks))
    else:
        lse = 4 * b * a * s
        moments.append(Moment("attention", qkv + p * t * h + lse, in_kernel=lse))
    live += probs
    moments += [
        Moment("attention output dense", live + 2 * p * t * h, copy * (h * h + h)),
        Moment("attention LayerNorm", live + (2 * p + 8) * t * h),
        Moment("intermediate dense", live + (4 + c) * t * h + p * t * i, copy * (h * i + i)),
        Moment("GELU", live + 4 * t * h + 2 * p * t * i),
        Moment("output dense", live + (4 + p) * t * h + p * t * i, copy * (h * i + h)),
        Moment("output LayerNorm", live + (12 + p) * t * h + p * t * i),
        Moment(
            "classifier",
            inputs + mask + embedded + 4 * t * h + (c + 2 * p) * b * h + 8 * b * num_labels,
            copy * (h * h + h),
        ),
    ]
    return moments


@dataclass(frozen=True)
class InferenceEstimate:
    """Peak GPU memory of evaluating or predicting one batch, in bytes, as it stands at the peak.

    Attributes:
        batch: sequences per forward pass (the eval batch).
        seq: sequence length (the longest a batch is padded to).
        precision, attention: the settings.
        params: the model's parameters.
        weights: fp32 weights.
        weight_copy: autocast's 16-bit copy of the weight of the matmul running at the peak.
        activations: the batch, the attention mask and the activations alive at the peak.
        workspace: cuBLAS workspaces plus `slack`.
        slack: the caching allocator's reserve beyond live tensors.
        phase: the op at the peak (a `Moment` name).
        context: the CUDA context, outside `total`.
    """

    batch: int
    seq: int
    precision: str
    attention: str
    params: int
    weights: int
    weight_copy: int
    activations: int
    workspace: int
    slack: int
    phase: str
    context: int = CONTEXT_BYTES

    @property
    def total(self) -> int:
        """What the process needs beyond its CUDA context: compare with free memory."""
        return self.weights + self.weight_copy + self.activations + self.workspace

    @property
    def allocated(self) -> int:
        """The predicted `torch.cuda.max_memory_allocated` (the total less allocator slack)."""
        return self.total - self.slack

    def breakdown(self) -> list[tuple[str, int]]:
        """(component, bytes) at the peak, in display order; they sum to `total`."""
        parts = [("weights", self.weights)]
        if self.weight_copy:
            parts.append(("16-bit weight copy", self.weight_copy))
        return [*parts, ("activations", self.activations), ("workspace", self.workspace)]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(total=self.total, allocated=self.allocated)
        return data


def estimate_inference(
    config: BertConfig,
    batch: int,
    seq: int,
    precision: str = "fp32",
    attention: str = "sdpa",
    num_labels: int = 2,
) -> InferenceEstimate:
    """Peak memory of a forward pass without gradients over `batch` sequences of `seq` tokens:
    the fp32 weights, the largest of `inference_moments`, cuBLAS workspace and allocator slack.

    >>> from bertctl.bertconfig import BertConfig
    >>> base = BertConfig(vocab_size=30522, type_vocab_size=2)
    >>> e = estimate_inference(base, 64, 128)
    >>> e.phase, e.weights == 4 * e.params, format_bytes(e.total)
    ('GELU', True, '773 MiB')
    """
    if batch < 1 or seq < 1:
        raise UsageError(f"batch {batch}, seq {seq}: out of range")
    params = param_counts(config, "classify", num_labels).total
    peak = max(
        inference_moments(config, batch, seq, precision, attention, num_labels),
        key=lambda m: m.total,
    )
    slack = int(ALLOCATOR_SLACK * peak.total)
    return InferenceEstimate(
        batch=batch,
        seq=seq,
        precision=precision,
        attention=attention,
        params=params,
        weights=4 * params,
        weight_copy=peak.weight_copy,
        activations=peak.activations,
        workspace=CUBLAS_BYTES + slack,
        slack=slack,
        phase=peak.name,
    )


@dataclass(frozen=True)
class InferenceSettings:
    """The memory-relevant settings of `bertctl evaluate` and `predict` (their flags' names).

    Attributes:
        batch_size: sequences per forward pass (--batch-size).
        max_seq_length: the longest a batch is padded to (--max-seq-length).
        precision: fp32, or bf16/fp16 autocast (resolved, not `auto`).
        num_labels: the classifier's outputs.
    """

    batch_size: int
    max_seq_length: int
    precision: str
    num_labels: int = 2


def max_eval_batch(
    config: BertConfig,
    settings: InferenceSettings,
    budget_bytes: int,
    attention: str = "sdpa",
    limit: int = MAX_BATCH,
) -> int:
    """The largest batch (at most `limit`) whose inference estimate fits; 0 when none does."""

    def fits(b: int) -> bool:
        need = estimate_settings(config, replace(settings, batch_size=b), attention)
        return need.total <= budget_bytes

    if not fits(1):
        return 0
    return _last_fitting(fits, 1, limit + 1)  # high is past the limit


# --------------------------------------------------------------------------------------------
# Settings that fit


@dataclass(frozen=True)
class Settings:
    """The memory-relevant settings of a run (FinetuneConfig's names)."""

    batch_size: int
    max_seq_length: int
    precision: str
    grad_accum: int = 1
    grad_checkpointing: bool = False
    optimizer: str = "google"

    @property
    def micro_batch(self) -> int:
        return self.batch_size // self.grad_accum


@dataclass(frozen=True)
class Suggestion:
    """Settings that fit, what changed, and the flags that select them.

    Attributes:
        settings: the full settings (`InferenceSettings` for evaluate and predict).
        changes: the fields that differ from the run's (FinetuneConfig's names, or the
            evaluate flags' for inference), with their new values.
        flags: command-line flags that apply the changes.
        why: one line on the trade-off.
        estimate: the estimate for these settings.
    """

    settings: Settings | InferenceSettings
    changes: dict[str, Any]
    flags: str
    why: str
    estimate: Estimate | InferenceEstimate

    def to_dict(self) -> dict[str, Any]:
        return {
            "flags": self.flags,
            "changes": self.changes,
            "why": self.why,
            "total": self.estimate.total,
        }


def settings_of(cfg: Any, precision: str | None = None) -> Settings:
    """Settings from a FinetuneConfig-like object; `precision` overrides its (e.g. `auto`)."""
    return Settings(
        batch_size=cfg.batch_size,
        max_seq_length=cfg.max_seq_length,
        precision=precision or cfg.precision,
        grad_accum=cfg.grad_accum,
        grad_checkpointing=cfg.grad_checkpointing,
        optimizer=cfg.optimizer,
    )


@overload
def estimate_settings(
    config: BertConfig, settings: Settings, attention: str = ..., task: str = ...
) -> Estimate: ...


@overload
def estimate_settings(
    config: BertConfig, settings: InferenceSettings, attention: str = ..., task: str = ...
) -> InferenceEstimate: ...


def estimate_settings(
    config: BertConfig,
    settings: Settings | InferenceSettings,
    attention: str = "sdpa",
    task: str = "classify",
) -> Estimate | InferenceEstimate:
    """`estimate` for a run's settings (its micro-batch and accumulation), or
    `estimate_inference` for evaluate's."""
    if isinstance(settings, InferenceSettings):
        return estimate_inference(
            config,
            settings.batch_size,
            settings.max_seq_length,
            settings.precision,
            attention,
            settings.num_labels,
        )
    return estimate(
        config,
        settings.micro_batch,
        settings.max_seq_length,
        settings.precision,
        settings.optimizer,
        settings.grad_checkpointing,
        attention,
        task,
        settings.grad_accum,
    )


def fit(
    config: BertConfig,
    cfg: Any,
    budget_bytes: int,
    *,
    bf16: bool = True,
    attention: str = "sdpa",
    task: str = "classify",
) -> list[Suggestion]:
    """Concrete settings that fit `budget_bytes`, best first; empty when none does.

    `cfg` is a FinetuneConfig or `Settings` (precision resolved: fp32, bf16 or fp16), or
    `InferenceSettings` (see `fit_inference`). For training, in order:

    1. gradient accumulation: the largest micro-batch that fits, the effective batch kept
       (batch_size stays, grad_accum grows; same updates, more steps per update);
    2. bf16 autocast, when `bf16` (the GPU supports it), with accumulation if still needed;
    3. gradient checkpointing (about a third slower), with accumulation if still needed;
    4. bf16 and checkpointing together, when neither alone keeps the micro-batch;
    5. a shorter sequence (longer inputs are truncated: results change).
    """
    if isinstance(cfg, InferenceSettings):
        return fit_inference(config, cfg, budget_bytes, bf16=bf16, attention=attention)
    current = cfg if isinstance(cfg, Settings) else settings_of(cfg)
    found: list[Suggestion] = []

    def accumulate(s: Settings) -> Settings | None:
        """`s` with the smallest accumulation (largest micro-batch) that fits, or None."""

        def fits(accum: int) -> bool:
            candidate = replace(s, grad_accum=accum)
            return estimate_settings(config, candidate, attention, task).total <= budget_bytes

        options = [d for d in _divisors(s.batch_size) if d >= s.grad_accum]
        accum = smallest_passing(options, fits)
        return None if accum is None else replace(s, grad_accum=accum)

    def add(s: Settings | None, why: str) -> None:
        if s is None or s == current or any(f.settings == s for f in found):
            return
        changes = {
            k: v for k, v in asdict(s).items() if getattr(current, k) != v and k != "optimizer"
        }
        found.append(
            Suggestion(
                s,
                changes,
                flags_for(s, changes),
                why,
                estimate_settings(config, s, attention, task),
            )
        )

    add(accumulate(current), "same effective batch and updates, more passes per step")
    bf16_alone = ckpt_alone = None
    if bf16 and current.precision == "fp32":
        bf16_alone = accumulate(replace(current, precision="bf16"))
        add(bf16_alone, "bf16 autocast: half the activations, faster")
    if not current.grad_checkpointing:
        ckpt_alone = accumulate(replace(current, grad_checkpointing=True))
        add(ckpt_alone, "recompute each layer in the backward: about a third slower")
    needs_both = all(
        s is None or s.grad_accum > current.grad_accum for s in (bf16_alone, ckpt_alone)
    )
    if bf16 and current.precision == "fp32" and not current.grad_checkpointing and needs_both:
        both = replace(current, precision="bf16", grad_checkpointing=True)
        add(accumulate(both), "bf16 and checkpointing together")
    add(*_shorter(config, current, budget_bytes, attention, task))
    return found


def fit_inference(
    config: BertConfig,
    current: InferenceSettings,
    budget_bytes: int,
    *,
    bf16: bool = True,
    attention: str = "sdpa",
) -> list[Suggestion]:
    """Settings of `evaluate` or `predict` that fit `budget_bytes`, best first; empty when none
    does (`fit` calls this for `InferenceSettings`). In order:

    1. a smaller batch, the largest that fits (the same predictions up to rounding: padded
       positions are masked out; more forward passes);
    2. bf16 autocast, when `bf16` (the GPU supports it), with a smaller batch if still needed;
    3. a shorter sequence at the same batch (longer inputs are truncated: results change).
    """
    found: list[Suggestion] = []

    def largest(s: InferenceSettings) -> InferenceSettings | None:
        n = max_eval_batch(config, s, budget_bytes, attention, limit=s.batch_size)
        return replace(s, batch_size=n) if n else None

    def add(s: InferenceSettings | None, why: str) -> None:
        if s is None or s == current or any(f.settings == s for f in found):
            return
        changes = {k: v for k, v in asdict(s).items() if getattr(current, k) != v}
        estimate = estimate_settings(config, s, attention)
        found.append(Suggestion(s, changes, inference_flags(changes), why, estimate))

    add(largest(current), "smaller batches: the same predictions, more passes")
    if bf16 and current.precision == "fp32":
        add(
            largest(replace(current, precision="bf16")),
            "bf16 autocast: about half the activations, faster; scores may move slightly",
        )
    add(*_shorter(config, current, budget_bytes, attention))
    return found


def _shorter(
    config: BertConfig,
    current: Settings | InferenceSettings,
    budget_bytes: int,
    attention: str,
    task: str = "classify",
) -> tuple[Any, str]:
    """The longest of the shorter SEQ_LENGTHS that fits (or None), and why it is a trade-off."""
    for seq in sorted((s for s in SEQ_LENGTHS if s < current.max_seq_length), reverse=True):
        shorter = replace(current, max_seq_length=seq)
        if estimate_settings(config, shorter, attention, task).total <= budget_bytes:
            return shorter, f"sequences truncated to {seq} tokens: results change"
    return None, ""


def inference_flags(changes: dict[str, Any]) -> str:
    """The `bertctl evaluate`/`predict` flags that apply `changes`."""
    names = {
        "batch_size": "--batch-size",
        "precision": "--precision",
        "max_seq_length": "--max-seq-length",
    }
    return " ".join(f"{flag} {changes[key]}" for key, flag in names.items() if key in changes)


def flags_for(settings: Settings, changes: dict[str, Any]) -> str:
    """The `bertctl finetune` flags that apply `changes` (batch size always shown with accum)."""
    parts = []
    if "grad_accum" in changes:
        parts.append(f"--batch-size {settings.batch_size} --grad-accum {settings.grad_accum}")
    if "precision" in changes:
        parts.append(f"--precision {settings.precision}")
    if "grad_checkpointing" in changes:
        parts.append(
            "--grad-checkpointing" if settings.grad_checkpointing else "--no-grad-checkpointing"
        )
    if "max_seq_length" in changes:
        parts.append(f"--max-seq-length {settings.max_seq_length}")
    return " ".join(parts)


def _divisors(n: int) -> list[int]:
    """The divisors of n, ascending, found in about sqrt(n) steps."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return small + [n // d for d in reversed(small) if d * d != n]


def smallest_passing(options: list[int], passes) -> int | None:
    """The first of ascending `options` that `passes`, in about log2(len(options)) calls.

    `passes` must hold from some option on (more accumulation, a smaller micro-batch, never
    needs more memory) except that the first option may differ: accumulation 1 keeps no
    gradients resident between micro-batches, so it can fit where 2 does not. It is tried
    alone first; bisection covers the rest.
    """
    if not options:
        return None
    if passes(options[0]):
        return options[0]
    low, high = 0, len(options)  # options[low] fails; options[high:] pass (high: none known)
    while high - low > 1:
        mid = (low + high) // 2
        if passes(options[mid]):
            high = mid
        else:
            low = mid
    return options[high] if high < len(options) else None


# --------------------------------------------------------------------------------------------
# `bertctl plan`: one value for the command to render


@dataclass(frozen=True)
class Plan:
    """What `bertctl plan` reports: the estimate for the given settings against a budget, the
    settings that fit when they do not, and the largest batch per sequence length.

    Attributes:
        model: the model as the user named it (a `ModelRef` label).
        config: its architecture.
        budget: bytes for the process beyond its CUDA context.
        source: where `budget` comes from, for the reader.
        settings: the run's settings; `attention` and `task` complete them.
        estimate: the estimate for `settings`.
        suggestions: settings that fit, best first (empty when `settings` fit).
        max_batch: the largest batch per sequence length, for "fp32", "bf16" and each with
            "+checkpointing".
        google_2018: Google's published maxima for this shape, or None.
    """

    model: str
    config: BertConfig
    budget: int
    source: str
    settings: Settings
    attention: str
    task: str
    estimate: Estimate
    suggestions: tuple[Suggestion, ...]
    max_batch: dict[str, dict[int, int]]
    google_2018: dict[int, int] | None

    @property
    def fits(self) -> bool:
        return self.estimate.total <= self.budget

    def to_dict(self) -> dict[str, Any]:
        """The plan as `bertctl plan --json` prints it (sequence lengths as string keys)."""
        return {
            "model": self.model,
            "params": self.estimate.params,
            "budget": {"bytes": self.budget, "source": self.source},
            "settings": {**asdict(self.settings), "attention": self.attention, "task": self.task},
            "estimate": self.estimate.to_dict(),
            "fits": self.fits,
            "suggestions": [s.to_dict() for s in self.suggestions],
            "max_batch": {
                key: {str(seq): n for seq, n in row.items()} for key, row in self.max_batch.items()
            },
            "google_2018": (
                {str(k): v for k, v in self.google_2018.items()} if self.google_2018 else None
            ),
        }


def plan(
    model: str,
    settings: Settings,
    *,
    gpu_memory: str | None = None,
    gpu: int | None = None,
    attention: str = "sdpa",
    task: str = "classify",
) -> Plan:
    """The plan `bertctl plan` prints, for exactly one of a card of `gpu_memory` (e.g. "12GiB",
    less the CUDA context) or the free memory of visible GPU `gpu`.

    Raises:
        UsageError: a setting out of range or not one of its choices, named by its flag.
        BertctlError: the model cannot be read, or `gpu` is not visible.
    """
    from bertctl import modelref

    _check_plan_flags(settings, gpu_memory, gpu, attention, task)
    ref = modelref.resolve(model)
    config = modelref.bert_config(ref)
    if not 1 <= settings.max_seq_length <= config.max_position_embeddings:
        raise UsageError(
            f"--max-seq-length {settings.max_seq_length} is outside the model's "
            f"{config.max_position_embeddings} positions"
        )
    if gpu_memory is not None:
        budget = usable(parse_size(gpu_memory, "--gpu-memory"))
        source = (
            f"--gpu-memory {gpu_memory} less {format_bytes(CONTEXT_BYTES)} for the CUDA context"
        )
        bf16 = True
    else:
        assert gpu is not None
        budget, source, bf16 = gpu_budget(gpu)
    est = estimate_settings(config, settings, attention, task)
    suggestions = (
        []
        if est.total <= budget
        else fit(config, settings, budget, bf16=bf16, attention=attention, task=task)
    )
    lengths = [s for s in SEQ_LENGTHS if s <= config.max_position_embeddings]
    grid = {
        prec + ("+checkpointing" if ckpt else ""): {
            s: max_batch(config, s, prec, budget, settings.optimizer, ckpt, attention, task)
            for s in lengths
        }
        for prec in ("fp32", "bf16")
        for ckpt in (False, True)
    }
    return Plan(
        ref.label,
        config,
        budget,
        source,
        settings,
        attention,
        task,
        est,
        tuple(suggestions),
        grid,
        google_2018(config),
    )


def _check_plan_flags(
    settings: Settings, gpu_memory: str | None, gpu: int | None, attention: str, task: str
) -> None:
    """`bertctl plan`'s flags, checked before the model is read; messages name the flags."""
    if (gpu_memory is None) == (gpu is None):
        raise UsageError(
            "pass one of --gpu-memory SIZE (a card to plan for) and --gpu N (a GPU here)",
            "e.g. bertctl plan base-uncased --gpu-memory 12GiB",
        )
    for value, allowed, flag in (
        (settings.precision, PRECISIONS, "--precision"),
        (settings.optimizer, OPTIMIZERS, "--optimizer"),
        (attention, ATTENTIONS, "--attention"),
        (task, TASKS, "--task"),
    ):
        _check(value, allowed, flag)
    batch, accum = settings.batch_size, settings.grad_accum
    if batch > MAX_BATCH:
        raise UsageError(
            f"--batch-size {batch} is more than any BERT recipe uses", f"pass at most {MAX_BATCH}"
        )
    if batch < 1 or accum < 1 or batch % accum:
        raise UsageError("--batch-size must be a positive multiple of --grad-accum")


def gpu_budget(index: int) -> tuple[int, str, bool]:
    """(free bytes, where that figure comes from, bf16 support) of visible GPU `index`.

    Raises:
        BertctlError: no GPU is visible, or none has that index.
    """
    from bertctl import gpus

    found = gpus.visible()
    if not found:
        raise BertctlError(
            f"--gpu {index}: no CUDA GPU is visible", "plan for a card with --gpu-memory SIZE"
        )
    if not 0 <= index < len(found):
        raise BertctlError(
            f"--gpu {index}: only {len(found)} GPU(s) visible", f"pass --gpu 0..{len(found) - 1}"
        )
    g = found[index]
    return g.free, f"free on GPU {index} ({g.name})", g.bf16


# --------------------------------------------------------------------------------------------
# Sizes


_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "kb": 1000,
    "m": MiB,
    "mib": MiB,
    "mb": 1000**2,
    "g": GiB,
    "gib": GiB,
    "gb": 1000**3,
    "t": 1 << 40,
    "tib": 1 << 40,
    "tb": 1000**4,
}


def parse_size(text: str, what: str = "size") -> int:
    """Bytes from a size: 12GiB, 11.5G and 512M are binary (as nvidia-smi's MiB), 12GB and
    12000MB decimal; a bare number is bytes.

    >>> parse_size("12GiB"), parse_size("12GB"), parse_size("11.5G"), parse_size("12000MB")
    (12884901888, 12000000000, 12348030976, 12000000000)
    """
    match = _SIZE.match(str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise UsageError(
            f"{what} {text!r} is not a size",
            "give a number and a unit, e.g. 12GiB, 11.5G, 12GB or 12000MB",
        )
    value = float(match.group(1)) * _UNITS[unit]
    if value < 1:
        raise UsageError(f"{what} {text!r} is no memory at all", "give a positive size, e.g. 12GiB")
    return int(value)


def format_bytes(n: float) -> str:
    """Binary units, as nvidia-smi: 12.00 GiB, 512 MiB, 64.9 MiB, 96 KiB.

    >>> format_bytes(12 * GiB), format_bytes(512 * MiB), format_bytes(68_077_388)
    ('12.00 GiB', '512 MiB', '64.9 MiB')
    """
    if abs(n) >= GiB:
        return f"{n / GiB:.2f} GiB"
    if abs(n) >= 100 * MiB:
        return f"{n / MiB:.0f} MiB"
    if abs(n) >= MiB:
        return f"{n / MiB:.1f} MiB"
    if abs(n) >= 1 << 10:
        return f"{n / (1 << 10):.0f} KiB"
    return f"{n:.0f} B"


# --------------------------------------------------------------------------------------------
# Helpers


def _dims(config: BertConfig, batch: int, seq: int) -> tuple[int, int, int, int, int]:
    """(batch, seq, hidden, heads, intermediate): the b, s, h, a, i of the formulas."""
    return batch, seq, config.hidden_size, config.num_attention_heads, config.intermediate_size


def _act_bytes(precision: str) -> int:
    return 4 if precision == "fp32" else 2


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise UsageError(f"{what} {value!r} is not one of {', '.join(allowed)}")


def _check_task(task: str) -> None:
    _check(task, TASKS, "task")
