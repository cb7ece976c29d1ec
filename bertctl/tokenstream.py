"""Tokenize a file of texts: one output line per input line, in constant memory, on N processes.

Input is read in chunks of about 1 MiB of whole lines; each chunk becomes one block of output
text. With several workers, chunks go to a process pool with a bounded number in flight, and
blocks come back in input order, so memory stays flat however large the file is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from bertctl.errors import BertctlError, UsageError
from bertctl.tokenization import Tokenizer, Vocab, build_inputs

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

CHUNK_BYTES = 1 << 20
# The longest line read, in bytes. BERT reads at most 512 tokens (a few kB of text) of one; a
# line of a megabyte is a file without line breaks (a binary, a dump), and reading it whole
# would take memory that grows with it. Lines are read in pieces of at most this size.
MAX_LINE_BYTES = 1 << 20
_LINE_HINT = "--input takes one text per line; split the file into lines"
# Below this size a file is done before worker processes would have started.
PARALLEL_MIN_BYTES = 4 << 20


@dataclass(frozen=True)
class OutputFormat:
    """json: one JSON object per line, else space-separated WordPiece tokens.
    max_seq_length: with json, add the model inputs truncated and padded to this length."""

    as_json: bool
    max_seq_length: int | None = None


@dataclass(frozen=True)
class Block:
    """The output of one chunk: its text, how many lines and bytes it covered, and the
    1-based numbers of lines that held bytes that are not UTF-8."""

    text: str
    lines: int
    nbytes: int
    bad_lines: tuple[int, ...]


def record(
    tokenizer: Tokenizer,
    text: str,
    pair: str | None = None,
    max_seq_length: int | None = None,
    full: bool = True,
) -> dict:
    """One JSON-ready record: WordPiece tokens and ids, then (if `full`) the model inputs."""
    tokens, ids = tokenizer.tokenize_with_ids(text)
    out: dict = {"tokens": tokens, "ids": ids}
    tokens_b = ids_b = None
    if pair is not None:
        tokens_b, ids_b = tokenizer.tokenize_with_ids(pair)
        out.update(pair_tokens=tokens_b, pair_ids=ids_b)
    if not full:
        return out
    enc = build_inputs(tokenizer.vocab, tokens, ids, tokens_b, ids_b, max_seq_length)
    out.update(
        input_tokens=enc.tokens,
        input_ids=enc.input_ids,
        segment_ids=enc.segment_ids,
        input_mask=enc.input_mask,
    )
    if enc.truncated:
        out["truncated"] = enc.truncated
    return out


class _LeanJson:
    """`{"tokens": [...], "ids": [...]}` lines, built from per-id strings.

    Every token is a vocab entry, so its JSON spelling can be made once per vocab id; joining
    those is about 2.5 times faster than json.dumps of a fresh dict per line, which otherwise
    costs as much as the tokenization itself. The output is identical to json.dumps'.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokens = [json.dumps(t, ensure_ascii=False) for t in tokenizer.vocab.tokens]
        self.ids = [str(i) for i in range(len(tokenizer.vocab.tokens))]

    def line(self, ids: list[int]) -> str:
        tokens, numbers = self.tokens, self.ids
        return (
            '{"tokens": ['
            + ", ".join([tokens[i] for i in ids])
            + '], "ids": ['
            + ", ".join([numbers[i] for i in ids])
            + "]}"
        )


def format_lines(
    tokenizer: Tokenizer,
    lines: list[bytes],
    fmt: OutputFormat,
    first_line: int,
    lean: _LeanJson | None = None,
) -> Block:
    """Tokenize raw lines. Undecodable bytes are dropped, as Google's `errors="ignore"` does.

    `lean` (made once per tokenizer) writes the tokens/ids JSON lines fast.
    """
    out = []
    bad = []
    if not fmt.as_json or fmt.max_seq_length is not None:
        lean = None
    elif lean is None:
        lean = _LeanJson(tokenizer)
    for number, raw in enumerate(lines, start=first_line):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "ignore")
            bad.append(number)
        text = text.rstrip("\r\n")
        if lean is not None:
            out.append(lean.line(tokenizer.tokenize_with_ids(text)[1]))
        elif fmt.as_json:
            rec = record(tokenizer, text, None, fmt.max_seq_length, full=True)
            out.append(json.dumps(rec, ensure_ascii=False))
        else:
            out.append(" ".join(tokenizer.tokenize(text)))
    text = "\n".join(out) + "\n" if out else ""
    return Block(text, len(lines), sum(map(len, lines)), tuple(bad))


