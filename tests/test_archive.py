"""bertctl.archive on real zips built here from the TensorFlow-written fixtures."""

from __future__ import annotations

import struct
import warnings
import zipfile
from pathlib import Path

import pytest

from bertctl import archive
from bertctl.archive import ArchiveError
from bertctl.errors import BertctlError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY = FIXTURES / "tf" / "tiny_release"
FOLDER = "uncased_L-2_H-32_A-4"
FILES = sorted(p.name for p in TINY.iterdir())


def make_zip(
    path: Path,
    nested: bool = True,
    compression: int = zipfile.ZIP_STORED,
    extra: tuple[tuple[zipfile.ZipInfo | str, bytes], ...] = (),
) -> Path:
    """A release zip of the tiny fixture: in a folder (2018 layout) or at the root (2020)."""
    prefix = f"{FOLDER}/" if nested else ""
    with zipfile.ZipFile(path, "w", compression) as zf:
        if nested:
            zf.writestr(zipfile.ZipInfo(prefix), b"")  # the folder entry Google's zips carry
        for name in FILES:
            zf.write(TINY / name, prefix + name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # duplicate names warn
            for info, data in extra:
                zf.writestr(info, data)
    return path


def data_span(path: Path, member: str) -> tuple[int, int]:
    """(start, length) of a member's stored bytes in the zip file."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    raw = path.read_bytes()
    name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
    return info.header_offset + 30 + name_len + extra_len, info.compress_size


def flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def leftovers(parent: Path, *keep: str) -> list[str]:
    """Anything in `parent` besides the named entries (temp folders, partial files)."""
    return sorted(p.name for p in parent.iterdir() if p.name not in keep)


# --------------------------------------------------------------------------------------------
# Finding the model folder, extracting
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("nested", "folder"), [(True, FOLDER), (False, "")])
def test_find_model_folder_in_both_layouts(tmp_path, nested, folder):
    zpath = make_zip(tmp_path / "m.zip", nested=nested)
    with zipfile.ZipFile(zpath) as zf:
        assert archive.find_model_folder(zf) == folder


@pytest.mark.parametrize("nested", [True, False])
@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_safe_extract_flattens_both_layouts(tmp_path, nested, compression):
    zpath = make_zip(tmp_path / "m.zip", nested=nested, compression=compression)
    dest = tmp_path / "models" / "tiny"
    assert archive.safe_extract(zpath, dest) == dest
    assert sorted(p.name for p in dest.iterdir()) == FILES
    for name in FILES:
        assert (dest / name).read_bytes() == (TINY / name).read_bytes()
    assert leftovers(dest.parent, "tiny") == []
    assert dest.stat().st_mode & 0o777 == 0o755


def test_only_the_model_folder_is_extracted(tmp_path):
    extra = (
        (f"{FOLDER}/sub/notes.txt", b"deeper"),
        ("README", b"beside the folder"),
        (f"__MACOSX/{FOLDER}/._vocab.txt", b"resource fork"),
    )
    zpath = make_zip(tmp_path / "m.zip", extra=extra)
    dest = archive.safe_extract(zpath, tmp_path / "out")
    assert sorted(p.name for p in dest.iterdir()) == FILES


def test_empty_destination_folder_is_accepted(tmp_path):
    zpath = make_zip(tmp_path / "m.zip")
    (tmp_path / "out").mkdir()
    archive.safe_extract(zpath, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == FILES


def test_non_empty_destination_is_refused_and_untouched(tmp_path):
    zpath = make_zip(tmp_path / "m.zip")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep me")
    with pytest.raises(ArchiveError, match="not empty"):
        archive.safe_extract(zpath, dest)
    assert [p.name for p in dest.iterdir()] == ["mine.txt"]
    assert leftovers(tmp_path, "m.zip", "out") == []


def test_small_model_layout_needs_no_meta(tmp_path):
    zpath = make_zip(tmp_path / "uncased_L-2_H-128_A-2.zip", nested=False)
    with zipfile.ZipFile(zpath) as zf:
        assert not any(n.endswith(".meta") for n in zf.namelist())
    dest = archive.safe_extract(zpath, tmp_path / "out")
    assert (dest / "bert_model.ckpt.index").is_file()


# --------------------------------------------------------------------------------------------
# Refusals: nothing is written
# --------------------------------------------------------------------------------------------


def assert_refused(tmp_path: Path, zpath: Path, member_text: str) -> ArchiveError:
    dest = tmp_path / "dest" / "model"
    with pytest.raises(ArchiveError) as info:
        archive.safe_extract(zpath, dest)
    message = info.value.one_line()
    assert str(zpath) in message
    assert member_text in message
    assert not dest.exists()
    assert not (tmp_path / "dest").exists()  # not even the parent: refused before any write
    assert leftovers(tmp_path, zpath.name) == []
    assert not Path("/abs").exists()
    return info.value


@pytest.mark.parametrize(
    "name",
    [
        "../evil",
        "/abs/evil",
        f"{FOLDER}/../../evil",
        "a/../../b",
        "C:/evil",
        "C:evil",
        "..\\evil",
        f"{FOLDER}\\..\\..\\evil",
        f"{FOLDER}/./evil",
        f"{FOLDER}//evil",
    ],
)
def test_unsafe_names_are_refused_before_anything_is_extracted(tmp_path, name):
    zpath = make_zip(tmp_path / "m.zip", extra=((name, b"evil"),))
    with zipfile.ZipFile(zpath) as zf:
        assert name in [i.orig_filename for i in zf.infolist()]  # zipfile kept the name as is
    assert_refused(tmp_path, zpath, repr(name))


def test_nul_byte_in_a_name_is_refused(tmp_path):
    # zipfile cannot write a NUL into a name; patch one in (same length, both headers).
    zpath = make_zip(tmp_path / "m.zip", extra=((f"{FOLDER}/vocab.txtXevil", b"evil"),))
    raw = zpath.read_bytes()
    assert raw.count(b"vocab.txtXevil") == 2
    zpath.write_bytes(raw.replace(b"vocab.txtXevil", b"vocab.txt\x00evil"))
    with zipfile.ZipFile(zpath) as zf:
        assert f"{FOLDER}/vocab.txt" in zf.namelist()  # zipfile itself cuts the name at the NUL
    assert_refused(tmp_path, zpath, "NUL")


def test_symlink_member_is_refused(tmp_path):
    link = zipfile.ZipInfo(f"{FOLDER}/evil_link")
    link.create_system = 3
    link.external_attr = 0o120777 << 16
    zpath = make_zip(tmp_path / "m.zip", extra=((link, b"/etc/passwd"),))
    error = assert_refused(tmp_path, zpath, "evil_link")
    assert "symbolic link" in error.message


def test_symlink_disguised_as_a_model_file_is_refused(tmp_path):
    link = zipfile.ZipInfo(f"{FOLDER}/vocab.txt")
    link.create_system = 3
    link.external_attr = 0o120777 << 16
    zpath = tmp_path / "m.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for name in FILES:
            if name != "vocab.txt":
                zf.write(TINY / name, f"{FOLDER}/{name}")
        zf.writestr(link, b"/etc/hostname")
    assert_refused(tmp_path, zpath, "vocab.txt")


@pytest.mark.parametrize(("mode", "why"), [(0o010644, "special file"), (0o020644, "special")])
def test_fifo_and_device_members_are_refused(tmp_path, mode, why):
    info = zipfile.ZipInfo(f"{FOLDER}/evil_fifo")
    info.create_system = 3
    info.external_attr = mode << 16
    zpath = make_zip(tmp_path / "m.zip", extra=((info, b""),))
    assert why in assert_refused(tmp_path, zpath, "evil_fifo").message


@pytest.mark.parametrize("second", [f"{FOLDER}/vocab.txt", f"{FOLDER}/VOCAB.txt"])
def test_duplicate_members_are_refused(tmp_path, second):
    zpath = make_zip(tmp_path / "m.zip", extra=((second, b"[UNK]\nevil\n"),))
    error = assert_refused(tmp_path, zpath, second)
    assert "twice" in error.message


def test_encrypted_flag_is_refused(tmp_path):
    zpath = make_zip(tmp_path / "m.zip", nested=False)
    raw = bytearray(zpath.read_bytes())
    with zipfile.ZipFile(zpath) as zf:
        local = zf.getinfo("vocab.txt").header_offset
        pos = zf.start_dir
    raw[local + 6] |= 1  # general-purpose flag bit 0 ("encrypted") in the local header...
    while raw[pos : pos + 4] == b"PK\x01\x02":  # ...and in vocab.txt's central-directory record
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", raw, pos + 28)
        if raw[pos + 46 : pos + 46 + name_len] == b"vocab.txt":
            raw[pos + 8] |= 1
        pos += 46 + name_len + extra_len + comment_len
    zpath.write_bytes(bytes(raw))
    with zipfile.ZipFile(zpath) as zf:
        assert zf.getinfo("vocab.txt").flag_bits & 1
    assert "encrypted" in assert_refused(tmp_path, zpath, "vocab.txt").message


# --------------------------------------------------------------------------------------------
# Damaged zips: clean errors naming the file
# --------------------------------------------------------------------------------------------


def cut(path: Path, keep: int) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


@pytest.mark.parametrize("how", ["last-1", "last-22", "last-200", "middle", "first-10", "empty"])
def test_truncated_zip_gives_a_clean_error_naming_the_file(tmp_path, how):
    zpath = make_zip(tmp_path / "m.zip", compression=zipfile.ZIP_DEFLATED)
    size = zpath.stat().st_size
    keep = {
        "last-1": size - 1,
        "last-22": size - 22,
        "last-200": size - 200,
        "middle": size // 2,
        "first-10": 10,
        "empty": 0,
    }[how]
    cut(zpath, keep)
    with pytest.raises(ArchiveError) as info:
        archive.check_members(zpath)
    assert str(zpath) in info.value.message
    assert "re-download" in info.value.one_line() or "download it again" in info.value.one_line()
    assert_refused(tmp_path, zpath, str(zpath))


def test_not_a_zip_and_missing_file(tmp_path):
    text = tmp_path / "m.zip"
    text.write_text("<html>403 Forbidden</html>")
    with pytest.raises(ArchiveError, match="not a readable zip"):
        archive.safe_extract(text, tmp_path / "out")
    with pytest.raises(ArchiveError, match="no such file"):
        archive.check_members(tmp_path / "absent.zip")
    assert not (tmp_path / "out").exists()


def test_bytes_cut_from_the_middle_fail_cleanly(tmp_path):
    """Central directory intact but members shifted: every failure is a clean one."""
    zpath = make_zip(tmp_path / "m.zip")
    start, length = data_span(zpath, f"{FOLDER}/bert_model.ckpt.data-00000-of-00001")
    raw = zpath.read_bytes()
    zpath.write_bytes(raw[: start + length // 2] + raw[start + length // 2 + 4096 :])
    try:
        results = archive.check_members(zpath)
    except BertctlError as exc:
        assert str(zpath) in exc.message
    else:
        assert not all(r.ok for r in results)
    with pytest.raises(ArchiveError):
        archive.safe_extract(zpath, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path, "m.zip") == []


def test_flipped_byte_in_stored_member_names_the_member(tmp_path):
    zpath = make_zip(tmp_path / "m.zip")
    member = f"{FOLDER}/bert_model.ckpt.data-00000-of-00001"
    start, length = data_span(zpath, member)
    flip(zpath, start + length // 3)
    results = {r.name: r for r in archive.check_members(zpath)}
    assert not results[member].ok
    assert member in results[member].detail and "CRC-32" in results[member].detail
    assert results[member].read == results[member].size  # every byte came out
    assert all(r.ok for name, r in results.items() if name != member)
    error = assert_refused(tmp_path, zpath, member)
    assert "CRC-32" in error.message


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_flipped_byte_in_deflated_member_fails_cleanly(tmp_path, fraction):
    zpath = make_zip(tmp_path / "m.zip", compression=zipfile.ZIP_DEFLATED)
    member = f"{FOLDER}/bert_model.ckpt.data-00000-of-00001"
    start, length = data_span(zpath, member)
    flip(zpath, start + int(length * fraction))
    results = {r.name: r for r in archive.check_members(zpath)}
    assert not results[member].ok
    assert str(zpath) in results[member].detail
    assert all(r.ok for name, r in results.items() if name != member)
    assert_refused(tmp_path, zpath, member)


def test_check_members_reports_progress(tmp_path):
    zpath = make_zip(tmp_path / "m.zip", compression=zipfile.ZIP_DEFLATED)
    seen: list[tuple[int, int]] = []
    results = archive.check_members(zpath, on_progress=lambda d, t: seen.append((d, t)))
    assert [r.ok for r in results] == [True] * len(FILES)
    total = sum((TINY / n).stat().st_size for n in FILES)
    assert seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_zip_without_config(tmp_path):
    zpath = tmp_path / "x.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(TINY / "vocab.txt", "model/vocab.txt")
        zf.writestr("model/._bert_config.json", b"not it")
    with zipfile.ZipFile(zpath) as zf, pytest.raises(ArchiveError) as info:
        archive.find_model_folder(zf)
    assert info.value.message == f"{zpath}: no bert_config.json in the zip"
    assert info.value.hint
    assert_refused(tmp_path, zpath, "no bert_config.json")


def test_two_model_folders_at_the_same_depth_are_ambiguous(tmp_path):
    zpath = tmp_path / "x.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for folder in ("a", "b"):
            zf.write(TINY / "bert_config.json", f"{folder}/bert_config.json")
    with zipfile.ZipFile(zpath) as zf, pytest.raises(ArchiveError, match="2 folders"):
        archive.find_model_folder(zf)


# --------------------------------------------------------------------------------------------
# A zip of zips (all_bert_models.zip)
# --------------------------------------------------------------------------------------------


def make_bundle(tmp_path: Path, evil_inner: bool = False) -> Path:
    small = make_zip(tmp_path / "uncased_L-2_H-32_A-4.zip", nested=False)
    other_extra = (("../evil", b"evil"),) if evil_inner else ()
    other = make_zip(tmp_path / "uncased_L-4_H-32_A-4.zip", nested=False, extra=other_extra)
    bundle = tmp_path / "all_bert_models.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        zf.write(small, small.name)
        zf.write(other, other.name)
    small.unlink()
    other.unlink()
    return bundle


def test_list_nested_and_extract_one_inner_zip(tmp_path):
    bundle = make_bundle(tmp_path)
    assert archive.list_nested(bundle) == ["uncased_L-2_H-32_A-4.zip", "uncased_L-4_H-32_A-4.zip"]
    dest = archive.safe_extract(bundle, tmp_path / "models" / "tiny", inner="uncased_L-2_H-32_A-4")
    assert sorted(p.name for p in dest.iterdir()) == FILES
    assert (dest / "vocab.txt").read_bytes() == (TINY / "vocab.txt").read_bytes()
    assert leftovers(tmp_path / "models", "tiny") == []


def test_bundle_without_inner_name_says_it_is_a_zip_of_zips(tmp_path):
    bundle = make_bundle(tmp_path)
    with pytest.raises(ArchiveError) as info:
        archive.safe_extract(bundle, tmp_path / "out")
    assert "zip of 2 zips" in info.value.one_line()


def test_unknown_inner_name_lists_the_choices(tmp_path):
    bundle = make_bundle(tmp_path)
    with pytest.raises(ArchiveError) as info:
        archive.safe_extract(bundle, tmp_path / "out", inner="uncased_L-24_H-1024_A-16")
    assert "uncased_L-2_H-32_A-4.zip" in info.value.one_line()
    assert not (tmp_path / "out").exists()


def test_unsafe_inner_zip_is_refused_and_its_temp_copy_removed(tmp_path):
    bundle = make_bundle(tmp_path, evil_inner=True)
    dest = tmp_path / "models" / "other"
    with pytest.raises(ArchiveError) as info:
        archive.safe_extract(bundle, dest, inner="uncased_L-4_H-32_A-4.zip")
    assert "uncased_L-4_H-32_A-4.zip" in info.value.message and "'../evil'" in info.value.message
    assert not dest.exists()
    assert not (tmp_path / "models").exists()  # the folder it made for dest is gone again
    assert leftovers(tmp_path, "all_bert_models.zip") == []


def test_list_nested_of_a_plain_release_zip(tmp_path):
    zpath = make_zip(tmp_path / "m.zip")
    with pytest.raises(ArchiveError, match="no inner zips"):
        archive.list_nested(zpath)
