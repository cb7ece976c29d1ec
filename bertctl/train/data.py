"""Examples -> features (Google-exact token ids) -> length-grouped, dynamically padded batches.

Tokenization runs once, up front, with bertctl's Google-exact tokenizer; batches are then index
lists into the feature table. Padding to the longest sequence of each batch instead of to
max_seq_length is what makes fine-tuning fast: MRPC pairs average about 50 tokens, not 128.
Results do not change, because padded positions are masked out of attention.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from bertctl.glue import Example, Task
from bertctl.tokenization import Tokenizer, build_inputs


@dataclass(frozen=True)
class Features:
    """Model inputs for a whole split, unpadded.

    Attributes:
        input_ids, segment_ids: one list per example, [CLS] A [SEP] (B [SEP]), truncated.
        labels: class ids (float targets for regression); None for an unlabelled test split.
        truncated: how many examples lost tokens to max_seq_length.
    """

    input_ids: list[list[int]]
    segment_ids: list[list[int]]
    labels: list[float] | list[int] | None
    truncated: int

    def __len__(self) -> int:
        return len(self.input_ids)


def featurize(
    examples: Sequence[Example], task: Task, tokenizer: Tokenizer, max_seq_length: int
) -> Features:
    """Google's convert_examples_to_features, without the padding (added per batch instead)."""
    ids, segs, labels = [], [], []
    truncated = 0
    has_labels = all(ex.label is not None for ex in examples)
    for ex in examples:
        tok_a, ids_a = tokenizer.tokenize_with_ids(ex.text_a)
        tok_b = ids_b = None
        if ex.text_b is not None:
            tok_b, ids_b = tokenizer.tokenize_with_ids(ex.text_b)
        enc = build_inputs(tokenizer.vocab, tok_a, ids_a, tok_b, ids_b, max_seq_length)
        n = sum(enc.input_mask)
        ids.append(enc.input_ids[:n])
        segs.append(enc.segment_ids[:n])
        truncated += bool(enc.truncated)
        if has_labels:
            labels.append(float(ex.label) if task.is_regression else task.label_id(ex.label))
    return Features(ids, segs, labels if has_labels else None, truncated)


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, mega: int = 50
) -> list[list[int]]:
    """A shuffled epoch whose batches hold examples of similar length.

    Shuffle, cut into chunks of `mega` batches, sort each chunk by length, cut it into batches,
    then shuffle the batches. The order depends only on (seed, epoch), so a resumed run sees the
    very same batches.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    chunk = batch_size * mega
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i], reverse=True)
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def sequential_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Evaluation batches: sorted by length for speed; callers put results back in order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(features: Features, batch: Sequence[int], regression: bool) -> dict[str, torch.Tensor]:
    """Pad one batch to its longest sequence (pad id 0, mask 0, segment 0, as Google pads)."""
    width = max(len(features.input_ids[i]) for i in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    segs = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, i in enumerate(batch):
        n = len(features.input_ids[i])
        ids[row, :n] = torch.tensor(features.input_ids[i])
        segs[row, :n] = torch.tensor(features.segment_ids[i])
        mask[row, :n] = 1
    out = {"input_ids": ids, "token_type_ids": segs, "attention_mask": mask}
    if features.labels is not None:
        values = [features.labels[i] for i in batch]
        out["labels"] = torch.tensor(values, dtype=torch.float if regression else torch.long)
    return out


def share(batch: list[int], rank: int, size: int) -> tuple[list[int], float]:
    """Process `rank`'s part of `batch` among `size`, and the weight of its loss.

    Contiguous parts, as even as they can be. A process left with nothing (a last batch smaller
    than the processes) still runs one example at weight 0: under DDP every process must take
    part in each gradient sum.

    >>> share([5, 6, 7], 0, 2), share([5, 6, 7], 1, 2), share([5], 1, 2)
    (([5, 6], 1.0), ([7], 1.0), ([5], 0.0))
    """
    per = -(-len(batch) // size)
    part = batch[rank * per : (rank + 1) * per]
    return (part, 1.0) if part else (batch[:1], 0.0)
