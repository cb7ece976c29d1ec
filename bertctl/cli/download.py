"""`bertctl download`: fetch a release (or a Hub repo), verify it, extract it, convert it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bertctl import ui


def download(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME|URL|hub:ORG/NAME",
            help="A catalogue name (see `bertctl models`), the URL of a zip in release layout, "
            "or a Hugging Face Hub repo.",
        ),
    ],
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Put the model here instead of under BERTCTL_HOME."),
    ] = None,
    mirror: Annotated[
        str | None,
        typer.Option(
            "--mirror",
            metavar="BASE_URL",
            envvar="BERTCTL_MIRROR",
            help="Base URL of a mirror of storage.googleapis.com/bert_models (same layout).",
        ),
    ] = None,
    allow_http: Annotated[
        bool,
        typer.Option(
            "--allow-http", help="Allow plain http to hosts other than this machine.", metavar=""
        ),
    ] = False,
    keep_zip: Annotated[
        bool,
        typer.Option("--keep-zip", help="Keep the downloaded zip after conversion.", metavar=""),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON.", metavar="")
    ] = False,
) -> None:
    """Download a release resumably, verify it, extract it safely and convert it for PyTorch.

    An interrupted download resumes where it stopped (even after the process was killed).
    The result is an HF-format folder that transformers loads offline, with Google's original
    files kept in its release/ subfolder. Running it again on a finished model does nothing.

    [bold]Examples[/]

      [cyan]bertctl download base-multilingual-cased[/]
      [cyan]bertctl download tiny --dir models/tiny[/]
      [cyan]bertctl download base-uncased --mirror https://artifacts.example.com/bert_models[/]
      [cyan]bertctl download hub:google-bert/bert-base-uncased[/]
    """
    from bertctl import hub, paths
    from bertctl.errors import on_interrupt

    _check_locations(directory, zips=not name.startswith(hub.PREFIX))
    if name.startswith(hub.PREFIX):
        model = hub.parse(name)
        ui.info(f"Fetching {name} through huggingface_hub")
        with on_interrupt(
            "files fetched so far are kept in the Hugging Face cache",
            "run the same command again to continue",
        ):
            folder, manifest = hub.install(model, dest=directory)
        _report(name, folder, manifest, already=False, as_json=as_json)
        return
    from bertctl.install import install

    # The zip's .part file survives a stop; the model folder is only ever replaced whole.
    with on_interrupt(
        f"the bytes downloaded so far are kept in {paths.downloads_dir()} and the model folder "
        "is as it was",
        "run the same command again to resume",
    ):
        result = install(
            name,
            ui.Reporter(),
            dest=directory,
            mirror=mirror,
            allow_http=allow_http,
            keep_zip=keep_zip,
        )
    _report(result.name, result.folder, result.manifest, already=result.already, as_json=as_json)


def _check_locations(directory: Path | None, *, zips: bool) -> None:
    """Where the model and the zip go, checked before the first request: a --dir or a
    BERTCTL_HOME the system refuses is named, not found after the download."""
    from bertctl import outputs, paths

    if directory is not None:
        outputs.check_writable(directory, "--dir")
    else:
        outputs.check_writable(paths.models_dir())
    if zips:
        outputs.check_writable(paths.downloads_dir())


def _report(name: str, folder: Path, manifest: dict, *, already: bool, as_json: bool) -> None:
    if as_json:
        ui.print_json(
            {
                "name": name,
                "folder": str(folder),
                "release_folder": str(folder / "release")
                if (folder / "release").is_dir()
                else None,
                "already_present": already,
                **{k: v for k, v in manifest.items() if k != "name"},
            }
        )
        return
    if already:
        ui.info(f"{name} is already downloaded and verified; nothing to do")
    else:
        ui.info(f"{name}: verified ({', '.join(manifest.get('checks', []))})")
    ui.out.print(f"[bold]model[/]    {folder}")
    if (folder / "release").is_dir():
        ui.out.print(f"[bold]release[/]  {folder / 'release'}")
