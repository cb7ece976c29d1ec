"""Hostile environments: where a command cannot write, names too long for the filesystem, and
closed or broken standard streams. Each is one `error:` line and a non-zero exit, before any
work; nothing is left half-written; never a traceback.

Every condition is real: a file where a folder must be, a path under /proc or /sys (which the
kernel makes up), a folder this user cannot write to, names past the filesystem's own limits,
descriptors really closed (`>&-` in a shell, `os.close` before exec) and /dev/full.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import in_process, one_error_line
from conftest import FIXTURES

from bertctl import outputs

RELEASE = FIXTURES / "tf" / "tiny_release"
MRPC = FIXTURES / "glue" / "MRPC"
VOCAB = RELEASE / "vocab.txt"


def writers(out: Path) -> dict[str, list[object]]:
    """Every command that writes a folder, with `out` as its output and inputs that exist; the
    output is checked before any of them is read."""
    return {
        "convert": ["convert", RELEASE, "--out", out],
        "download": ["download", "tiny", "--dir", out],
        "finetune": ["finetune", "mrpc", "--model", RELEASE, "--data", MRPC, "--out", out],
        "predict": ["predict", RELEASE, "--task", "mrpc", "--data", MRPC, "--out", out],
        "pretrain prepare": ["pretrain", "prepare", VOCAB, "--vocab", VOCAB, "--out", out],
        "pretrain run": ["pretrain", "run", RELEASE, "--model", RELEASE, "--out", out],
    }


def refused(args: list[object]) -> str:
    """Run a command that must be refused: exit 1 and its one error line."""
    result = in_process(*args)
    assert result.code == 1, (args, result.stderr)
    return one_error_line(result)


# --------------------------------------------------------------------------------------------
# Where it cannot write
# --------------------------------------------------------------------------------------------


def test_an_out_that_is_an_existing_file_is_refused_by_every_writer(tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("mine\n")
    for name, args in writers(afile).items():
        line = refused(args)
        assert f"{afile} exists and is a file" in line, (name, line)
        assert afile.read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no lock, no temp


def test_a_file_in_the_path_of_out_is_named_for_every_writer(tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("mine\n")
    for name, args in writers(afile / "sub" / "out").items():
        line = refused(args)
        assert f"{afile} is a file, not a folder (ENOTDIR)" in line, (name, line)
        assert "out of the way, or pass another location" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def proc_mounted() -> None:
    fstype, _ = outputs.filesystem_of("/proc")
    if fstype != "proc":
        pytest.skip("no proc filesystem at /proc on this system")


def test_an_out_under_proc_or_sys_is_refused_before_any_work():
    proc_mounted()
    for name, args in writers(Path(f"/proc/bertctl-{os.getpid()}/out")).items():
        line = refused(args)
        assert "it lies in /proc, a proc filesystem the kernel makes up" in line, (name, line)
        assert "pass a folder on a disk" in line
    if outputs.filesystem_of("/sys")[0] == "sysfs":
        line = refused(["convert", RELEASE, "--out", "/sys/bertctl-out"])
        assert "it lies in /sys, a sysfs filesystem" in line


def unwritable_folder(tmp_path: Path) -> tuple[Path, dict]:
    """A folder this user cannot write to, and how to run the child so: chmod 0o500 for a plain
    user; as root (whom mode bits do not stop) the child runs as `nobody`."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    if os.geteuid() != 0:
        return folder, {}
    try:
        nobody = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        pytest.skip("running as root and no user 'nobody' to run the child as")
    tmp_path.chmod(0o755)
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import bertctl"],
            preexec_fn=lambda: os.setuid(nobody),
            capture_output=True,
            check=False,
        ).returncode
    except OSError:  # the interpreter lies in a folder only root may enter (~root/.pyenv)
        probe = -1
    if probe != 0:
        pytest.skip(f"running as root, and user 'nobody' cannot run {sys.executable}")
    return folder, {"preexec_fn": lambda: os.setuid(nobody)}


