"""Pretraining data: Google's MLM + NSP instance creation, written as memory-mappable shards.

What it does, step by step (the logic of Google's `create_pretraining_data.py`, written afresh):

1. **Read** the corpus files (or globs) line by line: one sentence per line, a blank line between
   documents. Bytes that are not UTF-8 are dropped (a warning counts the lines), lines are
   `strip()`ped, and each sentence is tokenized with Google's WordPiece; a line that tokenizes to
   nothing is skipped and an empty document dropped.
2. **Shard**: documents are grouped, in corpus order, into shards of `shard_documents` documents
   (default 10,000). Each shard is processed on its own, on one of `workers` processes.
3. Per shard, the documents are **shuffled** once; then, for each of the `dupe_factor` passes and
   each document, **instances** are created; finally all of the shard's instances are shuffled.
   For one document (`_document_instances`): the target length is `max_seq_length - 3`, or with
   probability `short_seq_prob` a random length in [2, max_seq_length - 3] (drawn once per
   document and pass, as Google does); sentences accumulate into a chunk until the chunk reaches
   the target or the document ends; segment A is the chunk's first `randint(1, len - 1)`
   sentences (1 for a one-sentence chunk); segment B is the rest of the chunk ("IsNext", label
   0), or, for a one-sentence chunk or with probability 0.5, a span of a random other document
   starting at a random sentence and long enough for the remaining target (label 1), the chunk's
   unused sentences then being put back for the next chunk. The pair is cut to
   `max_seq_length - 3` tokens by removing tokens from the longer side, from its front or its back
   at random (ties: B). The sequence is `[CLS] A [SEP] B [SEP]`, segment ids 0 up to the first
   [SEP] and 1 after.
4. **Masking** (`mask_tokens`): candidates are every position but [CLS]/[SEP] (with whole-word masking a
   `##` piece joins the previous candidate, so a word is one candidate); candidates are shuffled;
   `min(max_predictions, max(1, round(len(tokens) * masked_lm_prob)))` tokens are chosen, whole
   words that would overshoot that count being skipped; each chosen token becomes [MASK] with
   probability 0.8, stays itself with probability 0.1 and becomes a random vocab entry otherwise.
   `round` is Python 3's (ties to even), as Google's code under Python 3.

How this differs from Google, deliberately:

* **The random "next" document is drawn from the same shard**, not from the whole corpus (Google
  holds the whole corpus in memory; bertctl streams it). With the default 10,000 documents per
  shard this is a pool large enough that the difference does not matter, and a corpus of at most
  10,000 documents (`sample_text.txt` has 3) is one shard: Google's behaviour exactly. A last
  shard smaller than half a shard is merged into the one before it, so no shard is tiny.
* **Random numbers**: Python's `random.Random`, as Google, but one generator per purpose, each
  seeded from (seed, shard index, purpose): the document shuffle, each dupe pass, the final
  shuffle. The sequence of decisions within a pass is Google's (same draws in the same order), so
  every statistic follows Google's definitions; the output is not byte-identical to Google's
  TFRecords (different generator streams, different file format), and is not meant to be.
* **Determinism**: shard boundaries depend only on the corpus and `shard_documents`, and a shard's
  output only on its documents and its seeds, so the same seed gives byte-identical shards with
  any number of workers.
* **A file ends a document.** Google keeps appending to the last document across files when a file
  does not end with a blank line; here each file starts a new document.

Output format (`FORMAT`, version 1), one folder per shard (`shard-00000`, ...) of `.npy` arrays
that `numpy.load(mmap_mode="r")` maps without reading, N instances each, S = max_seq_length,
P = max_predictions:

=====================  ===========  ==========================================================
input_ids              int32 [N,S]  masked sequence, zero-padded (Google's feature)
segment_ids            int8 [N,S]   0 for [CLS] A [SEP], 1 for B [SEP], 0 padding
lengths                int16 [N]    real tokens; input_mask = arange(S) < length
masked_lm_positions    int16 [N,P]  sorted positions of the predictions, zero-padded
masked_lm_ids          int32 [N,P]  the original token ids at those positions, zero-padded
masked_lm_counts       int16 [N]    predictions per instance; masked_lm_weights = arange(P) < count
next_sentence_labels   int8 [N]     0 = IsNext (B follows A), 1 = B is a random span
=====================  ===========  ==========================================================

plus `manifest.json`: settings, tokenizer (vocab sha256 and size, casing, special ids), corpus
files, arrays and dtypes, each shard's counts and statistics, totals. `open_shards(dir)` reads
it back. Memory: a shard's instances are held until the final shuffle, about 0.8 KB each at
S = 128: a 10,000-document shard of Wikipedia-length articles at dupe 10 (~450k instances) needs
about 400 MB per worker; lower `shard_documents` for less.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertctl import outputs, paths
from bertctl.errors import BertctlError, UsageError
from bertctl.tokenization import CLS, MASK, SEP, Tokenizer, Vocab
from bertctl.tokenstream import check_workers, tokenizer_pool

FORMAT = "bertctl-pretraining-data"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"

# name -> (dtype, per-instance shape: "S" = max_seq_length, "P" = max_predictions)
ARRAYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "input_ids": ("int32", ("S",)),
    "segment_ids": ("int8", ("S",)),
    "lengths": ("int16", ()),
    "masked_lm_positions": ("int16", ("P",)),
    "masked_lm_ids": ("int32", ("P",)),
    "masked_lm_counts": ("int16", ()),
    "next_sentence_labels": ("int8", ()),
}

# Counters each shard reports and the totals sum (see `Statistics`).
_COUNTERS = (
    "documents",
    "sentences",
    "corpus_tokens",
    "document_passes",
    "short_targets",
    "instances",
    "short_target_instances",
    "tokens",
    "maskable_tokens",
    "predictions_expected",
    "masked",
    "masked_as_mask",
    "masked_unchanged",
    "masked_random",
    "random_next",
    "coin_flips",
    "coin_random_next",
    "truncated_instances",
    "truncated_tokens",
)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrepareConfig:
    """Settings of `create_pretraining_data.py`, with Google's defaults, plus sharding.

    Attributes:
        max_seq_length: tokens per instance, [CLS] and both [SEP] included (Google: 128).
        max_predictions: most masked positions per instance (Google: 20).
        masked_lm_prob: share of tokens to mask (Google: 0.15).
        dupe_factor: passes over the corpus, each with different masks (Google: 10).
        short_seq_prob: chance that a document's target length is random (Google: 0.1).
        whole_word_mask: mask every piece of a word or none of them (Google: off).
        seed: the random seed (Google: 12345).
        shard_documents: documents per shard; random next sentences come from the same shard.
    """

    max_seq_length: int = 128
    max_predictions: int = 20
    masked_lm_prob: float = 0.15
    dupe_factor: int = 10
    short_seq_prob: float = 0.1
    whole_word_mask: bool = False
    seed: int = 12345
    shard_documents: int = 10_000

    def __post_init__(self) -> None:
        if not 5 <= self.max_seq_length <= 32767:
            raise UsageError(
                f"--max-seq-length {self.max_seq_length} is out of range",
                "pass 5 or more ([CLS] A [SEP] B [SEP] needs 5; BERT models take up to 512)",
            )
        if not 1 <= self.max_predictions <= self.max_seq_length:
            raise UsageError(
                f"--max-predictions {self.max_predictions} is out of range",
                f"pass 1 to {self.max_seq_length} (Google: 20 for length 128, 80 for 512)",
            )
        if not 0.0 < self.masked_lm_prob <= 1.0:
            raise UsageError(
                f"--masked-lm-prob {self.masked_lm_prob} is out of range",
                "pass a share above 0 and at most 1 (Google: 0.15)",
            )
        if self.dupe_factor < 1:
            raise UsageError(
                f"--dupe-factor {self.dupe_factor} is out of range", "pass 1 or more (Google: 10)"
            )
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise UsageError(
                f"--short-seq-prob {self.short_seq_prob} is out of range",
                "pass a probability from 0 to 1 (Google: 0.1)",
            )
        if self.shard_documents < 1:
            raise UsageError(
                f"--shard-documents {self.shard_documents} is out of range", "pass 1 or more"
            )


# --------------------------------------------------------------------------------------------
# Reading the corpus
# --------------------------------------------------------------------------------------------


def resolve_corpus(patterns: Sequence[str | Path]) -> list[Path]:
    """Files named or matched by glob patterns, in the order given (globs sorted), each once.

    Raises:
        BertctlError: a name that is no file and a glob that matches no file, or a folder.
    """
    files: list[Path] = []
    for pattern in patterns:
        path = paths.expand(pattern)
        if path.is_file():
            found = [path]
        elif path.is_dir():
            raise BertctlError(
                f"{path} is a folder", f"pass the text files in it, e.g. '{path}/*.txt'"
            )
        elif glob.has_magic(str(pattern)):
            found = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
            found = [p for p in found if p.is_file()]
            if not found:
                raise BertctlError(
                    f"{pattern} matches no file", "pass text files or a glob that matches some"
                )
        else:
            raise BertctlError(
                f"{path}: no such file",
                "pass text files with one sentence per line and a blank line between documents",
            )
        files.extend(found)
    if not files:
        raise UsageError("no corpus given", "pass one or more text files or globs")
    unique = list(dict.fromkeys(p.resolve() for p in files))
    return unique


@dataclass
class _ReadState:
    """What reading found so far: bytes read, and lines that held bytes that are not UTF-8."""

    bytes_read: int = 0
    bad_lines: int = 0
    first_bad: str | None = None


def iter_raw_documents(files: Sequence[Path], state: _ReadState) -> Iterator[list[str]]:
    """Documents as lists of stripped, non-blank lines, streamed; a file ends a document."""
    for path in files:
        document: list[str] = []
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise BertctlError(f"{path}: cannot read ({exc.strerror})") from None
        with handle:
            for number, raw in enumerate(handle, 1):
                state.bytes_read += len(raw)
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    line = raw.decode("utf-8", "ignore")  # as Google's convert_to_unicode
                    state.bad_lines += 1
                    if state.first_bad is None:
                        state.first_bad = f"{path}:{number}"
                line = line.strip()
                if line:
                    document.append(line)
                elif document:
                    yield document
                    document = []
        if document:
            yield document


def iter_raw_shards(
    documents: Iterator[list[str]], shard_documents: int, state: _ReadState
) -> Iterator[tuple[list[list[str]], int]]:
    """Groups of `shard_documents` documents and the bytes read up to each group's end.

    A last group smaller than half a shard joins the one before it, so that random next
    sentences never come from a handful of documents. Boundaries depend only on the corpus.
    """
    held: tuple[list[list[str]], int] | None = None
    current: list[list[str]] = []
    for document in documents:
        current.append(document)
        if len(current) == shard_documents:
            if held is not None:
                yield held
            held = (current, state.bytes_read)
            current = []
    if current and held is not None and len(current) < (shard_documents + 1) // 2:
        held = (held[0] + current, state.bytes_read)
        current = []
    if held is not None:
        yield (held[0], state.bytes_read) if not current else held
    if current:
        yield current, state.bytes_read


# --------------------------------------------------------------------------------------------
# Instances: Google's create_instances_from_document and create_masked_lm_predictions
# --------------------------------------------------------------------------------------------


def derive_seed(seed: int, shard: int, purpose: str) -> int:
    """A 64-bit seed for one shard and purpose ("documents", "dupe-3", "instances"): the same in
    every process and on every platform, unlike Python's `hash`."""
    digest = hashlib.sha256(f"bertctl-pretrain:{seed}:{shard}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


class Vocabulary:
    """What instance creation needs of the vocab: special ids, `##` pieces, the random-word list."""

    def __init__(self, vocab: Vocab) -> None:
        self.cls = vocab.id_of(CLS)
        self.sep = vocab.id_of(SEP)
        self.mask = vocab.id_of(MASK)
        size = max(vocab.ids.values()) + 1
        continuation = bytearray(size)
        for token, index in vocab.ids.items():
            if token.startswith("##"):
                continuation[index] = 1
        self.continuation = bytes(continuation)
        # Google draws from `list(vocab.keys())` of an ordered dict: each distinct token once,
        # at its first line, with the id of its last line.
        self.random_words = [vocab.ids[t] for t in dict.fromkeys(vocab.tokens)]


class _Instances:
    """A growing list of instances, with the counters of the statistics pass."""

    def __init__(self) -> None:
        self.rows: list[tuple[list[int], int, list[int], list[int], int]] = []
        self.counts = dict.fromkeys(_COUNTERS, 0)
        self.length_counts: dict[int, int] = {}


def _truncate_pair(a: list[int], b: list[int], max_tokens: int, rng: random.Random) -> int:
    """Google's truncate_seq_pair of create_pretraining_data: drop one token at a time from the
    longer side (ties: B), from its front or its back at random. Returns how many were dropped."""
    removed = 0
    while len(a) + len(b) > max_tokens:
        side = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del side[0]
        else:
            side.pop()
        removed += 1
    return removed


def mask_tokens(
    ids: list[int],
    len_a: int,
    cfg: PrepareConfig,
    vocab: Vocabulary,
    rng: random.Random,
    counts: dict[str, int],
) -> tuple[list[int], list[int], list[int]]:
    """Google's create_masked_lm_predictions on token ids.

    Returns (masked ids, sorted positions, original ids at those positions). `ids` is
    `[CLS] A [SEP] B [SEP]` with A of `len_a` tokens.
    """
    n = len(ids)
    to_predict = min(cfg.max_predictions, max(1, round(n * cfg.masked_lm_prob)))
    counts["predictions_expected"] += to_predict
    if cfg.whole_word_mask:
        cls, sep, continuation = vocab.cls, vocab.sep, vocab.continuation
        groups: list[list[int]] = []
        for index, token in enumerate(ids):
            if token in (cls, sep):
                continue
            # As Google: a `##` piece joins the previous candidate, even across [SEP].
            if groups and continuation[token]:
                groups[-1].append(index)
            else:
                groups.append([index])
        rng.shuffle(groups)
        chosen: list[int] = []
        for group in groups:
            if len(chosen) >= to_predict:
                break
            if len(chosen) + len(group) > to_predict:
                continue
            chosen.extend(group)  # groups are disjoint: nothing is ever covered twice
    else:
        # Every candidate is one position, so Google's loop takes the first `to_predict` of the
        # shuffled list (the shuffle draws the same numbers for a list of the same length).
        candidates = [*range(1, len_a + 1), *range(len_a + 2, n - 1)]
        rng.shuffle(candidates)
        chosen = candidates[:to_predict]
    output = list(ids)
    random_words = vocab.random_words
    last_word = len(random_words) - 1
    as_mask = unchanged = replaced = 0
    for index in chosen:  # the draws happen in the shuffled order, as Google's
        if rng.random() < 0.8:
            output[index] = vocab.mask
            as_mask += 1
        elif rng.random() < 0.5:
            unchanged += 1
        else:
            output[index] = random_words[rng.randint(0, last_word)]
            replaced += 1
    counts["masked"] += len(chosen)
    counts["masked_as_mask"] += as_mask
    counts["masked_unchanged"] += unchanged
    counts["masked_random"] += replaced
    positions = sorted(chosen)
    return output, positions, [ids[i] for i in positions]


def _document_instances(
    documents: list[list[list[int]]],
    doc_index: int,
    cfg: PrepareConfig,
    vocab: Vocabulary,
    rng: random.Random,
    sink: _Instances,
) -> None:
    """Google's create_instances_from_document: every instance of one document, one pass."""
    counts = sink.counts
    document = documents[doc_index]
    max_tokens = cfg.max_seq_length - 3
    target = max_tokens
    short = False
    if rng.random() < cfg.short_seq_prob:
        target = rng.randint(2, max_tokens)
        short = True
    counts["document_passes"] += 1
    counts["short_targets"] += short
    chunk: list[list[int]] = []
    chunk_tokens = 0
    i = 0
    while i < len(document):
        chunk.append(document[i])
        chunk_tokens += len(document[i])
        if i == len(document) - 1 or chunk_tokens >= target:
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            tokens_a = [t for sentence in chunk[:a_end] for t in sentence]
            tokens_b: list[int] = []
            if len(chunk) >= 2:
                counts["coin_flips"] += 1
            if len(chunk) == 1 or rng.random() < 0.5:
                is_random_next = 1
                counts["coin_random_next"] += len(chunk) >= 2
                target_b = target - len(tokens_a)
                for _ in range(10):
                    other = rng.randint(0, len(documents) - 1)
                    if other != doc_index:
                        break
                other_doc = documents[other]
                for j in range(rng.randint(0, len(other_doc) - 1), len(other_doc)):
                    tokens_b.extend(other_doc[j])
                    if len(tokens_b) >= target_b:
                        break
                i -= len(chunk) - a_end  # the unused sentences go back for the next chunk
            else:
                is_random_next = 0
                tokens_b = [t for sentence in chunk[a_end:] for t in sentence]
            removed = _truncate_pair(tokens_a, tokens_b, max_tokens, rng)
            ids = [vocab.cls, *tokens_a, vocab.sep, *tokens_b, vocab.sep]
            masked, positions, labels = mask_tokens(ids, len(tokens_a), cfg, vocab, rng, counts)
            sink.rows.append((masked, len(tokens_a), positions, labels, is_random_next))
            n = len(ids)
            counts["instances"] += 1
            counts["short_target_instances"] += short
            counts["tokens"] += n
            counts["maskable_tokens"] += n - 3
            counts["random_next"] += is_random_next
            counts["truncated_instances"] += removed > 0
            counts["truncated_tokens"] += removed
            sink.length_counts[n] = sink.length_counts.get(n, 0) + 1
            chunk = []
            chunk_tokens = 0
        i += 1


# --------------------------------------------------------------------------------------------
# One shard, start to finish (runs in a worker process or in-process)
# --------------------------------------------------------------------------------------------


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def build_shard(
    index: int,
    raw_documents: list[list[str]],
    tokenizer: Tokenizer,
    cfg: PrepareConfig,
    out_dir: Path,
    on_pass: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Tokenize, create and mask the instances of one shard and write its arrays.

    Returns the shard's manifest entry: name, counters, and the length histogram.
    """
    vocab = Vocabulary(tokenizer.vocab)
    documents: list[list[list[int]]] = []
    sentences = corpus_tokens = 0
    for raw in raw_documents:
        document = [ids for ids in (tokenizer.tokenize_with_ids(line)[1] for line in raw) if ids]
        if document:
            documents.append(document)
            sentences += len(document)
            corpus_tokens += sum(len(s) for s in document)
    random.Random(derive_seed(cfg.seed, index, "documents")).shuffle(documents)
    sink = _Instances()
    for dupe in range(cfg.dupe_factor):
        rng = random.Random(derive_seed(cfg.seed, index, f"dupe-{dupe}"))
        for doc_index in range(len(documents)):
            _document_instances(documents, doc_index, cfg, vocab, rng, sink)
        if on_pass is not None:
            on_pass()
    random.Random(derive_seed(cfg.seed, index, "instances")).shuffle(sink.rows)
    _write_arrays(out_dir / shard_name(index), sink.rows, cfg)
    counts = sink.counts
    counts.update(documents=len(documents), sentences=sentences, corpus_tokens=corpus_tokens)
    histogram = [0] * (cfg.max_seq_length + 1)
    for length, count in sink.length_counts.items():
        histogram[length] = count
    return {"name": shard_name(index), **counts, "length_histogram": histogram}


def _write_arrays(folder: Path, rows: list, cfg: PrepareConfig) -> None:
    n, s, p = len(rows), cfg.max_seq_length, cfg.max_predictions
    arrays = {
        name: np.zeros((n, *(s if d == "S" else p for d in dims)), dtype=dtype)
        for name, (dtype, dims) in ARRAYS.items()
    }
    input_ids, segment_ids = arrays["input_ids"], arrays["segment_ids"]
    positions_out, ids_out = arrays["masked_lm_positions"], arrays["masked_lm_ids"]
    for row, (ids, len_a, positions, labels, _label) in enumerate(rows):
        length = len(ids)
        input_ids[row, :length] = ids
        segment_ids[row, len_a + 2 : length] = 1
        positions_out[row, : len(positions)] = positions
        ids_out[row, : len(labels)] = labels
    arrays["lengths"][:] = [len(r[0]) for r in rows]
    arrays["masked_lm_counts"][:] = [len(r[2]) for r in rows]
    arrays["next_sentence_labels"][:] = [r[4] for r in rows]
    folder.mkdir(parents=True)
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array, allow_pickle=False)


_worker_tokenizer: Tokenizer | None = None


def _init_worker(vocab: Vocab, lowercase: bool) -> None:
    global _worker_tokenizer
    _worker_tokenizer = Tokenizer(vocab, lowercase)


def _run_shard(args: tuple[int, list[list[str]], PrepareConfig, Path]) -> dict[str, Any]:
    assert _worker_tokenizer is not None
    index, raw, cfg, out_dir = args
    return build_shard(index, raw, _worker_tokenizer, cfg, out_dir)


# --------------------------------------------------------------------------------------------
# The whole job
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statistics:
    """The statistics pass, against Google's definitions.

    Attributes:
        counts: the summed counters (documents, instances, masked, ...).
        mask_rate: masked / maskable tokens (maskable: all but [CLS] and the two [SEP]).
        expected_mask_rate: Google's count per instance, min(max_predictions, max(1,
            round(len * masked_lm_prob))), summed, over maskable tokens; equal to mask_rate
            without whole-word masking, at most it with.
        split: shares of the chosen tokens made [MASK], left unchanged, made a random word
            (Google: 0.8 / 0.1 / 0.1; a random word equals the original 1 time in |vocab|).
        is_next_share: share of instances whose B truly follows A (below 0.5: one-sentence
            chunks always take a random next).
        coin_is_next_share: the same among chunks of two or more sentences, where Google flips a
            fair coin (expected 0.5).
        short_target_share: share of document passes that drew a short target (expected
            short_seq_prob); short_target_instances: share of instances from those passes.
        mean_length: mean tokens per instance, specials included; fill: mean_length / max.
    """

    counts: dict[str, int]
    mask_rate: float
    expected_mask_rate: float
    split: dict[str, float]
    is_next_share: float
    coin_is_next_share: float
    short_target_share: float
    short_target_instance_share: float
    mean_length: float
    fill: float
    length_histogram: list[int]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def summarize(shards: Sequence[dict[str, Any]], cfg: PrepareConfig) -> Statistics:
    """Totals over shards, and the rates derived from them."""
    counts = {key: sum(int(s[key]) for s in shards) for key in _COUNTERS}
    histogram = [0] * (cfg.max_seq_length + 1)
    for shard in shards:
        for length, count in enumerate(shard["length_histogram"]):
            histogram[length] += count
    masked = counts["masked"]
    return Statistics(
        counts=counts,
        mask_rate=_ratio(masked, counts["maskable_tokens"]),
        expected_mask_rate=_ratio(counts["predictions_expected"], counts["maskable_tokens"]),
        split={
            "mask": _ratio(counts["masked_as_mask"], masked),
            "unchanged": _ratio(counts["masked_unchanged"], masked),
            "random": _ratio(counts["masked_random"], masked),
        },
        is_next_share=_ratio(counts["instances"] - counts["random_next"], counts["instances"]),
        coin_is_next_share=_ratio(
            counts["coin_flips"] - counts["coin_random_next"], counts["coin_flips"]
        ),
        short_target_share=_ratio(counts["short_targets"], counts["document_passes"]),
        short_target_instance_share=_ratio(counts["short_target_instances"], counts["instances"]),
        mean_length=_ratio(counts["tokens"], counts["instances"]),
        fill=_ratio(counts["tokens"], counts["instances"] * cfg.max_seq_length),
        length_histogram=histogram,
    )


# Below this corpus size worker processes would cost more than they save.
PARALLEL_MIN_BYTES = 16 << 20


def default_workers(corpus_bytes: int) -> int:
    """All cores (at most 8) for a corpus big enough to repay starting them, else 1."""
    if corpus_bytes < PARALLEL_MIN_BYTES:
        return 1
    return max(1, min(8, os.cpu_count() or 1))


@dataclass(frozen=True)
class PrepareResult:
    """What `prepare` made: the folder, its manifest, the statistics, reading warnings, and the
    number of worker processes used."""

    out: Path
    manifest: dict[str, Any]
    statistics: Statistics
    warnings: tuple[str, ...]
    workers: int


def vocab_sha256(vocab: Vocab) -> str:
    """SHA-256 of the vocab's tokens, one per line (a clean vocab.txt's own SHA-256)."""
    return hashlib.sha256(("\n".join(vocab.tokens) + "\n").encode("utf-8")).hexdigest()


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("bertctl")
    except Exception:
        return "unknown"


def check_out(
    files: Sequence[Path], out: Path, overwrite: bool, inputs: Sequence[Path | None] = ()
) -> None:
    """Refuse an `out` that holds or lies in an input (a corpus file, the vocab, the model), or
    that is in the way: not empty without `overwrite`, or not shards bertctl prepared.

    Raises:
        BertctlError: what is in the way and what to pass instead.
    """
    outputs.check_folder(out, outputs.SHARDS, overwrite=overwrite, inputs=[*files, *inputs])


def prepare(
    corpus: Sequence[str | Path],
    out: str | Path,
    tokenizer: Tokenizer,
    cfg: PrepareConfig | None = None,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    inputs: Sequence[Path | None] = (),
    tokenizer_description: str = "",
    progress: Any = None,
) -> PrepareResult:
    """Read a corpus and write pretraining shards and a manifest to `out`, atomically.

    Everything is written into a hidden folder beside `out` that is renamed to `out` at the end,
    while a lock keeps a second process from writing `out` too; an existing non-empty `out` is
    refused unless `overwrite` (see `check_out`).

    Args:
        corpus: text files or globs, one sentence per line, a blank line between documents.
        out: the output folder.
        tokenizer: the model's tokenizer (vocab and casing).
        cfg: the settings (Google's defaults when None).
        workers: processes; the output is the same for any number. Default: all cores (at most
            8) for a corpus of 16 MiB or more, else 1.
        overwrite: replace a non-empty `out` that holds shards bertctl prepared (and nothing else).
        inputs: other files the command read (the vocab, the model folder), never replaced.
        tokenizer_description: a line naming the tokenizer, for the manifest.
        progress: an object with `set_total(n)` and `advance(n, postfix=...)` (bertctl.ui's),
            advanced in corpus bytes.

    Raises:
        BertctlError: a missing corpus file, a corpus without text, an `out` in the way.
    """
    cfg = cfg or PrepareConfig()
    check_workers(workers)
    files = resolve_corpus(corpus)
    out = paths.expand(out)
    with outputs.writing(out, "prepared"):
        check_out(files, out, overwrite, inputs)
        return _write(files, out, tokenizer, cfg, workers, tokenizer_description, progress)


def _write(
    files: list[Path],
    out: Path,
    tokenizer: Tokenizer,
    cfg: PrepareConfig,
    workers: int | None,
    tokenizer_description: str,
    progress: Any,
) -> PrepareResult:
    """Build the shards in a hidden folder beside `out`, then rename it into place."""
    total_bytes = sum(p.stat().st_size for p in files)
    if workers is None:
        workers = default_workers(total_bytes)
    if progress is not None:
        progress.set_total(total_bytes)
    state = _ReadState()
    try:
        with outputs.building(out) as tmp:
            shards = _build_shards(files, tokenizer, cfg, tmp, workers, state, progress)
            statistics = summarize(shards, cfg)
            if statistics.counts["instances"] == 0:
                raise BertctlError(
                    f"the corpus holds no text ({', '.join(str(p) for p in files)})",
                    "pass text files with one sentence per line and a blank line between documents",
                )
            manifest = _manifest(files, tokenizer, tokenizer_description, cfg, shards, statistics)
            outputs.write_atomic(tmp / MANIFEST, _dump_json(manifest))
    except OSError as exc:  # most often a full disk; the half-built folder is dropped
        if exc.filename is not None and Path(exc.filename) in files:
            raise BertctlError(f"cannot read {exc.filename}: {exc.strerror}") from exc
        raise BertctlError(
            f"cannot write the shards beside {out}: {exc.strerror or exc}",
            f"free some disk space and run again; {out} was left as it was",
        ) from exc
    warnings: list[str] = []
    if state.bad_lines:
        warnings.append(
            f"{state.bad_lines} line(s) held bytes that are not UTF-8 (first: {state.first_bad}); "
            "dropped those bytes as Google's create_pretraining_data does"
        )
    if any(int(s["documents"]) == 1 for s in shards):
        warnings.append(
            "a shard holds a single document: its random next sentences come from that document"
        )
    return PrepareResult(out, manifest, statistics, tuple(warnings), workers)


def _build_shards(
    files: list[Path],
    tokenizer: Tokenizer,
    cfg: PrepareConfig,
    tmp: Path,
    workers: int,
    state: _ReadState,
    progress: Any,
) -> list[dict[str, Any]]:
    """Every shard, in order, on `workers` processes with a bounded number in flight."""
    raw_shards = iter_raw_shards(iter_raw_documents(files, state), cfg.shard_documents, state)
    results: list[dict[str, Any]] = []
    done_bytes = 0
    instances = 0

    def advance(shard: dict[str, Any], end_bytes: int, counted: float) -> None:
        nonlocal done_bytes, instances
        instances += int(shard["instances"])
        if progress is not None:
            progress.advance(end_bytes - done_bytes - counted, postfix=f"{instances:,} instances")
        done_bytes = end_bytes

    if workers == 1:
        for index, (raw, end_bytes) in enumerate(raw_shards):
            step = (end_bytes - done_bytes) / cfg.dupe_factor
            counted = 0.0

            def on_pass(step: float = step) -> None:
                nonlocal counted
                counted += step
                if progress is not None:
                    progress.advance(step)

            shard = build_shard(index, raw, tokenizer, cfg, tmp, on_pass)
            results.append(shard)
            advance(shard, end_bytes, counted)
        return results

    from collections import deque

    with tokenizer_pool(workers, _init_worker, tokenizer) as pool:
        pending: deque = deque()
        for index, (raw, end_bytes) in enumerate(raw_shards):
            pending.append((pool.submit(_run_shard, (index, raw, cfg, tmp)), end_bytes))
            del raw
            if len(pending) > workers:  # bounded: memory stays flat on any corpus size
                future, end = pending.popleft()
                shard = future.result()
                results.append(shard)
                advance(shard, end, 0.0)
        while pending:
            future, end = pending.popleft()
            shard = future.result()
            results.append(shard)
            advance(shard, end, 0.0)
    return results


def _manifest(
    files: list[Path],
    tokenizer: Tokenizer,
    description: str,
    cfg: PrepareConfig,
    shards: list[dict[str, Any]],
    statistics: Statistics,
) -> dict[str, Any]:
    vocab = tokenizer.vocab
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "bertctl_version": _version(),
        "settings": asdict(cfg),
        "tokenizer": {
            "vocab_sha256": vocab_sha256(vocab),
            "vocab_size": len(vocab),
            "do_lower_case": tokenizer.do_lower_case,
            "description": description,
            "cls_id": vocab.id_of(CLS),
            "sep_id": vocab.id_of(SEP),
            "mask_id": vocab.id_of(MASK),
            "pad_id": 0,
        },
        "corpus": [{"path": str(p), "bytes": p.stat().st_size} for p in files],
        "arrays": {
            name: {"dtype": dtype, "shape": ["N", *dims]} for name, (dtype, dims) in ARRAYS.items()
        },
        "shards": shards,
        "totals": {"shards": len(shards), **statistics.counts},
        "statistics": {k: v for k, v in statistics.as_dict().items() if k != "counts"},
    }


def _dump_json(obj: Any) -> str:
    """Indented JSON with each list of numbers or strings on one line (histograms stay short)."""
    inline: list[str] = []

    def mark(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            if all(isinstance(v, (int, float, str)) for v in value):
                inline.append(json.dumps(value, ensure_ascii=False))
                return f"\0{len(inline) - 1}\0"
            return [mark(v) for v in value]
        return value

    text = json.dumps(mark(obj), indent=2, ensure_ascii=False)
    for index, compact in enumerate(inline):
        text = text.replace(f'"\\u0000{index}\\u0000"', compact, 1)
    return text + "\n"


# --------------------------------------------------------------------------------------------
# Reading shards back
# --------------------------------------------------------------------------------------------


class PretrainingDataset:
    """Memory-mapped pretraining instances over all shards of a prepared folder.

    `len(ds)` instances; `ds[i]` is one instance as a dict of numpy arrays with Google's feature
    names: input_ids, input_mask, segment_ids, masked_lm_positions, masked_lm_ids,
    masked_lm_weights (float32), next_sentence_labels; `ds.batch(indices)` is the same with a
    leading batch dimension. Nothing is read until an instance is asked for.

    Attributes:
        manifest: the folder's manifest.json.
        settings: the settings it was made with.
        shards: each shard's arrays (memory-mapped), in order.
        offsets: the index of each shard's first instance, and the total at the end.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BertctlError(
                f"{self.folder} holds no {MANIFEST}",
                "pass a folder made by `bertctl pretrain prepare`",
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BertctlError(f"{path} is not valid JSON ({exc})") from None
        if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
            raise BertctlError(
                f"{path} is not a bertctl pretraining-data manifest of version {FORMAT_VERSION}",
                "prepare the data again with this bertctl",
            )
        self.manifest = manifest
        self.settings = PrepareConfig(**manifest["settings"])
        self.shards: list[dict[str, np.ndarray]] = []
        offsets = [0]
        for entry in manifest["shards"]:
            arrays = {
                name: np.load(self.folder / entry["name"] / f"{name}.npy", mmap_mode="r")
                for name in ARRAYS
            }
            n = len(arrays["lengths"])
            if n != int(entry["instances"]):
                raise BertctlError(
                    f"{self.folder / entry['name']} holds {n} instances, the manifest says "
                    f"{entry['instances']}",
                    "prepare the data again",
                )
            self.shards.append(arrays)
            offsets.append(offsets[-1] + n)
        self.offsets = np.asarray(offsets, dtype=np.int64)

    @property
    def vocab_sha256(self) -> str:
        return self.manifest["tokenizer"]["vocab_sha256"]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _locate(self, index: int) -> tuple[int, int]:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"instance {index} out of range ({n} instances)")
        shard = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return shard, index - int(self.offsets[shard])

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        shard, row = self._locate(int(index))
        a = self.shards[shard]
        return _features({name: np.asarray(a[name][row]) for name in ARRAYS}, self.settings)

    def batch(self, indices: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """Instances stacked along a first dimension, in the order given."""
        rows = [self._locate(int(i)) for i in indices]
        stacked = {}
        for name, (dtype, dims) in ARRAYS.items():
            if rows:
                stacked[name] = np.stack([np.asarray(self.shards[s][name][r]) for s, r in rows])
            else:
                shape = [
                    self.settings.max_seq_length if d == "S" else self.settings.max_predictions
                    for d in dims
                ]
                stacked[name] = np.zeros((0, *shape), dtype=dtype)
        return _features(stacked, self.settings)


def _features(a: dict[str, np.ndarray], cfg: PrepareConfig) -> dict[str, np.ndarray]:
    """Google's feature dict from the stored arrays (mask and weights derived)."""
    seq = np.arange(cfg.max_seq_length)
    pred = np.arange(cfg.max_predictions)
    lengths = np.asarray(a["lengths"])[..., None]
    counts = np.asarray(a["masked_lm_counts"])[..., None]
    return {
        "input_ids": a["input_ids"],
        "input_mask": (seq < lengths).astype(np.int8),
        "segment_ids": a["segment_ids"],
        "masked_lm_positions": a["masked_lm_positions"],
        "masked_lm_ids": a["masked_lm_ids"],
        "masked_lm_weights": (pred < counts).astype(np.float32),
        "next_sentence_labels": a["next_sentence_labels"],
    }


def open_shards(folder: str | Path) -> PretrainingDataset:
    """The instances of a folder made by `bertctl pretrain prepare`, memory-mapped."""
    return PretrainingDataset(folder)
