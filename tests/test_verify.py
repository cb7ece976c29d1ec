"""bertctl.verify on real checkpoints (TensorFlow-written fixtures, Google's own toy checkpoint)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import shutil
import struct
import zipfile
from pathlib import Path

import pytest

from bertctl import catalog, verify
from bertctl.errors import BertctlError
from bertctl.tfcheckpoint import Checkpoint
from bertctl.verify import Check, VerifyReport

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY = FIXTURES / "tf" / "tiny_release"
DATA = "bert_model.ckpt.data-00000-of-00001"
FOLDER = "uncased_L-2_H-32_A-4"
FILES = sorted(p.name for p in TINY.iterdir())


def copy_tiny(tmp_path: Path, name: str = "model") -> Path:
    folder = tmp_path / name
    shutil.copytree(TINY, folder)
    return folder


def make_zip(path: Path, source: Path = TINY, nested: bool = True, deflate: bool = False) -> Path:
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as zf:
        for f in sorted(source.iterdir()):
            zf.write(f, f"{FOLDER}/{f.name}" if nested else f.name)
    return path


def member_data_start(path: Path, member: str) -> int:
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    name_len, extra_len = struct.unpack_from("<HH", path.read_bytes(), info.header_offset + 26)
    return info.header_offset + 30 + name_len + extra_len


def flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x5A
    path.write_bytes(bytes(raw))


def failed(report: VerifyReport, name: str | None = None) -> list[Check]:
    return [c for c in report.checks if c.ok is False and (name is None or c.name == name)]


def by_name(report: VerifyReport, name: str) -> list[Check]:
    return [c for c in report.checks if c.name == name]


def tensor_at(ckpt: Checkpoint, byte: int) -> str:
    """The tensor whose bytes hold data-file offset `byte`, from the index offsets."""
    (name,) = [e.name for e in ckpt.entries.values() if e.offset <= byte < e.offset + e.size]
    return name


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fake_release(**changes) -> catalog.Release:
    """A catalogue entry reshaped to the tiny fixture, with the fixture files' real hashes."""
    base = catalog.find("tiny")
    assert base is not None
    fields = dict(
        name="tiny-fixture",
        folder=FOLDER,
        layers=2,
        hidden=32,
        heads=4,
        intermediate=37,
        vocab_size=99,
        lowercase=True,
        sha256={name: sha256(TINY / name) for name in FILES},
    )
    fields.update(changes)
    return dataclasses.replace(base, **fields)


# --------------------------------------------------------------------------------------------
# Intact inputs pass
# --------------------------------------------------------------------------------------------


def test_intact_folder_passes_every_check(tmp_path):
    report = verify.verify_folder(copy_tiny(tmp_path))
    assert report.ok, failed(report)
    names = {c.name for c in report.checks}
    assert {"files", "sha256", "config", "vocab size", "shapes", "tensor crc32c"} <= names
    (summary,) = by_name(report, "tensor crc32c")
    assert summary.ok and "all 46 tensors" in summary.detail
    assert summary.target.endswith(DATA)
    # Nothing names this folder as a Google release: hashes and casing are skipped, with reasons.
    assert report.release is None
    assert all(c.ok is None and "skipped" in c.detail for c in by_name(report, "sha256"))


@pytest.mark.parametrize("nested", [True, False])
@pytest.mark.parametrize("deflate", [False, True])
def test_intact_zip_passes_in_both_layouts(tmp_path, nested, deflate):
    zpath = make_zip(tmp_path / "m.zip", nested=nested, deflate=deflate)
    seen: list[tuple[int, int]] = []
    report = verify.verify_zip(zpath, on_progress=lambda d, t: seen.append((d, t)))
    assert report.ok, failed(report)
    crcs = by_name(report, "zip crc")
    assert len(crcs) == len(FILES) and all(c.ok for c in crcs)
    assert "all 46 tensors" in by_name(report, "tensor crc32c")[0].detail
    total = sum((TINY / n).stat().st_size for n in FILES)
    assert seen[-1] == (total, total)
    assert [p.name for p in tmp_path.iterdir()] == ["m.zip"]  # nothing extracted beside it


def test_report_to_dict_is_json(tmp_path):
    report = verify.verify_zip(make_zip(tmp_path / "m.zip"))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True and data["target"] == str(tmp_path / "m.zip")
    assert {"name", "target", "ok", "detail"} == set(data["checks"][0])


