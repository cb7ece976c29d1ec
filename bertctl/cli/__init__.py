"""The `bertctl` command: a root that only wires the command groups and maps errors to exit codes.

Heavy libraries (torch, transformers) are imported inside command bodies only, so `--help`,
`tokenize` and `inspect` start fast.
"""

from __future__ import annotations

import errno
import os
import sys

import typer

from bertctl.cli import (
    convert,
    demo,
    download,
    evaluate,
    finetune,
    inspect,
    memory,
    models,
    pretrain,
    tokenize,
    verify,
)

HELP = """\
Google's BERT releases, from zip to fine-tuned, evaluated model.

[bold]Examples[/]

  [cyan]bertctl demo[/]                              tokenize, inspect, fine-tune
  [cyan]bertctl tokenize "John Smith"[/]             Google-exact tokens and ids
  [cyan]bertctl tokenize -i text.txt --json[/]       one JSON object per line
  [cyan]bertctl inspect base-uncased[/]              architecture, parameter counts
  [cyan]bertctl models[/]                            Google's releases, state here
  [cyan]bertctl download base-multilingual-cased[/]  download, verify, convert
  [cyan]bertctl verify base-uncased[/]               hashes, CRCs, shapes, vocab
  [cyan]bertctl convert model.zip --out bert[/]      TF checkpoint to HF, no TF
  [cyan]bertctl gpus[/]                              GPUs here: memory, bf16
  [cyan]bertctl plan base-cased --gpu-memory 12G[/]  memory needed, batches that fit
  [cyan]bertctl finetune mrpc --gpu 0[/]             fine-tune, Google's recipe
  [cyan]bertctl evaluate runs/mrpc[/]                dev metrics of a run or model
  [cyan]bertctl predict runs/mrpc[/]                 GLUE submission files
  [cyan]bertctl pretrain prepare doc.txt -o data[/]  masked LM + NSP data (Google's)
  [cyan]bertctl pretrain run data --model tiny[/]    pretrain: resumable, multi-GPU

Set BERTCTL_DEBUG=1 to see a traceback with an error.
"""

