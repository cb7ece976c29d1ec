"""bert_config.json: Google's defaults, exact parameter counts, every broken config flagged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bertctl import catalog
from bertctl.bertconfig import (
    BertConfig,
    check_config,
    count_parameters,
    expected_tensor_shapes,
    load_config,
)
from bertctl.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures"

CONFIGS = FIXTURES / "configs"

# REFERENCE §1: encoder + pooler, and with the MLM + NSP heads.
EXACT_COUNTS = {
    "base_uncased_bert_config.json": (109_482_240, 110_106_428),
    "large_uncased_bert_config.json": (335_141_888, 336_226_108),
    "multi_cased_bert_config.json": (177_853_440, 178_566_653),
}


@pytest.mark.parametrize("name", sorted(EXACT_COUNTS))
def test_exact_parameter_counts(name):
    loaded = load_config(CONFIGS / name)
    assert loaded.problems == ()
    assert loaded.defaults_applied == ()
    config = loaded.config
    assert (count_parameters(config), count_parameters(config, heads=True)) == EXACT_COUNTS[name]


def test_release_data_file_is_four_bytes_per_parameter():
    # The release .data file is dense float32 of every variable, heads included.
    config = load_config(CONFIGS / "base_uncased_bert_config.json").config
    shapes = expected_tensor_shapes(config, heads=True)
    assert len(shapes) == 206  # tensors in the BERT-Base release checkpoint
    assert 4 * count_parameters(config, heads=True) == 440_425_712


@pytest.mark.parametrize("name", ["base-uncased", "large-uncased", "base-multilingual-cased"])
def test_catalogue_configs_match_fixtures(name):
    fixture = {
        "base-uncased": "base_uncased_bert_config.json",
        "large-uncased": "large_uncased_bert_config.json",
        "base-multilingual-cased": "multi_cased_bert_config.json",
    }[name]
    assert catalog.find(name).bert_config() == json.loads((CONFIGS / fixture).read_text())


def test_google_defaults_applied_and_reported():
    loaded = check_config({"vocab_size": 100})
    assert loaded.config == BertConfig(vocab_size=100, type_vocab_size=16)
    assert "type_vocab_size" in loaded.defaults_applied
    assert "hidden_size" in loaded.defaults_applied
    assert any("type_vocab_size" in p.message and p.level == "warning" for p in loaded.problems)


# Each broken config and a phrase its error must contain.
BROKEN = {
    "heads_not_dividing.json": "not divisible by num_attention_heads 10",
    "vocab_size_missing.json": "vocab_size is missing",
    "vocab_size_string.json": 'vocab_size must be a whole number, got "30522"',
    "negative_layers.json": "num_hidden_layers must be positive, got -2",
    "fractional_hidden.json": "hidden_size must be a whole number, got 768.5",
    "bool_heads.json": "num_attention_heads must be a whole number, got true",
    "zero_intermediate.json": "intermediate_size must be positive, got 0",
    "dropout_above_one.json": "attention_probs_dropout_prob must be a probability",
    "unknown_activation.json": 'hidden_act must be one of gelu, relu, tanh, linear, got "swishy"',
    "array_not_object.json": "holds a JSON list",
    "misspelt_key.json": "rename it to 'num_hidden_layers'",
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_config_is_flagged(name):
    loaded = load_config(CONFIGS / "broken" / name)
    assert loaded.config is None
    messages = [p.message for p in loaded.errors]
    assert any(BROKEN[name] in m for m in messages), messages
    assert all(str(CONFIGS / "broken" / name) in m for m in messages)


@pytest.mark.parametrize(
    ("name", "phrase"),
    [("trailing_comma.json", "trailing_comma.json:4:1: invalid JSON"), ("empty.json", "is empty")],
)
def test_unreadable_config_raises_one_clear_error(name, phrase):
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "broken" / name)
    assert phrase in info.value.one_line()
    assert "\n" not in info.value.one_line()


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "bert_config.json")


def test_hf_config_keys_are_tolerated_and_epsilon_read():
    raw = json.loads((CONFIGS / "base_uncased_bert_config.json").read_text())
    raw.update(model_type="bert", layer_norm_eps=1e-7, architectures=["BertModel"])
    loaded = check_config(raw)
    assert loaded.problems == ()
    assert loaded.config.layer_norm_eps == 1e-7


def test_unknown_key_far_from_any_known_is_a_warning():
    loaded = check_config({"vocab_size": 10, "type_vocab_size": 2, "my_note": "x"})
    assert loaded.config is not None
    assert [p.level for p in loaded.problems] == ["warning"]
    assert "'my_note' is ignored" in loaded.problems[0].message
