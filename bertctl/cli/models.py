"""`bertctl models`: every Google release, its short name, size and casing, and its state here."""

from __future__ import annotations

from typing import Annotated

import typer

from bertctl import ui


def models(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the table as JSON.", metavar="")
    ] = False,
) -> None:
    """Every Google BERT release with its short name, size, casing and local state.

    Original folder names (uncased_L-12_H-768_A-12) and HF names (bert-base-uncased) work as
    aliases wherever a model name is taken.

    [bold]Example[/]

      [cyan]bertctl models[/]
      [cyan]bertctl download base-multilingual-cased[/]
    """
    from bertctl import catalog, store
    from bertctl.bertconfig import check_config, count_parameters

    rows = []
    for rel in catalog.RELEASES:
        params = None
        if not rel.bundle:
            config = check_config(rel.bert_config()).config
            assert config is not None
            params = count_parameters(config, heads=True)
        rows.append(
            {
                "name": rel.name,
                "folder": rel.folder,
                "aliases": list(rel.aliases),
                "layers": rel.layers,
                "hidden": rel.hidden,
                "heads": rel.heads,
                "vocab_size": rel.vocab_size,
                "lowercase": rel.lowercase,
                "parameters": params,
                "checkpoint_bytes": 4 * params if params else None,
                "zip_bytes": rel.zip_bytes,
                "published_sha256": bool(rel.sha256),
                "url": rel.url,
                "description": rel.description,
                "status": store.status(rel),
            }
        )
    if as_json:
        ui.print_json(rows)
        return
    t = ui.table("name", "L/H/A", "params", "size", "casing", "hashes", "here", "description")
    for row in rows:
        shape = f"{row['layers']}/{row['hidden']}/{row['heads']}" if row["layers"] else "24 zips"
        t.add_row(
            row["name"],
            shape,
            f"{row['parameters'] / 1e6:.1f}M" if row["parameters"] else "",
            ui.human_bytes(row["checkpoint_bytes"]) if row["checkpoint_bytes"] else "",
            "uncased" if row["lowercase"] else "cased",
            "published" if row["published_sha256"] else "CRC only",
            row["status"],
            row["description"],
        )
    ui.out.print(t)