def bounded_lines(
    handle: BinaryIO,
    label: str,
    hint: str,
    limit: int = MAX_LINE_BYTES,
    error: type[BertctlError] = BertctlError,
) -> Iterator[bytes]:
    """Each line of a binary file, its b"\\n" kept, read with `readline(limit + 1)`: memory stays
    within `limit` whatever the file holds. A line longer than `limit` bytes (its line break not
    counted) is an `error` naming `label` and the line, with `hint` as the fix."""
    number = 0
    while raw := handle.readline(limit + 1):
        number += 1
        if len(raw) > limit and not raw.endswith(b"\n"):
            raise error(
                f"{label} line {number} is longer than {_size(limit)}, more than any text a "
                "model reads",
                hint,
            )
        yield raw


def _size(n: int) -> str:
    """1048576 -> '1 MiB' (bounds are powers of two)."""
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n:,} bytes"


def chunks(
    handle: BinaryIO, size: int = CHUNK_BYTES, label: str = "the input"
) -> Iterator[list[bytes]]:
    """Whole lines, grouped into chunks of about `size` bytes (see `bounded_lines`)."""
    chunk: list[bytes] = []
    held = 0
    for raw in bounded_lines(handle, label, _LINE_HINT):
        chunk.append(raw)
        held += len(raw)
        if held >= size:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk


_worker: tuple[Tokenizer, _LeanJson] | None = None


def _init_worker(vocab: Vocab, lowercase: bool) -> None:
    global _worker
    tokenizer = Tokenizer(vocab, lowercase)
    _worker = (tokenizer, _LeanJson(tokenizer))


def _run_chunk(args: tuple[list[bytes], OutputFormat, int]) -> Block:
    assert _worker is not None
    tokenizer, lean = _worker
    return format_lines(tokenizer, *args, lean=lean)


def check_workers(workers: int | None) -> None:
    """Refuse a --workers count that could only exhaust the machine: each worker process holds
    its own tokenizer, and more than a few per core only queue for the same cores."""
    if workers is None:
        return
    cores = os.cpu_count() or 1
    if workers < 1 or workers > 4 * cores:
        raise UsageError(
            f"--workers {workers} is out of range for the {cores} cores here",
            f"pass 1 to {4 * cores} (or leave it out: one per core)",
        )


def default_workers(size: int | None) -> int:
    """All cores (at most 8) for a file big enough to repay starting them, else 1."""
    if size is None or size < PARALLEL_MIN_BYTES:
        return 1
    return max(1, min(8, os.cpu_count() or 1))


def tokenizer_pool(
    workers: int, initializer: Callable[[Vocab, bool], None], tokenizer: Tokenizer
) -> ProcessPoolExecutor:
    """`workers` processes, each given the vocab and casing of `tokenizer` by `initializer`
    (which builds its own Tokenizer once, rather than one being pickled with every job)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # "spawn": a fresh interpreter per worker, safe next to the progress bar's thread.
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(initializer, tokenizer.vocab, tokenizer.do_lower_case),
    )


def _start_worker(initializer: Callable[[Vocab, bool], None], vocab: Vocab, lower: bool) -> None:
    """A worker ignores Ctrl-C: the terminal sends it to every process, and the main one stops
    the work and says what was kept; a worker's own KeyboardInterrupt would only add a
    traceback to that one line."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    initializer(vocab, lower)


def tokenize_chunks(
    tokenizer: Tokenizer, source: Iterable[list[bytes]], fmt: OutputFormat, workers: int = 1
) -> Iterator[Block]:
    """Blocks of output, in input order, from chunks of raw lines."""
    first = 1
    if workers <= 1:
        lean = _LeanJson(tokenizer)
        for lines in source:
            yield format_lines(tokenizer, lines, fmt, first, lean)
            first += len(lines)
        return
    from collections import deque

    with tokenizer_pool(workers, _init_worker, tokenizer) as pool:
        pending: deque = deque()
        for lines in source:
            pending.append(pool.submit(_run_chunk, (lines, fmt, first)))
            first += len(lines)
            if len(pending) >= 2 * workers:  # bounded: constant memory on any input size
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
