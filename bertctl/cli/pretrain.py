"""`bertctl pretrain`: Google's pretraining recipe (MLM + NSP). `prepare` makes the data."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bertctl import ui

app = typer.Typer(
    name="pretrain",
    help="Pretrain BERT as Google does: masked LM + next sentence prediction.\n\n"
    "[bold]Examples[/]\n\n"
    "  [cyan]bertctl pretrain prepare corpus.txt --out data[/]   shards of masked instances",
    rich_markup_mode="rich",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.command("prepare")
def prepare(
    corpus: Annotated[
        list[str],
        typer.Argument(
            metavar="CORPUS...",
            help="Text files or globs: one sentence per line, a blank line between documents.",
            show_default=False,
        ),
    ],
    out: Annotated[str, typer.Option("--out", "-o", metavar="DIR", help="Output folder.")],
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
            help="Default: follow the model (a bare vocab is uncased).",
            show_default=False,
        ),
    ] = None,
    max_seq_length: Annotated[
        int, typer.Option("--max-seq-length", help="Tokens per instance, specials included.")
    ] = 128,
    max_predictions: Annotated[
        int, typer.Option("--max-predictions", help="Most masked tokens per instance.")
    ] = 20,
    masked_lm_prob: Annotated[
        float, typer.Option("--masked-lm-prob", help="Share of tokens to mask.")
    ] = 0.15,
    dupe_factor: Annotated[
        int, typer.Option("--dupe-factor", help="Passes over the corpus, each masked anew.")
    ] = 10,
    short_seq_prob: Annotated[
        float,
        typer.Option("--short-seq-prob", help="Chance of a random, shorter target length."),
    ] = 0.1,
    whole_word_mask: Annotated[
        bool, typer.Option("--whole-word-mask", help="Mask all pieces of a word or none.")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 12345,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Processes (default: all cores for a corpus of 16 MiB or more). "
            "The output is the same for any number.",
            show_default=False,
        ),
    ] = None,
    shard_documents: Annotated[
        int,
        typer.Option(
            "--shard-documents",
            help="Documents per shard; random next sentences come from the same shard.",
        ),
    ] = 10_000,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a non-empty --out folder.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Statistics as JSON on stdout.")] = False,
) -> None:
    """Masked-LM and next-sentence instances, as Google's create_pretraining_data.py makes them.

    Writes memory-mapped shards (.npy arrays) and manifest.json to --out, then a statistics
    table: documents, instances, mask rate, the 80/10/10 split, NSP balance, lengths.
    Defaults are Google's.

    [bold]Examples[/]

      [cyan]bertctl pretrain prepare sample_text.txt --out data --dupe-factor 5[/]
      [cyan]bertctl pretrain prepare 'wiki/*.txt' --out wiki-128 --model base-uncased --workers 8[/]
      [cyan]bertctl pretrain prepare books.txt --out data-512 --max-seq-length 512 --max-predictions 80[/]
    """
    from bertctl.modelref import tokenizer_for
    from bertctl.pretraining_data import PrepareConfig
    from bertctl.pretraining_data import prepare as run_prepare

    cfg = PrepareConfig(
        max_seq_length=max_seq_length,
        max_predictions=max_predictions,
        masked_lm_prob=masked_lm_prob,
        dupe_factor=dupe_factor,
        short_seq_prob=short_seq_prob,
        whole_word_mask=whole_word_mask,
        seed=seed,
        shard_documents=shard_documents,
    )
    lowercase = None if cased is None else not cased
    choice = tokenizer_for(model, vocab, lowercase)
    for warning in choice.warnings:
        ui.warn(warning)
    if not as_json:
        ui.info(choice.description)
    with ui.progress("Preparing", unit="B") as bar:
        result = run_prepare(
            corpus,
            out,
            choice.tokenizer,
            cfg,
            workers=workers,
            overwrite=overwrite,
            tokenizer_description=choice.description,
            progress=bar,
        )
    for warning in result.warnings:
        ui.warn(warning)
    manifest = result.manifest
    if as_json:
        statistics = dict(manifest["statistics"])
        statistics.pop("length_histogram", None)
        ui.print_json(
            {
                "out": str(result.out),
                "workers": result.workers,
                "settings": manifest["settings"],
                "tokenizer": manifest["tokenizer"],
                "corpus": manifest["corpus"],
                "totals": manifest["totals"],
                "statistics": statistics,
            }
        )
        return
    _print_statistics(manifest)
    totals = manifest["totals"]
    ui.info(
        f"wrote {totals['instances']:,} instances in {totals['shards']} shard(s) to {result.out}"
    )


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _print_statistics(manifest: dict[str, Any]) -> None:
    """The statistics pass beside what Google's definitions lead one to expect."""
    c, s, cfg = manifest["totals"], manifest["statistics"], manifest["settings"]
    split = s["split"]
    t = ui.table("statistic", "measured", "Google's definition")
    t.add_row("documents", f"{c['documents']:,}", "")
    t.add_row("sentences", f"{c['sentences']:,}", "one per line")
    t.add_row("corpus tokens", f"{c['corpus_tokens']:,}", "WordPiece")
    t.add_row(
        "instances",
        f"{c['instances']:,} in {c['shards']} shard(s)",
        f"dupe factor {cfg['dupe_factor']}",
    )
    t.add_row(
        "tokens per instance",
        f"{s['mean_length']:.1f} mean ({_pct(s['fill'])} of {cfg['max_seq_length']})",
        f"at most {cfg['max_seq_length']}",
    )
    t.add_row(
        "short targets",
        f"{_pct(s['short_target_share'])} of document passes, "
        f"{_pct(s['short_target_instance_share'])} of instances",
        f"{_pct(cfg['short_seq_prob'])} of document passes",
    )
    t.add_row(
        "truncated",
        f"{_pct(c['truncated_instances'] / max(c['instances'], 1))} of instances",
        "longer side, front or back at random",
    )
    t.add_row(
        "mask rate",
        f"{_pct(s['mask_rate'])} of maskable tokens",
        f"{_pct(s['expected_mask_rate'])} (min({cfg['max_predictions']}, "
        f"round(len × {cfg['masked_lm_prob']})) per instance)",
    )
    t.add_row(
        "[MASK] / unchanged / random",
        " / ".join(_pct(split[k]) for k in ("mask", "unchanged", "random")),
        "80% / 10% / 10%",
    )
    t.add_row(
        "IsNext",
        f"{_pct(s['is_next_share'])} of instances, "
        f"{_pct(s['coin_is_next_share'])} of multi-sentence chunks",
        "50% of multi-sentence chunks; one-sentence chunks take a random next",
    )
    ui.out.print(t)