app = typer.Typer(
    name="bertctl",
    help=HELP,
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("demo")(demo.demo)
app.command("tokenize")(tokenize.tokenize)
app.command("inspect")(inspect.inspect)
app.command("models")(models.models)
app.command("download")(download.download)
app.command("verify")(verify.verify)
app.command("convert")(convert.convert)
app.command("gpus")(memory.gpus)
app.command("plan")(memory.plan)
app.command("finetune")(finetune.finetune)
app.command("evaluate")(evaluate.evaluate)
app.command("predict")(evaluate.predict)
app.add_typer(pretrain.app, name="pretrain")


def main() -> None:
    """Entry point: the standard streams checked, the app run, and what it printed known to have
    reached them; the exit code says when it did not."""
    from bertctl import ui

    closed = ui.reopen_closed_streams()
    if 1 in closed or 2 in closed:
        # Refused before any work: its messages or results would go nowhere. The line goes to
        # whichever of the two is still open.
        ui.write_line(1 if 2 in closed else 2, ui.closed_stream_line([fd for fd in closed if fd]))
        sys.exit(1)
    try:
        _main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except ui.OutputLost as exc:
        code = _output_lost(exc.error)
    else:
        code = 0
    sys.exit(_flushed(code))


def _flushed(code: int) -> int:
    """The exit code once what the command printed is out: a refused flush of stdout, or
    messages stderr dropped, make a success exit 1 (the output was lost)."""
    from bertctl import ui

    try:
        ui.stdout.flush()
    except ui.OutputLost as exc:
        return code or _output_lost(exc.error)
    ui.stderr.flush()
    if code == 0 and (ui.stdout.lost is not None or ui.stderr.lost is not None):
        return 1
    return code


def _output_lost(exc: OSError) -> int:
    """stdout refused a write: a reader that stopped (`| head`) ends the command as a pipe's
    writer ends, quietly with 141; anything else (a full disk, /dev/full) is one line."""
    from bertctl import ui

    if isinstance(exc, BrokenPipeError):
        return 141
    name = errno.errorcode.get(exc.errno or 0, "")
    ui.error(
        f"cannot write to standard output: {exc.strerror or exc}{f' ({name})' if name else ''}; "
        "what the command printed there is lost (files it wrote are whole); write the output "
        "to a disk with room, or to /dev/null"
    )
    return 1


def _main() -> None:
    """Run the app; a BertctlError becomes one red line and its exit code."""
    from bertctl import ui
    from bertctl.errors import BertctlError

    try:
        # Not standalone: Typer hands usage errors back instead of drawing them in a box, so
        # they become one error line like every other.
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # a usage error: bad flag, value or command
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `bertctl`: its help, exit 2
            if exc.format_message().strip():  # rich help is printed as it is built
                print(exc.format_message())
            sys.exit(exc.exit_code)
        ctx = getattr(exc, "ctx", None)
        hint = f"; see: {ctx.command_path} --help" if ctx is not None else ""
        from bertctl.cli.google_flags import explain

        ui.error(explain(exc.format_message()).rstrip(".") + hint)
        sys.exit(exc.exit_code)
    except typer.Abort:  # end of input where a prompt expected an answer
        ui.error("interrupted")
        sys.exit(130)
    except BertctlError as exc:
        if os.environ.get("BERTCTL_DEBUG"):
            raise
        ui.error(exc.one_line())
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        ui.error("interrupted")
        sys.exit(130)
    except OSError as exc:
        # A system refusal no command turned into its own message: still one line, not a
        # traceback. Every file bertctl publishes is renamed into place complete, so what was
        # there before is intact.
        if os.environ.get("BERTCTL_DEBUG"):
            raise
        if exc.filename is None and (ui.raised_writing_stdout(exc) or ui.stdout_refuses()):
            sys.exit(_output_lost(exc))  # a write to stdout, not to a file
        ui.error(os_error_line(exc))
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


# No space left, disk quota exceeded, file too large for the file system or the process limit.
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}

# What to do about the other refusals a path meets, by errno.
_WHAT_TO_DO = {
    errno.ENOTDIR: "a part of the path is a file, not a folder: move it away or pass another path",
    errno.EEXIST: "something of that name is already there: move it away or pass another path",
    errno.EISDIR: "it is a folder where a file is expected: pass a file",
    errno.EROFS: "the filesystem is read-only: pass a location on a writable disk",
    errno.EACCES: "check its permissions, or pass a location you can write to",
    errno.EPERM: "check its permissions, or pass a location you can write to",
    errno.ENOENT: "check the path, or create the folder it names",
    errno.ENAMETOOLONG: "pass a shorter path (each name at most 255 bytes on most filesystems)",
    errno.ELOOP: "the path has a loop of symbolic links: pass another path",
}


def os_error_line(exc: OSError) -> str:
    """One line for an OSError: the path (both, for a rename), the system's reason with its
    errno name, and what to do."""
    from bertctl.outputs import shown_path

    where = ""
    if exc.filename is not None:
        where = f" {shown_path(os.fsdecode(exc.filename))}"
        if exc.filename2 is not None:
            where += f" -> {shown_path(os.fsdecode(exc.filename2))}"
    reason = exc.strerror or str(exc)
    name = errno.errorcode.get(exc.errno or 0)
    if name:
        reason += f", {name}"
    if exc.errno in _DISK_FULL:
        where = f" writing{where}" if where else ""
        return (
            f"no room on the disk{where} ({exc.strerror}); free some disk space and run again "
            "(files written before are intact; a training run continues with --resume)"
        )
    what = _WHAT_TO_DO.get(exc.errno, "check the path and run again")
    return f"cannot use{where or ' a file'} ({reason}); {what}"
