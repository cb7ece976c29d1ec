"""The Hugging Face Hub as a second source: `hub:ORG/NAME` lands in the same model layout.

huggingface_hub does the transfer, so HF_HOME, HF_ENDPOINT, HF_HUB_OFFLINE and HF_TOKEN all work
as users expect. bertctl then checks that the repo is a BERT model with safetensors weights,
a vocab and a consistent casing, and copies the files into its own store.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bertctl import outputs, store
from bertctl.errors import BertctlError

# Naming lives in `store` (see there); these names stay for the callers that use them.
from bertctl.store import HUB_PREFIX as PREFIX
from bertctl.store import HubModel
from bertctl.store import hub_folder as local_folder
from bertctl.store import parse_hub as parse

__all__ = ["PREFIX", "WANTED", "HubModel", "fetch", "install", "local_folder", "parse"]

# Only what a BERT model needs; never pickled weights (pytorch_model.bin) and never code.
WANTED = [
    "config.json",
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "model.safetensors",
]


def fetch(model: HubModel) -> tuple[Path, str]:
    """Download (or find in the HF cache) the files a BERT needs; returns (snapshot folder, commit)."""
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import snapshot_download

    spec = f"{PREFIX}{model.repo_id}"
    try:
        snapshot = Path(
            snapshot_download(model.repo_id, revision=model.revision, allow_patterns=WANTED)
        )
    except hf_errors.GatedRepoError:
        raise BertctlError(
            f"{spec} is gated", "accept its terms on the Hub, then set HF_TOKEN"
        ) from None
    except hf_errors.RepositoryNotFoundError:
        raise BertctlError(
            f"{spec}: no such repository on the Hub",
            "check the name; for a private repo set HF_TOKEN",
        ) from None
    except hf_errors.RevisionNotFoundError:
        raise BertctlError(
            f"{spec}: no revision {model.revision!r}", "check the @revision"
        ) from None
    except hf_errors.LocalEntryNotFoundError:
        raise BertctlError(
            f"{spec} is not in the local Hugging Face cache and the Hub cannot be reached",
            "connect (or unset HF_HUB_OFFLINE), or point HF_HOME at a cache that holds it",
        ) from None
    except (hf_errors.HfHubHTTPError, OSError) as exc:
        raise BertctlError(
            f"{spec}: download failed ({exc})", "try again, or check HF_ENDPOINT"
        ) from None
    return snapshot, snapshot.name


def _vocab_from_tokenizer_json(path: Path) -> bytes | None:
    """vocab.txt bytes from a WordPiece tokenizer.json (ids in order), or None if not WordPiece."""
    try:
        model = json.loads(path.read_text(encoding="utf-8")).get("model") or {}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None
    vocab = model.get("vocab") if isinstance(model, dict) else None
    if model.get("type") != "WordPiece" or not isinstance(vocab, dict):
        return None
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        return None
    return "".join(f"{token}\n" for token, _ in by_id).encode("utf-8")


def install(model: HubModel, dest: Path | None = None) -> tuple[Path, dict]:
    """Fetch, check and copy a Hub BERT into the store (or `dest`). Returns (folder, manifest).

    Raises:
        BertctlError: `dest` holds files bertctl did not write, not a BERT model, no
            safetensors weights, no vocab, or a failed check.
    """
    spec = f"{PREFIX}{model.repo_id}"
    target = dest or local_folder(model)
    with outputs.writing(target, "installed"):
        # Checked before the download: a --dir holding the user's own files is never replaced.
        where = "--dir" if dest else "the store folder"
        outputs.check_folder(target, outputs.MODEL, overwrite=True, flag=where)
        snapshot, commit = fetch(model)
        _check_bert(spec, snapshot)
        return _copy_in(spec, snapshot, commit, target)


def _check_bert(spec: str, snapshot: Path) -> None:
    """Refuse a snapshot that is not a BERT with safetensors weights."""
    config = snapshot / "config.json"
    if not config.is_file():
        raise BertctlError(f"{spec} has no config.json", "it is not a transformers model")
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise BertctlError(
            f"{spec}: config.json is not a JSON object", "pick another repo"
        ) from None
    if model_type != "bert":
        raise BertctlError(
            f"{spec} is not a BERT model (model_type {model_type!r})",
            "bertctl handles BERT checkpoints; pick a repo whose config.json says model_type bert",
        )
    if not (snapshot / "model.safetensors").is_file():
        raise BertctlError(
            f"{spec} has no model.safetensors",
            "bertctl never unpickles pytorch_model.bin; pick a repo (or revision) with safetensors",
        )


def _copy_in(spec: str, snapshot: Path, commit: str, target: Path) -> tuple[Path, dict]:
    """Copy the wanted files of `snapshot` into `target` whole, once they pass their checks."""
    from bertctl.verify import verify_hf_folder

    with outputs.building(target) as staging:
        for name in WANTED:
            if (snapshot / name).is_file():
                shutil.copyfile(snapshot / name, staging / name)
        if not (staging / "vocab.txt").is_file():
            derived = (
                _vocab_from_tokenizer_json(staging / "tokenizer.json")
                if (staging / "tokenizer.json").is_file()
                else None
            )
            if derived is None:
                raise BertctlError(
                    f"{spec} has neither vocab.txt nor a WordPiece tokenizer.json",
                    "pick a repo that ships its vocabulary",
                )
            outputs.write_atomic(staging / "vocab.txt", derived)
        report = verify_hf_folder(staging)
        if not report.ok:
            first = report.failures[0]
            raise BertctlError(f"{spec}: {first.name} check failed: {first.detail}")
        manifest = {
            "source": spec,
            "revision": commit,
            "verified": True,
            "checks": [c.name for c in report.checks if c.ok],
        }
        outputs.write_json_atomic(staging / store.MANIFEST, manifest)
    return target, manifest
