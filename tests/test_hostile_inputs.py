"""Hostile inputs found by fuzzing (test_hostile_fuzz.py) or by reading the code, each pinned as
the one line a user sees: what is wrong, where (file, line, tensor or flag) and what to do.

Every case here made bertctl hang, crash with a traceback or exhaust memory before it was
fixed. Commands run in this process through the real entry point (clirun.in_process).
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
from clirun import Result, one_error_line
from clirun import in_process as cli

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY = FIXTURES / "tf" / "tiny_release"
MRPC = FIXTURES / "glue" / "MRPC"


def error_of(result: Result, code: int = 1) -> str:
    assert result.code == code, (result.code, result.stderr)
    return one_error_line(result)


# --------------------------------------------------------------------------------------------
# bert_config.json


def test_a_config_with_a_billion_layers_is_an_error_not_a_hang(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps({"vocab_size": 99, "num_hidden_layers": 10**9}))
    result = cli("inspect", path)  # listed tensor by tensor, this never finished
    assert result.code == 1  # the report (stdout) lists the problem
    assert f"error: {path}: num_hidden_layers is 1,000,000,000, beyond any BERT" in result.stdout


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b'{"vocab_size": 1' + b"0" * 5000 + b"}", "not a config file (Exceeds the limit"),
        (b"[" * 100_000 + b"]" * 100_000, "not a config file (nested too deeply)"),
        (b'{"vocab_size": 99, "hidden_size": 1e300}', "hidden_size is a 301-digit number"),
        (b'{"vocab_size": 99, "initializer_range": Infinity}', "initializer_range must be"),
    ],
    ids=["5000-digits", "deep", "1e300", "infinity"],
)
def test_configs_past_pythons_limits_are_one_error_line(tmp_path, content, words):
    path = tmp_path / "bert_config.json"
    path.write_bytes(content)
    result = cli("inspect", path)
    assert result.code == 1 and "Traceback" not in result.stderr
    assert f"error: {path}: {words}" in result.stdout + result.stderr


# --------------------------------------------------------------------------------------------
# Flags


def test_a_huge_max_seq_length_is_refused_before_padding_fills_memory():
    error = error_of(cli("tokenize", "John Smith", "--max-seq-length", 10**12), code=2)
    assert "--max-seq-length 1000000000000 is longer than any BERT takes" in error
    assert "at most 32767" in error


# --------------------------------------------------------------------------------------------
# finetune --config FILE.yaml, and the config.yaml a --resume reads

BOMB = "\n".join(
    [
        "data: &a [x, x, x, x, x, x, x, x, x]",
        *(
            f"{key}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]"
            for i, key in enumerate(
                ["model", "out", "device", "language", "text_b", "label_column"]
            )
        ),
        "text_a: [*g, *g, *g, *g, *g, *g, *g, *g, *g]",  # 9 ** 8 strings if ever stringified
    ]
)


@pytest.mark.parametrize(
    ("content", "code", "words"),
    [
        (BOMB.encode(), 1, "data must be str, got a list of 9 items"),
        (b"lr: \xff\xfe\n", 1, "not UTF-8 text (byte 4); save the file as UTF-8"),
        (b"[" * 50_000, 1, "too large or nested too deeply to be a settings file"),
        (b"- " * 50_000, 1, "nested too deeply to be a settings file"),
        (b"lr: .nan\n", 2, "--lr must be positive"),
        (b"max_grad_norm: .inf\n", 2, "max_grad_norm must be positive"),
        (b"batch_size: true\n", 1, "batch_size must be int, got True"),
        (b"seed: 99999999999999999999\n", 2, "--seed must be between 0 and 4294967295"),
        (b"eval_every: 0\n", 2, "--eval-every must be at least 1"),
        (b"grad_accum: 0\n", 2, "--grad-accum must be at least 1"),  # was a ZeroDivisionError
        (b"- mrpc\n", 1, "expected a mapping of settings, got list"),
    ],
    ids=[
        "alias-bomb",
        "not-utf8",
        "deep-flow",
        "deep-block",
        "nan",
        "inf",
        "bool",
        "seed",
        "zero",
        "grad-accum-zero",
        "list",
    ],
)
def test_hostile_finetune_yaml_is_one_error_line_naming_the_file(tmp_path, content, code, words):
    path = tmp_path / "settings.yaml"
    path.write_bytes(content)
    error = error_of(cli("finetune", "mrpc", "--config", path), code)
    assert str(path) in error and words in error


def test_a_yaml_tag_that_would_run_a_command_is_refused_not_run(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "settings.yaml"
    path.write_text(f"lr: !!python/object/apply:os.system ['touch {marker}']\n")
    error = error_of(cli("finetune", "mrpc", "--config", path))
    assert f"{path}:1: invalid YAML" in error and "python/object/apply" in error
    assert not marker.exists()


def test_a_folder_given_as_config_is_one_error_line(tmp_path):
    error = error_of(cli("finetune", "mrpc", "--config", tmp_path))
    assert f"{tmp_path} is a folder" in error


@pytest.mark.parametrize("content", [b"{broken: [", b"- a\n- b\n", b"\xff\xfe"], ids=str)
def test_a_damaged_run_config_on_resume_is_one_error_line(tmp_path, content):
    for command in ("finetune", "pretrain run"):
        run = tmp_path / command.replace(" ", "-")
        run.mkdir()
        (run / "config.yaml").write_bytes(content)
        error = error_of(cli(*command.split(), "--out", run, "--resume"))
        assert str(run / "config.yaml") in error


# --------------------------------------------------------------------------------------------
# Model folders and zips read in place


def _hf_folder(tmp_path: Path, header: object) -> Path:
    folder = tmp_path / "hf"
    assert cli("convert", TINY, "--out", folder).code == 0
    raw = json.dumps(header).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 64)
    return folder


@pytest.mark.parametrize(
    "header",
    [
        {"w": 1},
        {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 10**9]}},
        {"w": {"dtype": "F32", "shape": "x", "data_offsets": [0, 8]}},
        {"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}},
    ],
    ids=["not-an-entry", "past-the-end", "shape-text", "negative"],
)
def test_a_lying_safetensors_header_names_the_file_and_tensor(tmp_path, header):
    folder = _hf_folder(tmp_path, header)
    error = error_of(cli("inspect", folder))
    assert f"{folder / 'model.safetensors'}: tensor 'w' has a malformed entry" in error
    error = error_of(cli("verify", folder))
    assert "tensor 'w' has a malformed entry" in error


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _release_members() -> dict[str, bytes]:
    return {f"m/{f.name}": f.read_bytes() for f in sorted(TINY.iterdir())}


def test_a_zip_with_a_damaged_config_is_one_line_naming_the_member(tmp_path):
    data = bytearray(_zip(_release_members()))
    at = data.index(b'"hidden_size"')  # inside the stored bert_config.json
    data[at + 1] ^= 0x20
    path = tmp_path / "model.zip"
    path.write_bytes(bytes(data))
    for args in (["inspect", path], ["plan", path, "--gpu-memory", "12GiB"]):
        error = error_of(cli(*args))
        assert f"{path}: m/bert_config.json has CRC-32" in error and "download it again" in error


def test_a_zip_member_claiming_gigabytes_is_not_read_into_memory(tmp_path):
    data = bytearray(_zip(_release_members()))
    name_at = data.index(b"m/bert_config.json", data.index(b"PK\x01\x02"))
    entry = data.rindex(b"PK\x01\x02", 0, name_at)  # its central-directory entry
    data[entry + 24 : entry + 28] = (0xFFFFFFF0).to_bytes(4, "little")  # uncompressed size
    path = tmp_path / "model.zip"
    path.write_bytes(bytes(data))
    error = error_of(cli("inspect", path))
    assert f"{path}: m/bert_config.json claims 4,294,967,280 bytes" in error


def test_converting_a_truncated_zip_is_one_error_line(tmp_path):
    path = tmp_path / "model.zip"
    path.write_bytes(_zip(_release_members())[:-30])  # the end of the central directory is cut
    error = error_of(cli("convert", path, "--out", tmp_path / "out"))
    assert f"{path}: not a readable zip" in error and "download it again" in error
    assert not (tmp_path / "out").exists()


def test_a_run_with_a_damaged_run_record_still_serves_its_model(tmp_path):
    """finetune --model RUN reads run.json only for the release name: damage there is not fatal."""
    from bertctl.train.modeling import _hf_folder as resolve_model

    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    shutil.copy(TINY / "vocab.txt", run / "final" / "vocab.txt")
    (run / "final" / "config.json").write_text("{}")
    (run / "run.json").write_text("[1, 2")
    folder, release, _ = resolve_model(str(run), reporter=None)
    assert folder == run / "final" and release is None


def test_a_tilde_path_of_a_user_that_does_not_exist_is_a_missing_file_not_a_crash():
    # pathlib raises RuntimeError expanding `~nosuchuser`; found by the command-line fuzz
    for args in (["verify", "~nosuchuser0/x"], ["inspect", "~0"], ["tokenize", "-i", "~0"]):
        error = error_of(cli(*args))
        assert "~" in error and "no such file" in error


def test_a_setting_left_empty_in_yaml_keeps_its_default(tmp_path):
    from bertctl.train.config import FinetuneConfig, resolve

    path = tmp_path / "settings.yaml"
    path.write_text("epochs:\nlr: ~\nmax_steps: null\n")  # found by the YAML fuzz: a crash
    cfg, explicit = resolve(path, {})
    assert (cfg.epochs, cfg.lr, cfg.max_steps) == (3.0, FinetuneConfig().lr, None)
    assert not explicit & {"epochs", "lr", "max_steps"}


def test_a_damaged_checkpoint_index_in_a_zip_names_the_member_not_a_temp_copy(tmp_path):
    members = _release_members()
    members["m/bert_model.ckpt.index"] = b"not an index"
    path = tmp_path / "model.zip"
    path.write_bytes(_zip(members))
    error = error_of(cli("inspect", path))  # found by the zip fuzz: a temp copy was named
    assert f"cannot read checkpoint index {path}:m/bert_model.ckpt.index" in error


def test_a_file_name_with_line_breaks_still_makes_one_error_line(tmp_path):
    for name in ("a\rb.txt", "a\u2028b.txt", "a\nb.txt"):
        result = cli("tokenize", "-i", tmp_path / name)
        assert result.code == 1
        assert len(result.stderr.splitlines()) == 1  # one line however a terminal splits it
        assert "no such file" in one_error_line(result)
