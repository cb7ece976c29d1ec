"""`bertctl convert`: a Google TF checkpoint to an HF-format folder, with no TensorFlow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bertctl import ui


def convert(
    source: Annotated[
        str,
        typer.Argument(
            metavar="SRC",
            help="A release zip, a release folder, or a checkpoint prefix (e.g. model.ckpt-343).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write (must not exist).")],
    config: Annotated[
        Path | None,
        typer.Option("--config", help="bert_config.json, when it is not beside the checkpoint."),
    ] = None,
    vocab: Annotated[
        Path | None,
        typer.Option("--vocab", help="vocab.txt, when it is not beside the checkpoint."),
    ] = None,
    cased: Annotated[
        bool | None,
        typer.Option(
            "--cased/--uncased",
            help="Casing written to the tokenizer files. Default: follow the model.",
            show_default=False,
            metavar="",
        ),
    ] = None,
    heads: Annotated[
        bool,
        typer.Option(
            "--heads/--no-heads", help="Keep the pretraining heads when present.", metavar=""
        ),
    ] = True,
    labels: Annotated[
        str | None,
        typer.Option(
            "--labels",
            help="Comma-separated class names of a run_classifier.py checkpoint, in order.",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace --out if it holds a model bertctl converted (and nothing else).",
            metavar="",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON.", metavar="")
    ] = False,
) -> None:
    """Convert a TF checkpoint (release, training or run_classifier.py) into an HF-format folder.

    Optimizer slots and global_step are skipped; kernels are transposed; every other byte is
    copied exactly. The folder loads offline with transformers' from_pretrained.

    [bold]Examples[/]

      [cyan]bertctl convert uncased_L-12_H-768_A-12.zip --out bert-base[/]
      [cyan]bertctl convert uncased_L-12_H-768_A-12 --out bert-base[/]
      [cyan]bertctl convert mrpc_output/model.ckpt-343 --out mrpc --config bert_config.json --vocab vocab.txt --labels 0,1[/]
    """
    from bertctl.errors import on_interrupt
    from bertctl.install import convert_source
    from bertctl.outputs import check_name_lengths, check_writable, untouched

    # Before the lock file is made beside --out and anything is extracted: a location the
    # system refuses is named with its flag.
    check_name_lengths(Path(source))
    check_writable(out, "--out")
    # The folder is built beside --out and renamed into place: a stop leaves --out as it was.
    with on_interrupt(untouched(out), "run the command again to convert"):
        result = convert_source(
            source,
            out,
            config=config,
            vocab=vocab,
            lowercase=None if cased is None else not cased,
            heads=heads,
            labels=labels.split(",") if labels else None,
            overwrite=overwrite,
            reporter=ui.Reporter(),
        )
    if as_json:
        ui.print_json(
            {
                "out": str(result.out_dir),
                "tensors": result.tensors,
                "skipped": list(result.skipped),
                "pretraining_heads": result.heads,
                "classifier_labels": result.classifier_labels,
                "bytes": result.bytes,
            }
        )
        return
    extra = f"; skipped {len(result.skipped)} training variables" if result.skipped else ""
    head = "with pretraining heads" if result.heads else "without pretraining heads"
    if result.classifier_labels:
        head = f"classifier with {result.classifier_labels} labels"
    ui.info(f"Converted {result.tensors} tensors ({head}){extra}")
    ui.out.print(f"[bold]model[/]  {result.out_dir}")