def test_google_toy_checkpoint_passes_every_tensor_crc(shared_data, tmp_path):
    toy = shared_data / "tf_checkpoint_toy"
    report = verify.verify_folder(toy)
    assert report.ok, failed(report)
    (summary,) = by_name(report, "tensor crc32c")
    total = len(Checkpoint(toy).entries)
    assert summary.ok and f"all {total} tensors" in summary.detail
    # Adam slots and global_step are not model tensors: the shapes still match the config.
    assert by_name(report, "shapes")[0].ok
    # The same checkpoint zipped (with its .meta) verifies the same way without extraction.
    zreport = verify.verify_zip(make_zip(tmp_path / "toy.zip", source=toy, deflate=True))
    assert zreport.ok, failed(zreport)
    assert f"all {total} tensors" in by_name(zreport, "tensor crc32c")[0].detail


# --------------------------------------------------------------------------------------------
# Damage is found and named
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["first byte", "last byte", "inside word_embeddings", "random"])
def test_flipped_byte_in_folder_names_exactly_that_tensor(tmp_path, where):
    folder = copy_tiny(tmp_path)
    ckpt = Checkpoint(folder)
    entries = sorted(ckpt.entries.values(), key=lambda e: e.offset)
    embeddings = ckpt.entries["bert/embeddings/word_embeddings"]
    byte = {
        "first byte": entries[7].offset,
        "last byte": entries[-1].offset + entries[-1].size - 1,
        "inside word_embeddings": embeddings.offset + embeddings.size // 2 + 3,
        "random": random.Random(7).randrange((folder / DATA).stat().st_size),
    }[where]
    flip(folder / DATA, byte)
    expected = tensor_at(ckpt, byte)
    report = verify.verify_folder(folder)
    assert not report.ok
    bad = failed(report)
    assert [c.target for c in bad] == [expected]
    assert bad[0].name == "tensor crc32c" and f"{DATA}" in bad[0].detail
    # tfcheckpoint's own reader agrees on which tensor is damaged.
    assert [e.name for e, ok in Checkpoint(folder).iter_verify() if not ok] == [expected]


def test_flipped_byte_in_stored_zip_member_names_member_and_tensor(tmp_path):
    zpath = make_zip(tmp_path / "m.zip")
    member = f"{FOLDER}/{DATA}"
    ckpt = Checkpoint(TINY)
    word = ckpt.entries["bert/encoder/layer_1/intermediate/dense/kernel"]
    byte = word.offset + 100
    flip(zpath, member_data_start(zpath, member) + byte)
    report = verify.verify_zip(zpath)
    assert not report.ok
    (crc,) = failed(report, "zip crc")
    assert crc.target == f"{zpath}:{member}" and "CRC-32" in crc.detail
    assert [c.target for c in failed(report, "tensor crc32c")] == [tensor_at(ckpt, byte)]
    assert [c.name for c in failed(report)] == ["zip crc", "tensor crc32c"]


