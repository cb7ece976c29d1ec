"""The table of Google's BERT releases: short names, URLs, shapes, casing and published hashes.

Pure data plus lookups; no I/O. Facts from google-research/bert's README and NVIDIA's scripts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

BASE_URL = "https://storage.googleapis.com/bert_models/"

# SHA-256 of the extracted files, as NVIDIA DeepLearningExamples hard-codes them (Google publishes
# none; nobody publishes hashes of the zips, the WWM or the small models).
_UNCASED_VOCAB = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
_CASED_VOCAB = "eeaa9875b23b04b4c54ef759d03db9d1ba1554838f8fb26c5d96fa551df93d02"
_DATA = "bert_model.ckpt.data-00000-of-00001"
_INDEX = "bert_model.ckpt.index"
_META = "bert_model.ckpt.meta"


def _hashes(config: str, data: str, index: str, meta: str, vocab: str) -> dict[str, str]:
    return {"bert_config.json": config, _DATA: data, _INDEX: index, _META: meta, "vocab.txt": vocab}


@dataclass(frozen=True)
class Release:
    """One downloadable Google release.

    Attributes:
        name: short name users type (`base-uncased`).
        path: zip path under BASE_URL.
        folder: the model folder name inside the zip, also accepted as an alias.
        layers, hidden, heads, intermediate, vocab_size: the architecture.
        lowercase: True for uncased models (Google's `do_lower_case`).
        sha256: published hashes of extracted files, by file name (may be empty).
        zip_bytes: the zip's size where it is known.
        aliases: further names that select this release.
        extra_config: keys Google's bert_config.json carries beyond the 11 standard ones.
        description: one line for `bertctl models`.
        bundle: True for a zip of zips (all_bert_models) rather than one model.
    """

    name: str
    path: str
    folder: str
    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab_size: int
    lowercase: bool
    description: str
    sha256: dict[str, str] = field(default_factory=dict)
    zip_bytes: int | None = None
    aliases: tuple[str, ...] = ()
    extra_config: dict[str, object] = field(default_factory=dict)
    bundle: bool = False

    @property
    def url(self) -> str:
        return BASE_URL + self.path

    def bert_config(self) -> dict[str, object]:
        """The release's bert_config.json as Google ships it."""
        config: dict[str, object] = {
            "attention_probs_dropout_prob": 0.1,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "hidden_size": self.hidden,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate,
            "max_position_embeddings": 512,
            "num_attention_heads": self.heads,
            "num_hidden_layers": self.layers,
            "type_vocab_size": 2,
            "vocab_size": self.vocab_size,
        }
        config.update(self.extra_config)
        return dict(sorted(config.items()))


def _multilingual_extras(hidden: int, heads: int) -> dict[str, object]:
    # Keys present in the multilingual and Chinese configs that no code reads.
    return {
        "directionality": "bidi",
        "pooler_fc_size": hidden,
        "pooler_num_attention_heads": heads,
        "pooler_num_fc_layers": 3,
        "pooler_size_per_head": 128,
        "pooler_type": "first_token_transform",
    }


# fmt: off
_ORIGINAL_TABLE = (
    # short name, zip path under BASE_URL, layers, hidden, heads, vocab, lowercase, HF name, description
    ("base-uncased", "2018_10_18/uncased_L-12_H-768_A-12.zip", 12, 768, 12, 30522, True, "bert-base-uncased", "BERT-Base, English, uncased"),
    ("large-uncased", "2018_10_18/uncased_L-24_H-1024_A-16.zip", 24, 1024, 16, 30522, True, "bert-large-uncased", "BERT-Large, English, uncased"),
    ("base-cased", "2018_10_18/cased_L-12_H-768_A-12.zip", 12, 768, 12, 28996, False, "bert-base-cased", "BERT-Base, English, cased"),
    ("large-cased", "2018_10_18/cased_L-24_H-1024_A-16.zip", 24, 1024, 16, 28996, False, "bert-large-cased", "BERT-Large, English, cased"),
    ("large-uncased-wwm", "2019_05_30/wwm_uncased_L-24_H-1024_A-16.zip", 24, 1024, 16, 30522, True, "bert-large-uncased-whole-word-masking", "BERT-Large, English, uncased, whole word masking"),
    ("large-cased-wwm", "2019_05_30/wwm_cased_L-24_H-1024_A-16.zip", 24, 1024, 16, 28996, False, "bert-large-cased-whole-word-masking", "BERT-Large, English, cased, whole word masking"),
    ("base-multilingual-cased", "2018_11_23/multi_cased_L-12_H-768_A-12.zip", 12, 768, 12, 119547, False, "bert-base-multilingual-cased", "BERT-Base, 104 languages, cased (recommended)"),
    ("base-multilingual-uncased", "2018_11_03/multilingual_L-12_H-768_A-12.zip", 12, 768, 12, 105879, True, "bert-base-multilingual-uncased", "BERT-Base, 102 languages, uncased (original)"),
    ("base-chinese", "2018_11_03/chinese_L-12_H-768_A-12.zip", 12, 768, 12, 21128, True, "bert-base-chinese", "BERT-Base, Chinese (simplified and traditional)"),
)

# Published SHA-256 by folder: bert_config.json, .data, .index, .meta, vocab.txt.
_PUBLISHED = {
    "uncased_L-12_H-768_A-12": _hashes(
        "7b4e5f53efbd058c67cda0aacfafb340113ea1b5797d9ce6ee411704ba21fcbc",
        "58580dc5e0bf0ae0d2efd51d0e8272b2f808857f0a43a88aaf7549da6d7a8a84",
        "04c1323086e2f1c5b7c0759d8d3e484afbb0ab45f51793daab9f647113a0117b",
        "dd5682170a10c3ea0280c2e9b9a45fee894eb62da649bbdea37b38b0ded5f60e",
        _UNCASED_VOCAB),
    "uncased_L-24_H-1024_A-16": _hashes(
        "bfa42236d269e2aeb3a6d30412a33d15dbe8ea597e2b01dc9518c63cc6efafcb",
        "bc6b3363e3be458c99ecf64b7f472d2b7c67534fd8f564c0556a678f90f4eea1",
        "68b52f2205ffc64dc627d1120cf399c1ef1cbc35ea5021d1afc889ffe2ce2093",
        "6fcce8ff7628f229a885a593625e3d5ff9687542d5ef128d9beb1b0c05edc4a1",
        _UNCASED_VOCAB),
    "cased_L-12_H-768_A-12": _hashes(
        "f11dfb757bea16339a33e1bf327b0aade6e57fd9c29dc6b84f7ddb20682f48bc",
        "734d5a1b68bf98d4e9cb6b6692725d00842a1937af73902e51776905d8f760ea",
        "517d6ef5c41fc2ca1f595276d6fccf5521810d57f5a74e32616151557790f7b1",
        "5f8a9771ff25dadd61582abb4e3a748215a10a6b55947cbb66d0f0ba1694be98",
        _CASED_VOCAB),
    "cased_L-24_H-1024_A-16": _hashes(
        "7adb2125c8225da495656c982fd1c5f64ba8f20ad020838571a3f8a954c2df57",
        "6ff33640f40d472f7a16af0c17b1179ca9dcc0373155fb05335b6a4dd1657ef0",
        "ef42a53f577fbe07381f4161b13c7cab4f4fc3b167cec6a9ae382c53d18049cf",
        "d2ddff3ed33b80091eac95171e94149736ea74eb645e575d942ec4a5e01a40a1",
        _CASED_VOCAB),
    "multi_cased_L-12_H-768_A-12": _hashes(
        "e76c3964bc14a8bb37a5530cdc802699d2f4a6fddfab0611e153aa2528f234f0",
        "55b8a2df41f69c60c5180e50a7c31b7cdf6238909390c4ddf05fbc0d37aa1ac5",
        "7d8509c2a62b4e300feb55f8e5f1eef41638f4998dd4d887736f42d4f6a34b37",
        "95e5f1997e8831f1c31e5cf530f1a2e99f121e9cd20887f2dce6fe9e3343e3fa",
        "fe0fda7c425b48c516fc8f160d594c8022a0808447475c1a7c6d6479763f310c"),
    "multilingual_L-12_H-768_A-12": _hashes(
        "49063bb061390211d2fdd108cada1ed86faa5f90b80c8f6fdddf406afa4c4624",
        "3cd83912ebeb0efe2abf35c9f1d5a515d8e80295e61c49b75c8853f756658429",
        "87c372c1a3b1dc7effaaa9103c80a81b3cbab04c7933ced224eec3b8ad2cc8e7",
        "27f504f34f02acaa6b0f60d65195ec3e3f9505ac14601c6a32b421d0c8413a29",
        "87b44292b452f6c05afa49b2e488e7eedf79ea4f4c39db6f2f4b37764228ef3f"),
    "chinese_L-12_H-768_A-12": _hashes(
        "7aaad0335058e2640bcb2c2e9a932b1cd9da200c46ea7b8957d54431f201c015",
        "756699356b78ad0ef1ca9ba6528297bcb3dd1aef5feadd31f4775d7c7fc989ba",
        "46315546e05ce62327b3e2cd1bed22836adcb2ff29735ec87721396edb21b82e",
        "c0f8d51e1ab986604bc2b25d6ec0af7fd21ff94cf67081996ec3f3bf5d823047",
        "45bbac6b341c319adc98a532532882e91a9cefc0329aa57bac9ae761c27b291c"),
}
# fmt: on

_ZIP_BYTES = {"multi_cased_L-12_H-768_A-12": 662_903_077}


def _originals() -> list[Release]:
    """The nine 2018/2019 releases: five files in one folder named like the zip."""
    out = []
    for name, path, layers, hidden, heads, vocab, lower, hf_name, description in _ORIGINAL_TABLE:
        folder = path.rsplit("/", 1)[1].removesuffix(".zip")
        extras = {}
        if folder.startswith(("multi", "chinese")):
            extras = _multilingual_extras(hidden, heads)
        out.append(
            Release(
                name=name,
                path=path,
                folder=folder,
                layers=layers,
                hidden=hidden,
                heads=heads,
                intermediate=4 * hidden,
                vocab_size=vocab,
                lowercase=lower,
                description=description,
                sha256=_PUBLISHED.get(folder, {}),
                zip_bytes=_ZIP_BYTES.get(folder),
                aliases=(hf_name,),
                extra_config=extras,
            )
        )
    return out


_SMALL_NAMES = {(2, 128): "tiny", (4, 256): "mini", (4, 512): "small", (8, 512): "medium"}


def _small_models() -> list[Release]:
    """The 24 compact English models of March 2020 (Turc et al.), files at the zip root, no .meta."""
    out = []
    for layers in (2, 4, 6, 8, 10, 12):
        for hidden in (128, 256, 512, 768):
            heads = hidden // 64
            folder = f"uncased_L-{layers}_H-{hidden}_A-{heads}"
            short = f"uncased-L-{layers}-H-{hidden}"
            named = _SMALL_NAMES.get((layers, hidden))
            name = named or short
            aliases = (short,) if named else ()
            if (layers, hidden) != (12, 768):
                # L-12/H-768 shares its folder name with BERT-Base, which keeps that alias.
                aliases += (folder,)
            label = f"{layers} layers, hidden {hidden}"
            out.append(
                Release(
                    name=name,
                    path=f"2020_02_20/{folder}.zip",
                    folder=folder,
                    layers=layers,
                    hidden=hidden,
                    heads=heads,
                    intermediate=4 * hidden,
                    vocab_size=30522,
                    lowercase=True,
                    description=f"BERT-{named.capitalize()}, English, {label}"
                    if named
                    else f"English, {label}",
                    aliases=aliases,
                )
            )
    return out


_BUNDLE = Release(
    name="all-small",
    path="2020_02_20/all_bert_models.zip",
    folder="",
    layers=0,
    hidden=0,
    heads=0,
    intermediate=0,
    vocab_size=30522,
    lowercase=True,
    description="All 24 compact English models in one zip of zips",
    aliases=("all_bert_models",),
    bundle=True,
)

RELEASES: tuple[Release, ...] = (*_originals(), *_small_models(), _BUNDLE)


def _index() -> dict[str, Release]:
    table: dict[str, Release] = {}
    for rel in RELEASES:
        for key in (rel.name, rel.folder, *rel.aliases):
            if key:
                table.setdefault(key.lower(), rel)
    return table


_BY_NAME = _index()


def find(name: str) -> Release | None:
    """The release with this short name, folder name or alias (case-insensitive), else None."""
    return _BY_NAME.get(name.strip().lower())


def names() -> list[str]:
    """Every short name, in catalogue order."""
    return [r.name for r in RELEASES]


# Google's `validate_case_matches_checkpoint` knows seven folder names; every release folder here
# (WWM, the compact models) follows the same "uncased"/"cased" naming, so the check extends to all.
_FOLDER_RE = re.compile(r"(?:^|[/\\])([A-Za-z0-9_-]+)[/\\]bert_model\.ckpt")


def casing_from_name(path_or_name: str) -> tuple[bool, str] | None:
    """Casing implied by a Google model name or by the folder of a checkpoint path.

    Returns (lowercase, matched_name) or None when the name is not one of Google's.

    >>> casing_from_name("gs://bucket/multi_cased_L-12_H-768_A-12/bert_model.ckpt")
    (False, 'multi_cased_L-12_H-768_A-12')
    """
    text = path_or_name.rstrip("/\\")
    match = _FOLDER_RE.search(text)
    candidates = [match.group(1)] if match else []
    candidates.append(re.split(r"[/\\]", text)[-1])
    for candidate in candidates:
        rel = find(candidate)
        if rel is not None and not rel.bundle:
            return rel.lowercase, candidate
    return None
