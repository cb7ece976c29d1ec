"""The release table: names, aliases, URLs, casing and exact sizes."""

from __future__ import annotations

import pytest

from bertctl import catalog
from bertctl.bertconfig import check_config, count_parameters


def test_every_release_is_listed_once():
    names = catalog.names()
    assert len(names) == len(set(names))
    # nine originals and WWM, 24 compact models, the bundle
    assert len(catalog.RELEASES) == 9 + 24 + 1
    assert {"tiny", "mini", "small", "medium"} <= set(names)


@pytest.mark.parametrize(
    ("name", "folder", "lower"),
    [
        ("base-uncased", "uncased_L-12_H-768_A-12", True),
        ("uncased_L-24_H-1024_A-16", "uncased_L-24_H-1024_A-16", True),
        ("multi_cased_L-12_H-768_A-12", "multi_cased_L-12_H-768_A-12", False),
        ("large-cased-wwm", "wwm_cased_L-24_H-1024_A-16", False),
        ("TINY", "uncased_L-2_H-128_A-2", True),
        ("uncased_L-4_H-512_A-8", "uncased_L-4_H-512_A-8", True),
        ("base-chinese", "chinese_L-12_H-768_A-12", True),
    ],
)
def test_find_by_name_alias_or_folder(name, folder, lower):
    rel = catalog.find(name)
    assert rel.folder == folder
    assert rel.lowercase is lower
    assert rel.url.startswith(catalog.BASE_URL) and rel.url.endswith(".zip")


def test_compact_models_shapes():
    tiny = catalog.find("tiny")
    assert (tiny.layers, tiny.hidden, tiny.heads, tiny.intermediate) == (2, 128, 2, 512)
    assert tiny.path == "2020_02_20/uncased_L-2_H-128_A-2.zip"
    # the L-12/H-768 folder name belongs to BERT-Base
    assert catalog.find("uncased_L-12_H-768_A-12").name == "base-uncased"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("gs://b/uncased_L-12_H-768_A-12/bert_model.ckpt", (True, "uncased_L-12_H-768_A-12")),
        (
            "models/multi_cased_L-12_H-768_A-12/bert_model.ckpt",
            (False, "multi_cased_L-12_H-768_A-12"),
        ),
        ("wwm_uncased_L-24_H-1024_A-16", (True, "wwm_uncased_L-24_H-1024_A-16")),
        ("x/uncased_L-6_H-256_A-4/", (True, "uncased_L-6_H-256_A-4")),
        ("my_model/bert_model.ckpt", None),
    ],
)
def test_casing_from_name(path, expected):
    assert catalog.casing_from_name(path) == expected


def test_multilingual_data_size_matches_parameter_count():
    # 662,903,077-byte zip; its float32 data file is 4 bytes per parameter with heads
    rel = catalog.find("base-multilingual-cased")
    config = check_config(rel.bert_config()).config
    assert count_parameters(config, heads=True) == 178_566_653
    assert rel.zip_bytes == 662_903_077
    assert len(rel.sha256) == 5
