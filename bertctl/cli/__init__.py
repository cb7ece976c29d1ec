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

  [cyan]bertctl demo[/]                              tokenize, inspect, fine-tune, offline
  [cyan]bertctl tokenize "John Smith"[/]             Google-exact tokens and ids
  [cyan]bertctl tokenize -i text.txt --json[/]       one JSON object per line
  [cyan]bertctl inspect base-uncased[/]              architecture, exact parameter counts
  [cyan]bertctl models[/]                            every Google release, its state here
  [cyan]bertctl download base-multilingual-cased[/]  download, verify, convert
  [cyan]bertctl verify base-uncased[/]               hashes, CRCs, shapes, vocab, casing
  [cyan]bertctl convert model.zip --out bert[/]      TF checkpoint to HF format, no TF
  [cyan]bertctl gpus[/]                              GPUs here: memory, capability, bf16
  [cyan]bertctl plan base-cased --gpu-memory 12G[/]  memory needed, largest batch per length
  [cyan]bertctl finetune mrpc --gpu 0[/]             fine-tune, Google's recipe
  [cyan]bertctl evaluate runs/mrpc[/]                dev metrics of a run or model
  [cyan]bertctl predict runs/mrpc[/]                 GLUE submission files
  [cyan]bertctl pretrain prepare doc.txt -o data[/]  masked LM + NSP data, Google's recipe
  [cyan]bertctl pretrain run data --model tiny[/]    pretrain on it: resumable, torchrun-ready

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
    """Entry point: run the app; a BertctlError becomes one red line and its exit code."""
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
        # A full disk where no command wrapped the write itself: still one line, not a
        # traceback. Every file bertctl publishes is renamed into place complete, so what was
        # there before is intact.
        if exc.errno not in _DISK_FULL or os.environ.get("BERTCTL_DEBUG"):
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        ui.error(
            f"no room on the disk{where} ({exc.strerror}); free some disk space and run again "
            "(files written before are intact; a training run continues with --resume)"
        )
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


# No space left, disk quota exceeded, file too large for the file system or the process limit.
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