def test_a_folder_without_write_permission_is_refused_naming_it(tmp_path):
    folder, how = unwritable_folder(tmp_path)
    env = {**os.environ, "BERTCTL_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "bertctl", "convert", RELEASE, "--out", folder / "model"],
        capture_output=True,
        env=env,
        check=False,
        **how,
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert f"{folder} is not writable by this user (EACCES)" in stderr
    assert list(folder.iterdir()) == []


def test_bertctl_home_at_a_file_or_where_it_cannot_be_made_is_blamed(tmp_path, monkeypatch):
    afile = tmp_path / "home.txt"
    afile.write_text("")
    proc_mounted()
    for home in (afile, afile / "below", Path("/proc/bertctl-home")):
        monkeypatch.setenv("BERTCTL_HOME", str(home))
        line = refused(["download", "tiny"])  # checked before the first request
        assert line.startswith(f"error: BERTCTL_HOME={home}: cannot write {home}/models"), line
        assert "point BERTCTL_HOME at a folder you can write to" in line
        # A command that converts into the home folder before training says the same.
        line = refused(
            ["finetune", "mrpc", "--model", RELEASE, "--data", MRPC, "--out", tmp_path / "run"]
        )
        assert f"BERTCTL_HOME={home}" in line, line
        assert not (tmp_path / "run").exists()


def test_predict_checks_its_default_folder_before_predicting(tmp_path, monkeypatch):
    """Without --out, predictions go to ./predictions (a run's own predictions/): known only
    once the model is read, and checked then, before the first example is predicted."""
    tf = FIXTURES / "tf"
    model = tmp_path / "mnli-model"  # a run_classifier.py checkpoint: a trained classifier
    converted = in_process(
        "convert", tf / "tiny_classifier" / "model.ckpt-343", "--out", model,
        "--config", RELEASE / "bert_config.json", "--vocab", VOCAB,
        "--labels", "contradiction,entailment,neutral",
    )  # fmt: skip
    assert converted.code == 0, converted.stderr
    monkeypatch.chdir(tmp_path)
    (tmp_path / "predictions").write_text("in the way\n")
    line = refused(["predict", model, "--task", "mnli", "--data", FIXTURES / "glue" / "MNLI"])
    assert "predictions exists and is a file" in line, line
    assert (tmp_path / "predictions").read_text() == "in the way\n"


def test_an_os_error_at_the_entry_point_is_one_line_naming_the_path_and_reason(tmp_path):
    """Real refusals, from real system calls, through the line the entry point prints."""
    from bertctl.cli import os_error_line

    afile = tmp_path / "afile"
    afile.write_text("")
    cases = {
        errno.ENOTDIR: lambda: os.mkdir(afile / "x"),
        errno.EEXIST: lambda: os.mkdir(afile),
        errno.ENOENT: lambda: os.open(tmp_path / "none" / "x", os.O_RDONLY),
        errno.ENAMETOOLONG: lambda: os.stat(tmp_path / ("n" * 300)),
        errno.EISDIR: lambda: open(tmp_path, "w"),  # noqa: SIM115
    }
    for number, call in cases.items():
        with pytest.raises(OSError) as caught:
            call()
        assert caught.value.errno == number
        line = os_error_line(caught.value)
        assert errno.errorcode[number] in line and "\n" not in line, line
        assert str(caught.value.filename)[:60] in line


# --------------------------------------------------------------------------------------------
# Names too long for the filesystem
# --------------------------------------------------------------------------------------------


def test_an_output_name_longer_than_the_filesystem_allows_is_refused_by_every_writer(tmp_path):
    long = tmp_path / ("n" * 300)
    for name, args in writers(long).items():
        line = refused(args)
        # pretrain prepare meets it in its own code first: the entry point's line.
        said = "is 300 bytes, longer than the 255 this filesystem allows", "ENAMETOOLONG"
        assert any(text in line for text in said), (name, line)
        assert "pass a shorter" in line
    assert list(tmp_path.iterdir()) == []


def test_a_name_that_fits_but_not_its_copy_beside_it_is_refused_before_the_work(tmp_path):
    """250 bytes fit in 255, but `.NAME.partial-PID`, built beside it, would not: without the
    check the conversion ran and failed at its rename."""
    line = refused(["convert", RELEASE, "--out", tmp_path / ("n" * 250)])
    assert "is 250 bytes, and the copy bertctl builds beside it adds 17" in line
    assert list(tmp_path.iterdir()) == []


def test_a_path_longer_than_path_max_is_refused(tmp_path):
    deep = tmp_path.joinpath(*["d" * 200] * 25)  # each name fits; the whole is past 4096
    line = refused(["convert", RELEASE, "--out", deep])
    assert "the path is" in line and "PATH_MAX" in line and "pass a shorter path" in line
    assert list(tmp_path.iterdir()) == []


def test_input_names_too_long_are_one_line_in_every_command(tmp_path):
    long = tmp_path / ("i" * 300)
    for args in (
        ["inspect", long],
        ["verify", long],
        ["tokenize", "--model", long, "hi"],
        ["tokenize", "--vocab", VOCAB, "--input", long],
        ["convert", long, "--out", tmp_path / "o"],
        ["finetune", "mrpc", "--model", long, "--data", MRPC, "--out", tmp_path / "o"],
        ["finetune", "mrpc", "--model", RELEASE, "--data", long, "--out", tmp_path / "o"],
        ["pretrain", "prepare", long, "--vocab", VOCAB, "--out", tmp_path / "o"],
        ["pretrain", "run", long, "--model", RELEASE, "--out", tmp_path / "o"],
        ["evaluate", long, "--task", "mrpc"],
        ["predict", RELEASE, "--task", "mrpc", "--data", long],
    ):
        line = refused(args)
        assert "too long" in line.lower() or "300 bytes" in line, (args, line)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Closed or broken standard streams
# --------------------------------------------------------------------------------------------

# Every command, with arguments that run it for real.
COMMANDS = {
    "tokenize": ["tokenize", "--vocab", VOCAB, "John Smith"],
    "inspect": ["inspect", RELEASE],
    "models": ["models"],
    "verify": ["verify", RELEASE],
    "gpus": ["gpus"],
    "plan": ["plan", RELEASE, "--gpu-memory", "1GiB", "--max-seq-length", "64"],
    "help": ["--help"],
    "convert": ["convert", RELEASE, "--out", "{tmp}/model"],
    "download": ["download", "tiny", "--dir", "{tmp}/dl"],
    "finetune": ["finetune", "mrpc", "--model", RELEASE, "--data", MRPC, "--out", "{tmp}/run"],
    "evaluate": ["evaluate", RELEASE, "--task", "mrpc", "--data", MRPC],
    "predict": ["predict", RELEASE, "--task", "mrpc", "--data", MRPC, "--out", "{tmp}/p"],
    "prepare": ["pretrain", "prepare", VOCAB, "--vocab", VOCAB, "--out", "{tmp}/data"],
    "pretrain run": ["pretrain", "run", "{tmp}/data", "--model", RELEASE, "--out", "{tmp}/pre"],
    "demo": ["demo", "--out", "{tmp}/demo"],
}


def shell(args: list[object], redirect: str, tmp: Path) -> subprocess.CompletedProcess:
    """`python -m bertctl ARGS REDIRECT` through a real shell, so `>&-` really closes the
    descriptor. The interpreter is run directly: a wrapper script (pyenv's shim) would hold a
    descriptor of its own open where the closed one was."""
    words = [str(a).replace("{tmp}", str(tmp)) for a in args]
    line = " ".join(f"'{w}'" for w in [sys.executable, "-m", "bertctl", *words])
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("BERTCTL_DEBUG", None)
    return subprocess.run(
        ["bash", "-c", f"{line} {redirect}"], capture_output=True, env=env, timeout=300
    )


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_closed_stdout_or_stderr_is_refused_before_any_work(command, tmp_path):
    args = COMMANDS[command]
    closed_out = shell(args, ">&-", tmp_path)
    assert closed_out.returncode == 1, closed_out.stderr
    err = closed_out.stderr.decode()
    assert "Traceback" not in err and "AttributeError" not in err
    assert err.startswith("error: stdout (>&-) is closed") and "nothing was done" in err
    closed_err = shell(args, "2>&-", tmp_path)
    assert closed_err.returncode == 1
    assert closed_err.stdout.decode().startswith("error: stderr (2>&-) is closed")
    both = shell(args, ">&- 2>&-", tmp_path)
    assert both.returncode == 1
    assert list(tmp_path.iterdir()) == []  # nothing was done


def test_descriptors_closed_before_exec_are_refused_too(tmp_path):
    """Not through a shell: the parent closes 1 and 2 in the child before it starts."""
    err_file = tmp_path / "err.txt"
    with err_file.open("wb") as err:
        proc = subprocess.run(
            [sys.executable, "-m", "bertctl", "models"],
            stderr=err,
            preexec_fn=lambda: os.close(1),
            timeout=120,
            check=False,
        )
    assert proc.returncode == 1
    assert err_file.read_text().startswith("error: stdout (>&-) is closed")


@pytest.mark.parametrize("command", ["tokenize", "inspect", "models", "verify", "help", "plan"])
def test_stdout_on_a_full_device_is_one_line_and_exit_1(command, tmp_path):
    result = shell(COMMANDS[command], ">/dev/full", tmp_path)
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert "Traceback" not in err and "Exception ignored" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert lines == [
        "error: cannot write to standard output: No space left on device (ENOSPC); what the "
        "command printed there is lost (files it wrote are whole); write the output to a disk "
        "with room, or to /dev/null"
    ]


@pytest.mark.parametrize("command", ["tokenize", "inspect", "models", "help"])
def test_stderr_on_a_full_device_keeps_the_results_and_exits_1(command, tmp_path):
    """Messages lost, results kept: the command runs, stdout holds what a plain run prints, and
    the exit code says something was lost."""
    plain = shell(COMMANDS[command], "", tmp_path)
    assert plain.returncode == 0
    result = shell(COMMANDS[command], "2>/dev/full", tmp_path)
    assert result.stdout == plain.stdout
    # Only a command that prints messages loses any (tokenize names the vocab it read).
    assert result.returncode == (1 if plain.stderr else 0)
    if command == "tokenize":
        assert plain.stderr and result.returncode == 1


def test_convert_with_stdout_on_a_full_device_writes_the_model_whole_and_exits_1(tmp_path):
    result = shell(COMMANDS["convert"], ">/dev/full", tmp_path)
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert "cannot write to standard output" in err and "Traceback" not in err
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert in_process("verify", tmp_path / "model").code == 0


def test_a_closed_stdin_for_tokenize_input_is_one_line(tmp_path):
    result = shell(["tokenize", "--vocab", VOCAB, "--input", "-"], "<&-", tmp_path)
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert "error: --input -: standard input is closed (<&-)" in err
    assert "Traceback" not in err


def test_a_closed_stdin_does_not_stop_commands_that_do_not_read_it(tmp_path):
    result = shell(COMMANDS["tokenize"], "<&-", tmp_path)
    assert result.returncode == 0, result.stderr
    assert b"john smith" in result.stdout.lower() or b"[CLS]" in result.stdout


# --------------------------------------------------------------------------------------------
# A damaged model.safetensors, in every command that loads weights


def _damage(folder: Path, how: str) -> None:
    """Rewrite the header of `folder`'s model.safetensors as a damaged file would have it."""
    import struct

    path = folder / "model.safetensors"
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    data = raw[8 + length :]
    names = sorted(
        (k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"]
    )
    last, first = header[names[-1]], header[names[0]]
    if how == "gap":
        last["data_offsets"] = [o + 4 for o in last["data_offsets"]]
        data += b"\0" * 4
    elif how == "overlap":
        last["data_offsets"] = [o - 4 for o in last["data_offsets"]]
    else:  # a shape whose byte size is astronomically more than its bytes
        first["shape"] = [2**40, 2**40]
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


@pytest.mark.parametrize("how", ["gap", "overlap", "shape"])
def test_a_damaged_safetensors_is_refused_before_any_load(tmp_path, how):
    """The header check `verify` makes runs in finetune, evaluate and pretrain run before the
    weights are loaded: one line naming the tensor, no traceback, nothing written."""
    model = tmp_path / "micro-bert"
    assert in_process("convert", RELEASE, "--out", model).code == 0
    _damage(model, how)
    words = {"gap": "a gap in the data", "overlap": "an overlap in the data", "shape": "needs"}[how]
    commands = [
        ("finetune", "mrpc", "--data", MRPC, "--model", model, "--out", tmp_path / "run", "--cpu"),
        ("evaluate", model, "--task", "mrpc", "--data", MRPC, "--cpu"),
    ]
    for command in commands:
        r = in_process(*command)
        assert r.code == 1, (command, r.stderr)
        line = one_error_line(r)
        assert f"{model / 'model.safetensors'}: tensor " in line and words in line, line
    assert not (tmp_path / "run").exists()
    r = in_process("verify", model)
    assert r.code == 1 and words in r.stdout + r.stderr
