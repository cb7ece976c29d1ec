"""`bertctl pretrain`: Google's pretraining recipe (MLM + NSP). `prepare` makes the data, `run`
trains on it (in several processes through torchrun with --nproc-per-node)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bertctl import ui
from bertctl.cli import options

app = typer.Typer(
    name="pretrain",
    help="Pretrain BERT as Google does: masked LM + next sentence prediction.\n\n"
    "[bold]Examples[/]\n\n"
    "  [cyan]bertctl pretrain prepare corpus.txt --out data[/]   shards of masked instances\n\n"
    "  [cyan]bertctl pretrain run data --model base-uncased[/]   continue pretraining a model",
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
            metavar="",
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
        bool,
        typer.Option("--whole-word-mask", help="Mask all pieces of a word or none.", metavar=""),
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
        bool,
        typer.Option(
            "--overwrite",
            help="Replace --out if it holds shards bertctl prepared (and nothing else).",
            metavar="",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Statistics as JSON on stdout.", metavar="")
    ] = False,
) -> None:
    """Masked-LM and next-sentence instances, as Google's create_pretraining_data.py makes them.

    Writes memory-mapped shards (.npy arrays) and manifest.json to --out, then a statistics
    table: documents, instances, mask rate, the 80/10/10 split, NSP balance, lengths.
    Defaults are Google's. A blank line ends a document, and so does the end of each file
    (Google's reader would join a file's last document to the next file's first).

    [bold]Examples[/]

      [cyan]bertctl pretrain prepare sample_text.txt --out data --dupe-factor 5[/]
      [cyan]bertctl pretrain prepare 'wiki/*.txt' --out wiki-128 --model base-uncased --workers 8[/]
      [cyan]bertctl pretrain prepare books.txt --out data-512 --max-seq-length 512 --max-predictions 80[/]
    """
    from bertctl import outputs, paths
    from bertctl.errors import on_interrupt
    from bertctl.modelref import tokenizer_for
    from bertctl.pretraining_data import PrepareConfig, check_out, resolve_corpus
    from bertctl.pretraining_data import prepare as run_prepare

    out_dir = paths.expand(out)
    inputs = [paths.expand(p) for p in (model, vocab) if p]
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
    # The shards are built in a hidden folder beside --out, removed on a stop.
    stopped = on_interrupt(outputs.untouched(out_dir), "run the command again to prepare")
    outputs.check_writable(out_dir, "--out")  # before the lock file beside it is made
    with stopped, outputs.writing(out_dir, "prepared"):
        # Before the model is fetched or converted: minutes of work, then a refusal, is worse.
        check_out(resolve_corpus(corpus), out_dir, overwrite, inputs)
        choice = tokenizer_for(model, vocab, lowercase)
        for warning in choice.warnings:
            ui.warn(warning)
        if not as_json:
            ui.info(choice.description)
        with ui.progress("Preparing", unit="B") as bar:
            result = run_prepare(
                corpus,
                out_dir,
                choice.tokenizer,
                cfg,
                workers=workers,
                overwrite=overwrite,
                inputs=inputs,
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


# --------------------------------------------------------------------------------------------
# run


@app.command("run")
def run(
    data: Annotated[
        str | None,
        typer.Argument(
            metavar="DATA_DIR",
            help="Folder made by `bertctl pretrain prepare` (with --resume: the run's own).",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            metavar="NAME|DIR",
            help="Continue from: catalogue name, hub:ORG/NAME, release, HF-format folder, or a "
            "previous run.",
        ),
    ] = None,
    bert_config: Annotated[
        str | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="Start from scratch with this bert_config.json (Google's init).",
        ),
    ] = None,
    vocab: Annotated[
        str | None,
        typer.Option(
            "--vocab",
            metavar="FILE",
            help="With --config: the vocab.txt the data was prepared with (default: bundled).",
        ),
    ] = None,
    out: options.Out = None,
    steps: Annotated[
        int | None,
        typer.Option(
            "--steps", help="Optimizer steps (Google: 100000); default one pass over the data."
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", help="Instances per step, all processes (Google: 32)."),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr",
            help="Peak learning rate; default 5e-5 from scratch, 2e-5 continuing (LAMB: x20).",
        ),
    ] = None,
    warmup: Annotated[
        float | None,
        typer.Option("--warmup", help="Warmup: fraction of steps (<1) or steps (>=1); 0.1."),
    ] = None,
    weight_decay: Annotated[
        float | None, typer.Option("--weight-decay", help="Google: 0.01.")
    ] = None,
    max_grad_norm: Annotated[
        float | None, typer.Option("--max-grad-norm", help="Gradient clipping; Google: 1.0.")
    ] = None,
    optimizer: Annotated[
        str | None,
        typer.Option("--optimizer", help="google (AdamW, no bias correction) or lamb."),
    ] = None,
    precision: options.Precision = None,
    grad_accum: options.GradAccum = None,
    grad_checkpointing: options.GradCheckpointing = None,
    dynamic_masking: Annotated[
        bool | None,
        typer.Option(
            "--dynamic-masking/--static-masking",
            help="Mask each instance anew every epoch after the first (RoBERTa).",
            show_default=False,
            metavar="",
        ),
    ] = None,
    seed: options.Seed = None,
    gpu: options.Gpu = None,
    cpu: options.Cpu = False,
    save_every: options.SaveEvery = None,
    eval_every: options.EvalEvery = None,
    eval_batches: Annotated[
        int | None, typer.Option("--eval-batches", help="Evaluation batches; Google: 100.")
    ] = None,
    eval_batch_size: Annotated[
        int | None, typer.Option("--eval-batch-size", help="Google: 8.")
    ] = None,
    holdout: Annotated[
        int | None,
        typer.Option(
            "--holdout",
            metavar="N",
            help="Evaluate on the last N instances, train on the rest (default 0: evaluate on "
            "the training data, as Google).",
        ),
    ] = None,
    keep_checkpoints: Annotated[
        int | None, typer.Option("--keep-checkpoints", help="Checkpoints kept; 2.")
    ] = None,
    threads: options.Threads = None,
    gpu_memory: options.GpuMemory = None,
    auto_fit: options.TrainAutoFit = None,
    force: options.TrainForce = None,
    resume: options.Resume = False,
    nproc_per_node: options.NprocPerNode = None,
    nnodes: options.Nnodes = 1,
    node_rank: options.NodeRank = 0,
    master_addr: options.MasterAddr = None,
    master_port: options.MasterPort = None,
    as_json: options.Json = False,
) -> None:
    """Pretrain with Google's recipe: masked LM + next sentence prediction on prepared shards.

    Continue from a model (--model) or start from scratch (--config bert_config.json). The loss
    is Google's: vocabulary logits only at the masked positions. Google's optimizer (or LAMB),
    warmup then linear decay, gradient clipping at 1.0. The run folder holds the settings, logs
    (JSONL and TensorBoard), metrics.json with Google's metric names, checkpoints that --resume
    continues exactly, and final/, an HF-format model that `bertctl finetune --model` takes.

    --nproc-per-node N trains in N processes through torchrun (DDP); the command also joins a
    group when an outside `torchrun -m bertctl pretrain run ...` or a scheduler starts it.
    The batch order and the gradients are the same for any number of processes.

    [bold]Examples[/]

      [cyan]bertctl pretrain prepare sample_text.txt --out data --dupe-factor 5 --model base-uncased[/]
      [cyan]bertctl pretrain run data --model base-uncased --steps 20 --warmup 10 --out runs/demo[/]
      [cyan]bertctl pretrain run data --config bert_config.json --steps 100000 --gpu 0[/]
      [cyan]bertctl pretrain run data --model base-uncased --nproc-per-node 8 --out runs/p8[/]
      [cyan]bertctl pretrain run --out runs/demo --resume[/]
      [cyan]bertctl finetune mrpc --model runs/demo/final[/]
    """
    from bertctl.errors import UsageError
    from bertctl.train import distributed

    if gpu is not None and cpu:
        raise UsageError("--gpu and --cpu both given", "pass one of them")
    flags = {
        "data": data,
        "model": model,
        "bert_config": bert_config,
        "vocab": vocab,
        "out": out,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "warmup": warmup,
        "weight_decay": weight_decay,
        "max_grad_norm": max_grad_norm,
        "optimizer": optimizer,
        "precision": precision,
        "grad_accum": grad_accum,
        "grad_checkpointing": grad_checkpointing,
        "dynamic_masking": dynamic_masking,
        "seed": seed,
        "device": "cpu" if cpu else (f"cuda:{gpu}" if gpu is not None else None),
        "save_every": save_every,
        "eval_every": eval_every,
        "eval_batches": eval_batches,
        "eval_batch_size": eval_batch_size,
        "holdout": holdout,
        "keep_checkpoints": keep_checkpoints,
        "threads": threads,
        "gpu_memory": gpu_memory,
        "auto_fit": auto_fit,
        "force": force,
    }
    from bertctl.train.pretrain import resolve_settings

    cfg = resolve_settings(flags, resume)  # bounds on threads and batches included
    if nproc_per_node is not None:
        if distributed.launched():
            raise UsageError(
                "--nproc-per-node given to a process that torchrun (or a scheduler) started",
                "leave out the scale-out flags when launching with torchrun yourself",
            )
        _launch(cfg, resume, as_json, nproc_per_node, nnodes, node_rank, master_addr, master_port)
        return
    from bertctl.train.pretrain import pretrain

    summary = pretrain(cfg, ui.Reporter(), resume=resume)
    if summary.main:
        _report(summary, as_json)


def _launch(
    cfg,
    resume: bool,
    as_json: bool,
    nproc_per_node: int,
    nnodes: int,
    node_rank: int,
    master_addr: str | None,
    master_port: int | None,
) -> None:
    """Run this same command in torchrun's processes and wait for them; their exit code is ours."""
    from dataclasses import replace
    from pathlib import Path

    from bertctl.train import distributed
    from bertctl.train.pretrain import default_out, to_args

    if cfg.out is None:  # every process must write to (rank 0) and read from the same folder
        label = Path(cfg.model).name if cfg.model else Path(cfg.bert_config or "model").stem
        cfg = replace(cfg, out=str(default_out(label)))
    args = ["pretrain", "run", *to_args(cfg)]
    args += ["--resume"] * resume + ["--json"] * as_json
    argv = distributed.torchrun_argv(
        args, nproc_per_node, nnodes, node_rank, master_addr, master_port
    )
    if not as_json:
        ui.info(f"Launching {nproc_per_node} process(es) per machine through torchrun")
    code = distributed.run_torchrun(argv)
    if code:
        raise typer.Exit(code if code > 0 else 1)


def _report(summary, as_json: bool) -> None:
    result = {
        "out": str(summary.out),
        "final": str(summary.final),
        "steps": summary.steps,
        "processes": summary.world_size,
        "train_seconds": round(summary.train_seconds, 2),
        "tokens_per_second": round(summary.tokens_per_second, 1),
        "metrics": summary.metrics,
    }
    if as_json:
        ui.print_json(result)
        return
    if summary.metrics:
        t = ui.table("metric", "value", title="Evaluation (Google's names)")
        for key, value in summary.metrics.items():
            t.add_row(key, f"{value:.4f}")
        ui.out.print(t)
    ui.out.print(
        f"[bold]run[/] {summary.out}  [dim]{summary.steps} steps, {summary.train_seconds:.0f} s, "
        f"{summary.tokens_per_second:,.0f} tokens/s, {summary.world_size} process(es)[/]"
    )
    ui.out.print(
        f"[bold]model[/] {summary.final}  [dim](bertctl finetune --model {summary.final})[/]"
    )