def test_flipped_byte_in_deflated_zip_member_fails_cleanly(tmp_path):
    zpath = make_zip(tmp_path / "m.zip", deflate=True)
    member = f"{FOLDER}/{DATA}"
    with zipfile.ZipFile(zpath) as zf:
        size = zf.getinfo(member).compress_size
    flip(zpath, member_data_start(zpath, member) + size // 2)
    report = verify.verify_zip(zpath)
    assert not report.ok
    assert [c.target for c in failed(report, "zip crc")] == [f"{zpath}:{member}"]
    assert failed(report, "tensor crc32c")


@pytest.mark.parametrize("keep", ["last-30", "half"])
def test_truncated_zip_is_one_clean_failure_naming_the_file(tmp_path, keep):
    zpath = make_zip(tmp_path / "m.zip", deflate=True)
    raw = zpath.read_bytes()
    zpath.write_bytes(raw[: len(raw) - 30] if keep == "last-30" else raw[: len(raw) // 2])
    report = verify.verify_zip(zpath)
    assert not report.ok
    (check,) = report.checks
    assert check.name == "zip" and check.target == str(zpath)
    assert str(zpath) in check.detail and "download" in check.detail


def test_truncated_data_file_in_folder(tmp_path):
    folder = copy_tiny(tmp_path)
    data = (folder / DATA).read_bytes()
    (folder / DATA).write_bytes(data[: len(data) - 1000])
    report = verify.verify_folder(folder)
    (check,) = failed(report)
    assert check.name == "tensor crc32c" and check.target.endswith(DATA)
    assert "truncated" in check.detail


def test_damaged_index_is_a_failed_check_not_a_crash(tmp_path):
    folder = copy_tiny(tmp_path)
    flip(folder / "bert_model.ckpt.index", 40)
    report = verify.verify_folder(folder)
    bad = failed(report, "tensor crc32c")
    assert len(bad) == 1 and "bert_model.ckpt.index" in bad[0].detail


def test_missing_vocab_fails_the_files_check(tmp_path):
    folder = copy_tiny(tmp_path)
    (folder / "vocab.txt").unlink()
    report = verify.verify_folder(folder)
    (files,) = by_name(report, "files")
    assert files.ok is False and "vocab.txt" in files.detail


def test_zip_without_config_and_zip_of_zips(tmp_path):
    inner = make_zip(tmp_path / "uncased_L-2_H-32_A-4.zip", nested=False)
    bundle = tmp_path / "all_bert_models.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        zf.write(inner, inner.name)
    report = verify.verify_zip(bundle)
    assert not report.ok
    (files,) = failed(report)
    assert "no bert_config.json in the zip" in files.detail and "zip of 1 zips" in files.detail
    assert all(c.ok for c in by_name(report, "zip crc"))


def test_unsafe_member_fails_zip_safety(tmp_path):
    zpath = make_zip(tmp_path / "m.zip")
    with zipfile.ZipFile(zpath, "a") as zf:
        zf.writestr("../evil", b"x")
    report = verify.verify_zip(zpath)
    assert [c.name for c in failed(report)] == ["zip safety"]
    assert "'../evil'" in failed(report)[0].detail


# --------------------------------------------------------------------------------------------
# Published hashes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("container", ["folder", "zip"])
def test_published_hashes_pass(tmp_path, container):
    release = fake_release()
    if container == "folder":
        report = verify.verify_folder(copy_tiny(tmp_path), release=release)
    else:
        report = verify.verify_zip(make_zip(tmp_path / "m.zip", deflate=True), release=release)
    assert report.ok, failed(report)
    assert report.release == "tiny-fixture"
    shas = by_name(report, "sha256")
    assert len(shas) == len(FILES) and all(c.ok for c in shas)
    assert by_name(report, "casing")[0].ok  # the published vocab is its own proof
    assert by_name(report, "config")[0].ok


@pytest.mark.parametrize("container", ["folder", "zip"])
def test_one_wrong_published_hash_fails_naming_that_file(tmp_path, container):
    hashes = fake_release().sha256 | {"bert_model.ckpt.index": "0" * 64}
    release = fake_release(sha256=hashes)
    if container == "folder":
        report = verify.verify_folder(copy_tiny(tmp_path), release=release)
    else:
        report = verify.verify_zip(make_zip(tmp_path / "m.zip"), release=release)
    (bad,) = failed(report)
    assert bad.name == "sha256" and bad.target.endswith("bert_model.ckpt.index")
    assert "0" * 64 in bad.detail and sha256(TINY / "bert_model.ckpt.index") in bad.detail


def test_absent_meta_is_skipped_not_failed(tmp_path):
    release = fake_release(sha256=fake_release().sha256 | {"bert_model.ckpt.meta": "1" * 64})
    report = verify.verify_folder(copy_tiny(tmp_path), release=release)
    assert report.ok
    (meta,) = [c for c in by_name(report, "sha256") if c.target.endswith(".meta")]
    assert meta.ok is None and "absent" in meta.detail


def test_release_without_published_hashes_is_skipped_with_reason(tmp_path):
    report = verify.verify_folder(copy_tiny(tmp_path), release=fake_release(sha256={}))
    (sha,) = by_name(report, "sha256")
    assert sha.ok is None and "no SHA-256 is published" in sha.detail
    assert by_name(report, "casing")[0].ok  # uncased vocab, uncased release


# --------------------------------------------------------------------------------------------
# Consistency between config, vocab and checkpoint
# --------------------------------------------------------------------------------------------


def test_vocab_line_count_mismatch(tmp_path):
    folder = copy_tiny(tmp_path)
    with (folder / "vocab.txt").open("a") as fh:
        fh.write("extra\n")
    report = verify.verify_folder(folder)
    (bad,) = failed(report)
    assert bad.name == "vocab size" and "100 lines" in bad.detail and "99" in bad.detail


def test_config_that_does_not_fit_the_checkpoint(tmp_path):
    folder = copy_tiny(tmp_path)
    config = json.loads((folder / "bert_config.json").read_text())
    config["intermediate_size"] = 64
    (folder / "bert_config.json").write_text(json.dumps(config))
    report = verify.verify_folder(folder)
    bad = failed(report)
    assert bad and {c.name for c in bad} == {"shapes"}
    assert any("intermediate/dense/kernel has shape [32, 37]" in c.detail for c in bad)


def test_invalid_config(tmp_path):
    folder = copy_tiny(tmp_path)
    config = json.loads((folder / "bert_config.json").read_text())
    config["num_attention_heads"] = 5
    (folder / "bert_config.json").write_text(json.dumps(config))
    report = verify.verify_folder(folder)
    (bad,) = failed(report)
    assert bad.name == "config" and "not divisible" in bad.detail


def test_config_of_another_release_fails(tmp_path):
    report = verify.verify_folder(copy_tiny(tmp_path), release=fake_release(hidden=64, sha256={}))
    (bad,) = failed(report)
    assert bad.name == "config" and "hidden_size 32 (the release has 64)" in bad.detail


def test_cased_vocab_for_an_uncased_release_fails_casing(tmp_path):
    folder = copy_tiny(tmp_path)
    lines = (folder / "vocab.txt").read_text().splitlines()
    lines[-1] = "Python"
    (folder / "vocab.txt").write_text("\n".join(lines) + "\n")
    report = verify.verify_folder(folder, release=fake_release(sha256={}))
    (bad,) = failed(report)
    assert bad.name == "casing" and "upper-case" in bad.detail
    cased = verify.verify_folder(folder, release=fake_release(sha256={}, lowercase=False))
    assert cased.ok


def test_release_is_inferred_from_the_name(tmp_path):
    # A folder named like BERT-Base uncased: compared with its published hashes (and failing).
    base = copy_tiny(tmp_path, "uncased_L-12_H-768_A-12")
    (base / "bert_model.ckpt.meta").write_bytes(b"meta")
    report = verify.verify_folder(base)
    assert report.release == "base-uncased"
    assert any("taken from the name" in c.detail for c in failed(report, "sha256"))
    # Without .meta it is the 2020 compact model of the same folder name, which has no hashes.
    (base / "bert_model.ckpt.meta").unlink()
    report = verify.verify_folder(base)
    assert report.release == "uncased-L-12-H-768"
    assert by_name(report, "sha256")[0].ok is None


def test_zip_release_is_inferred_from_its_folder(tmp_path):
    zpath = tmp_path / "download.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for name in FILES:
            zf.write(TINY / name, f"uncased_L-2_H-128_A-2/{name}")
    report = verify.verify_zip(zpath)
    assert report.release == "tiny"
    (bad,) = [c for c in failed(report) if c.name == "config"]
    assert "hidden_size 32 (the release has 128)" in bad.detail


def test_bad_paths_raise(tmp_path):
    with pytest.raises(BertctlError, match="no such folder"):
        verify.verify_folder(tmp_path / "absent")
    with pytest.raises(BertctlError, match="no such file"):
        verify.verify_zip(tmp_path / "absent.zip")
    zpath = make_zip(tmp_path / "m.zip")
    with pytest.raises(BertctlError, match="not a folder"):
        verify.verify_folder(zpath)


# --------------------------------------------------------------------------------------------
# The streaming tensor checker on its own
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 128, 4096, 1 << 20])
def test_tensor_stream_matches_the_index_for_any_chunking(chunk):
    ckpt = Checkpoint(TINY)
    data = (TINY / DATA).read_bytes()
    stream = verify.TensorStream(ckpt.entries.values())
    for start in range(0, len(data), chunk):
        stream.feed(data[start : start + chunk])
    assert stream.finish() == []
    assert len(stream.done) == len(ckpt.entries)
    assert all(got == entry.crc32c for entry, got in stream.done)


def test_the_verdict_counts_skipped_checks_apart(shared_data):
    """Google's own toy checkpoint has no published hash and no known release: those checks are
    skipped, and the verdict says so instead of "All 7 checks passed"."""
    from clirun import in_process

    r = in_process("verify", shared_data / "tf_checkpoint_toy")
    assert r.code == 0, r.stderr
    *rows, verdict = r.stdout.strip().splitlines()
    skipped = sum(" skipped " in row for row in rows)
    assert skipped >= 1
    assert verdict.endswith(f"checks passed, {skipped} skipped (see why above)"), verdict
    assert "All" not in verdict
