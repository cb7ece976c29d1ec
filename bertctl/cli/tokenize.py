"""`bertctl tokenize`: WordPiece tokens, ids and segments exactly as the model sees them."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from bertctl import ui
from bertctl.errors import BertctlError, Interrupted, UsageError


def tokenize(
    text: Annotated[
        str | None, typer.Argument(help="Text to tokenize.", show_default=False)
    ] = None,
    pair: Annotated[
        str | None, typer.Option("--pair", help="Second sentence of a pair (segment B).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", metavar="NAME|DIR", help="Catalogue name, release or HF-format folder."
        ),
    ] = None,
    vocab: Annotated[
        str | None, typer.Option("--vocab", metavar="FILE", help="A vocab.txt to use directly.")
    ] = None,
    cased: Annotated[
        bool | None,
        typer.Option(
            "--cased/--uncased",
            help="Keep case and accents, or lowercase and strip them. Default: follow the model "
            "(a bare vocab is uncased).",
            show_default=False,
            metavar="",
        ),
    ] = None,
    max_seq_length: Annotated[
        int | None,
        typer.Option(
            "--max-seq-length",
            min=1,
            help="Truncate as Google does and show padding and mask up to this length.",
        ),
    ] = None,
    input_file: Annotated[
        str | None,
        typer.Option(
            "--input", "-i", metavar="FILE", help="Tokenize each line of FILE ('-' for stdin)."
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="JSON output (one object per line with --input).", metavar=""),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Processes for --input (default: all cores for files over 4 MiB).",
        ),
    ] = None,
) -> None:
    """WordPiece tokens, ids and segment ids, exactly as Google's tokenization.py gives them.

    [bold]Examples[/]

      [cyan]bertctl tokenize "John Smith"[/]
      [cyan]bertctl tokenize "Is this a paraphrase?" --pair "Is it one?" --max-seq-length 16[/]
      [cyan]bertctl tokenize -i corpus.txt --json --model base-uncased > tokens.jsonl[/]
    """
    from bertctl.modelref import tokenizer_for

    if text is None and input_file is None:
        raise UsageError(
            "nothing to tokenize",
            'pass a TEXT argument or --input FILE (e.g. bertctl tokenize "John Smith")',
        )
    if text is not None and input_file is not None:
        raise UsageError("both TEXT and --input given", "pass one of them")
    if pair is not None and input_file is not None:
        raise UsageError("--pair works with a TEXT argument, not with --input", "drop --pair")
    lowercase = None if cased is None else not cased
    choice = tokenizer_for(model, vocab, lowercase)
    for warning in choice.warnings:
        ui.warn(warning)
    if input_file is not None:
        _tokenize_stream(choice.tokenizer, input_file, as_json, max_seq_length, workers)
        return
    from bertctl.tokenstream import record

    assert text is not None
    encoded = record(choice.tokenizer, text, pair, max_seq_length)
    if as_json:
        ui.print_json({"model": choice.description, **encoded})
        return
    ui.info(choice.description)
    print_record(choice.tokenizer, encoded)


def print_record(tokenizer, record: dict) -> None:
    """A `tokenstream.record` as aligned rows: tokens, ids, segments and (with padding) the
    mask (`bertctl demo` shows its examples this way too)."""
    ids = record["input_ids"]
    shown = [tokenizer.vocab.tokens[i] for i in ids[len(record["input_tokens"]) :]]
    tokens = record["input_tokens"] + shown
    padded = len(ids) > len(record["input_tokens"]) or "truncated" in record
    rows = [("tokens", tokens), ("ids", ids), ("segments", record["segment_ids"])]
    if padded or len(record["input_mask"]) != len(record["input_tokens"]):
        rows.append(("mask", record["input_mask"]))
    for label, values in rows:
        ui.out.print(f"[bold]{label:<9}[/]", end="")
        ui.out.print(" ".join(str(v) for v in values), markup=False)
    if record.get("truncated"):
        ui.info(f"truncated {record['truncated']} token(s) to fit --max-seq-length")


def _open_input(name: str) -> tuple[BinaryIO, int | None, str]:
    if name == "-":
        if sys.stdin is None:  # closed when bertctl started (`<&-`); fd 0 now reads /dev/null
            raise BertctlError(
                "--input -: standard input is closed (<&-)",
                "pipe the text in, or pass --input FILE",
            )
        return sys.stdin.buffer, None, "<stdin>"
    path = Path(name)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise BertctlError(
            f"{path}: no such file", "pass a text file with one text per line"
        ) from None
    except IsADirectoryError:
        raise BertctlError(
            f"{path} is a folder", "pass a text file with one text per line"
        ) from None
    except OSError as exc:
        raise BertctlError(f"{path}: cannot read ({exc.strerror})") from None
    return handle, path.stat().st_size, str(path)


def _output_writer():
    """A function that writes text to stdout completely, or raises OSError.

    Python's buffered stdout can accept a large write only in part on a full disk (a short
    write) and still report success, which would cut the output short in silence; the bytes
    are written here in a loop until all of them are out or the system refuses.
    """
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # a text-only stream, as when a test captures the output
        return sys.stdout.write
    sys.stdout.flush()
    encoding, errors = sys.stdout.encoding or "utf-8", sys.stdout.errors or "strict"

    def write_all(text: str) -> None:
        view = memoryview(text.encode(encoding, errors))
        while view:
            view = view[buffer.write(view) :]

    return write_all


def _tokenize_stream(
    tokenizer, name: str, as_json: bool, max_seq_length: int | None, workers: int | None
) -> None:
    """One output line per input line, in constant memory; progress on stderr."""
    from bertctl.tokenstream import (
        OutputFormat,
        check_workers,
        chunks,
        default_workers,
        tokenize_chunks,
    )

    check_workers(workers)
    handle, size, label = _open_input(name)
    fmt = OutputFormat(as_json, max_seq_length)
    n_workers = workers if workers is not None else default_workers(size)
    write = _output_writer()
    bad_lines: list[int] = []
    lines = 0
    try:
        with (
            ui.progress("Tokenizing", total=size, unit="B") as bar,
            _ctrl_c_between_blocks() as stop,
        ):
            for block in tokenize_chunks(tokenizer, chunks(handle, label=label), fmt, n_workers):
                write(block.text)
                lines += block.lines
                bad_lines.extend(block.bad_lines)
                bar.advance(block.nbytes, postfix=f"{lines:,} lines")
                if stop:
                    raise KeyboardInterrupt
        sys.stdout.flush()
    except KeyboardInterrupt:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
        again = f"tail -n +{lines + 1} {label}" if label != "<stdin>" else "the rest of the input"
        raise Interrupted(
            f"interrupted after {lines:,} lines; the output holds those {lines:,} lines, each whole",
            f"to go on, tokenize from line {lines + 1} ({again} | bertctl tokenize --input -)",
        ) from None
    except OSError as exc:
        # The bytes still buffered cannot be written either; point stdout at /dev/null so the
        # exit flush does not fail a second time.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if isinstance(exc, BrokenPipeError):
            # The reader stopped (`| head`): that is how a pipe ends, not an error. Exit
            # quietly, as Unix tools do, with the status a pipe's writer gets.
            raise typer.Exit(141) from None
        # A full disk under a redirected stdout.
        raise BertctlError(
            f"cannot write the output after {lines:,} lines: {exc.strerror or exc}",
            "free some disk space (or write elsewhere) and run again",
        ) from None
    finally:
        if name != "-":  # sys.stdin may be None (closed); a file is ours to close
            handle.close()
    if bad_lines:
        ui.warn(
            f"{label}: {len(bad_lines)} line(s) held bytes that are not UTF-8 (first: line "
            f"{bad_lines[0]}); dropped those bytes as Google's tokenizer does"
        )


@contextlib.contextmanager
def _ctrl_c_between_blocks() -> Iterator[list[int]]:
    """Ctrl-C noted, and acted on once the block being written is out whole: an output cut in
    the middle of a line would end in a record no reader can parse. Yields the list the
    signal lands in (empty until then)."""
    seen: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    except ValueError:  # not the main thread: Ctrl-C is not this thread's to hold
        yield seen
        return
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)
