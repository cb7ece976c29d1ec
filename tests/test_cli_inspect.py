"""`bertctl inspect` on every kind of target, through the real command."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from clirun import bertctl, one_error_line

FIXTURES = Path(__file__).parent / "fixtures"
CONFIGS = FIXTURES / "configs"
TINY = FIXTURES / "tf" / "tiny_release"


@pytest.mark.parametrize(
    ("target", "counts"),
    [
        (str(CONFIGS / "base_uncased_bert_config.json"), ("109,482,240", "110,106,428")),
        (str(CONFIGS / "large_uncased_bert_config.json"), ("335,141,888", "336,226,108")),
        (str(CONFIGS / "multi_cased_bert_config.json"), ("177,853,440", "178,566,653")),
        ("base-uncased", ("109,482,240", "110,106,428")),
        ("base-multilingual-cased", ("177,853,440", "178,566,653")),
    ],
)
def test_exact_counts_printed(target, counts):
    r = bertctl("inspect", target)
    assert r.code == 0, r.stdout + r.stderr
    assert f"{counts[0]} encoder + pooler; {counts[1]} with pretraining heads" in r.stdout
    assert "No problems found." in r.stdout


def test_json_report():
    r = bertctl("inspect", "base-uncased", "--json")
    report = json.loads(r.stdout)
    assert report["ok"] is True
    assert report["parameters"] == 109_482_240
    assert report["parameters_with_heads"] == 110_106_428
    assert report["fp32_bytes_with_heads"] == 4 * 110_106_428
    assert report["vocab"]["size"] == 30522 and report["vocab"]["lowercase"] is True


@pytest.mark.parametrize("name", sorted(p.name for p in (CONFIGS / "broken").glob("*.json")))
def test_every_broken_config_flagged_with_exit_1(name):
    r = bertctl("inspect", str(CONFIGS / "broken" / name))
    assert r.code == 1
    assert "Traceback" not in r.stderr
    assert "error:" in r.stdout + r.stderr


def test_release_folder_with_checkpoint_and_tensors():
    r = bertctl("inspect", str(TINY), "--tensors", "--json")
    assert r.code == 0, r.stdout
    report = json.loads(r.stdout)
    ck = report["checkpoint"]
    assert ck["tensors"] == 46 and ck["has_pretraining_heads"] and not ck["has_optimizer_slots"]
    shapes = {t["name"]: t["shape"] for t in ck["tensor_list"]}
    assert shapes["bert/embeddings/word_embeddings"] == [99, 32]
    assert shapes["bert/encoder/layer_1/intermediate/dense/kernel"] == [32, 37]
    assert report["parameters_with_heads"] * 4 == ck["bytes"]


def test_checkpoint_prefix_with_training_slots():
    r = bertctl("inspect", str(FIXTURES / "tf" / "tiny_classifier" / "model.ckpt-343"), "--json")
    ck = json.loads(r.stdout)["checkpoint"]
    assert ck["has_optimizer_slots"] and ck["has_global_step"]
    assert ck["classifier_labels"] == 3 and not ck["has_pretraining_heads"]


def test_google_written_checkpoint(shared_data):
    r = bertctl("inspect", str(shared_data / "tf_checkpoint_toy"), "--json")
    assert r.code == 0, r.stdout
    report = json.loads(r.stdout)
    assert report["config"]["hidden_size"] == 4 and report["vocab"]["size"] == 15
    assert report["checkpoint"]["has_optimizer_slots"] and report["checkpoint"]["has_global_step"]


def test_vocab_size_mismatch_is_an_error(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(TINY, folder)
    lines = (folder / "vocab.txt").read_text().splitlines()
    (folder / "vocab.txt").write_text("\n".join(lines[:-3]) + "\n")
    r = bertctl("inspect", str(folder))
    assert r.code == 1
    assert "vocab_size is 99" in r.stdout and "has 96 lines" in r.stdout


def test_config_that_does_not_fit_the_checkpoint(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(TINY, folder)
    config = json.loads((folder / "bert_config.json").read_text())
    config["intermediate_size"] = 64
    (folder / "bert_config.json").write_text(json.dumps(config))
    r = bertctl("inspect", str(folder))
    assert r.code == 1
    assert "intermediate/dense/kernel has shape [32, 37], the config implies [32, 64]" in r.stdout


@pytest.mark.parametrize("nested", [True, False])
def test_release_zip_both_layouts(tmp_path, nested):
    zpath = tmp_path / "uncased_L-2_H-32_A-4.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted(TINY.iterdir()):
            zf.write(f, f"uncased_L-2_H-32_A-4/{f.name}" if nested else f.name)
    r = bertctl("inspect", str(zpath), "--json")
    assert r.code == 0, r.stdout
    report = json.loads(r.stdout)
    assert report["kind"] == "release-zip"
    assert report["checkpoint"]["tensors"] == 46
    assert report["vocab"]["size"] == 99


def test_zip_without_config(tmp_path):
    zpath = tmp_path / "x.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("vocab.txt", "[UNK]\n")
    r = bertctl("inspect", str(zpath))
    assert r.code == 1 and "holds no bert_config.json" in one_error_line(r)


def test_hf_folder(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    import numpy as np

    folder = tmp_path / "hf"
    folder.mkdir()
    config = json.loads((TINY / "bert_config.json").read_text())
    config.update(model_type="bert", layer_norm_eps=1e-12)
    (folder / "config.json").write_text(json.dumps(config))
    shutil.copy(TINY / "vocab.txt", folder / "vocab.txt")
    (folder / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    safetensors_numpy.save_file(
        {"bert.embeddings.word_embeddings.weight": np.zeros((99, 32), np.float32)},
        str(folder / "model.safetensors"),
    )
    r = bertctl("inspect", str(folder), "--tensors", "--json")
    assert r.code == 0, r.stdout
    report = json.loads(r.stdout)
    assert report["kind"] == "hf-folder"
    assert report["vocab"]["lowercase"] is False  # from tokenizer_config.json
    assert report["checkpoint"]["tensor_list"][0]["shape"] == [99, 32]


def test_missing_target_one_line():
    r = bertctl("inspect", "no/such/thing")
    assert r.code == 1
    assert "no/such/thing: no such file, folder or model name" in one_error_line(r)
    r = bertctl("inspect", "base-uncasd")
    assert "did you mean base-uncased?" in one_error_line(r)


def test_corrupt_checkpoint_index_one_line(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(TINY, folder)
    (folder / "bert_model.ckpt.index").write_bytes(b"not an sstable at all, just bytes" * 3)
    r = bertctl("inspect", str(folder))
    assert r.code == 1
    assert "bert_model.ckpt.index" in one_error_line(r)
