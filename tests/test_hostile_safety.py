"""bertctl never runs code it was handed: not from a checkpoint, a model folder, an archive, a
file name or a URL.

Each test builds a real payload that *would* act (a pickle that creates a file when loaded, a
Python module that creates one when imported), shows that it does act when loaded the unsafe
way, then hands it to bertctl and checks that bertctl refuses it with one error line and that
the file never appears. A scan of the source for the unsafe calls closes the file, as an extra
guard beside these behaviours.
"""

from __future__ import annotations

import io
import json
import re
import runpy
import shutil
import zipfile
from pathlib import Path

import pytest
from clirun import bertctl, one_error_line
from clirun import in_process as cli

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY = FIXTURES / "tf" / "tiny_release"
MRPC = FIXTURES / "glue" / "MRPC"
FAST = ("--cpu", "--threads", "1", "--batch-size", "4")


class CreatesFile:
    """Pickled, this is a call of open(path, "w"): unpickling it creates `path`."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def pickle_that_creates(target: Path, marker: Path, wrapper: dict | None = None) -> None:
    """A torch.save file that holds the payload, inside `wrapper` so it looks like the real one."""
    torch.save({**(wrapper or {}), "payload": CreatesFile(marker)}, target)


def assert_payload_is_live(payload: Path, tmp_path: Path) -> None:
    """The file really runs code when unpickled without weights_only (so the tests can fail)."""
    probe = tmp_path / "probe.pt"
    shutil.copy(payload, probe)
    handle = torch.load(probe, weights_only=False)["payload"]  # the file the payload opened
    handle.close()
    marker = Path(handle.name)
    assert marker.exists(), "the payload did not act: the test would prove nothing"
    marker.unlink()


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny) -> Path:
    """A finished 3-step run with a checkpoint after every step (two kept)."""
    out = tmp_path_factory.mktemp("runs") / "mrpc"
    args = ["--max-steps", 3, "--save-every", 1, "--eval-every", 3, *FAST]
    result = cli("finetune", "mrpc", "--data", MRPC, "--model", tiny, "--out", out, *args)
    assert result.code == 0, result.stderr
    return out


# --------------------------------------------------------------------------------------------
# Checkpoints given to --resume


def _tamper(checkpoint: Path, name: str, marker: Path) -> None:
    path = checkpoint / name
    if name == "optimizer.pt":
        pickle_that_creates(path, marker, {"state": {}, "param_groups": []})
    elif name == "rng.pt":
        pickle_that_creates(path, marker, {"cpu": torch.get_rng_state()})
    elif name == "model.safetensors":
        path.write_bytes(path.read_bytes()[:100])  # cut short
    else:
        path.write_text("{not json")


@pytest.mark.parametrize("name", ["optimizer.pt", "rng.pt", "model.safetensors", "state.json"])
def test_resume_refuses_a_pickle_or_a_damaged_file_in_the_checkpoint_by_name(run, tmp_path, name):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "final").rename(copy / "final-before")  # so the resume has steps left to take
    marker = tmp_path / "PWNED"
    latest = sorted((copy / "checkpoints").glob("step-*"))[-1]
    _tamper(latest, name, marker)
    if name.endswith(".pt"):
        assert_payload_is_live(latest / name, tmp_path)

    result = cli("finetune", "--out", copy, "--resume")
    assert result.code == 1
    error = one_error_line(result)
    assert f"cannot resume from {latest / name}" in error
    if name.endswith(".pt"):
        assert "it holds Python objects, not only tensors, and loading it could run code" in error
    assert "\x1b" not in error  # no terminal codes from the libraries' messages
    assert f"delete {latest}" in error  # the fix: fall back to the checkpoint before it
    assert not marker.exists()


def test_after_deleting_a_poisoned_checkpoint_the_run_resumes_from_the_one_before(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "final")
    marker = tmp_path / "PWNED"
    latest = sorted((copy / "checkpoints").glob("step-*"))[-1]
    _tamper(latest, "optimizer.pt", marker)
    assert cli("finetune", "--out", copy, "--resume").code == 1
    shutil.rmtree(latest)  # what the error line says to do
    result = cli("finetune", "--out", copy, "--resume")
    assert result.code == 0, result.stderr
    assert "Resuming from step 2" in result.stderr and not marker.exists()
    from safetensors.torch import load_file

    a, b = (
        load_file(str(run / "final" / "model.safetensors")),
        load_file(str(copy / "final" / "model.safetensors")),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)  # nothing lost: the same weights


# --------------------------------------------------------------------------------------------
# Model folders given to --model / evaluate


def test_a_model_folder_holding_only_a_pickle_is_refused_unopened(tiny, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny, folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "PWNED"
    pickle_that_creates(folder / "pytorch_model.bin", marker)
    assert_payload_is_live(folder / "pytorch_model.bin", tmp_path)

    for args in (
        ["finetune", "mrpc", "--data", MRPC, "--model", folder, "--out", tmp_path / "r", *FAST],
        ["evaluate", folder, "--task", "mrpc", "--data", MRPC, "--cpu"],
    ):
        result = cli(*args)
        assert result.code == 1
        error = one_error_line(result)
        assert f"cannot load the model in {folder}: it has no model.safetensors" in error
        assert "only pytorch_model.bin, a pickle, which bertctl never opens" in error
        assert not marker.exists()


def _with_custom_code(tiny: Path, folder: Path, marker: Path, model_type: str | None) -> None:
    shutil.copytree(tiny, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "evil.EvilConfig",
        "AutoModelForSequenceClassification": "evil.EvilModel",
    }
    if model_type is None:
        config.pop("model_type")
    else:
        config["model_type"] = model_type
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil.py").write_text(
        f"open({str(marker)!r}, 'w')\n"
        "from transformers import BertConfig as EvilConfig\n"
        "from transformers import BertForSequenceClassification as EvilModel\n"
    )


def test_custom_code_in_a_model_folder_is_never_run(tiny, tmp_path):
    marker = tmp_path / "PWNED"
    # a BERT folder that also names custom code: trained as the BERT it is, the code ignored
    folder = tmp_path / "bert-with-code"
    _with_custom_code(tiny, folder, marker, "bert")
    args = ["--data", MRPC, "--model", folder, "--out", tmp_path / "r", "--max-steps", 1, *FAST]
    result = cli("finetune", "mrpc", *args)
    assert result.code == 0, result.stderr
    assert not marker.exists()
    # without model_type bert, transformers would need the custom code: refused, not run
    for model_type in (None, "evil"):
        folder = tmp_path / f"code-{model_type}"
        _with_custom_code(tiny, folder, marker, model_type)
        for command in (
            ["finetune", "mrpc", "--data", MRPC, "--model", folder, "--out", tmp_path / "s"],
            ["evaluate", folder, "--task", "mrpc", "--data", MRPC, "--cpu"],
        ):
            result = cli(*command, *(FAST if command[0] == "finetune" else ()))
            assert result.code == 1
            error = one_error_line(result)
            assert f"{folder / 'config.json'} says model_type" in error
            assert "never runs a model's own code" in error
    assert not marker.exists()
    # the module is live: running it, as trust_remote_code would, creates the file
    runpy.run_path(str(folder / "evil.py"))
    assert marker.exists()


# --------------------------------------------------------------------------------------------
# Archives, file names, URLs


def _zip_with(name: str, *, link: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(TINY.iterdir()):
            zf.write(f, f"m/{f.name}")
        info = zipfile.ZipInfo(name)
        if link:
            info.external_attr = 0o120777 << 16  # a symbolic link to what the content names
        zf.writestr(info, "/etc/passwd" if link else "owned")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("member", "link", "why"),
    [
        ("m/../../escaped.txt", False, "climbs out of the destination"),
        ("/abs/escaped.txt", False, "absolute path"),
        ("m/vocab-link.txt", True, "symbolic link"),
    ],
    ids=["dotdot", "absolute", "symlink"],
)
def test_convert_refuses_a_zip_whose_member_escapes_and_writes_nothing(tmp_path, member, link, why):
    box = tmp_path / "a" / "b"
    box.mkdir(parents=True)
    archive = box / "model.zip"
    archive.write_bytes(_zip_with(member, link=link))
    result = cli("convert", archive, "--out", box / "out")
    assert result.code == 1
    error = one_error_line(result)
    assert str(archive) in error and repr(member) in error and why in error
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "a",
        "a/b",
        "a/b/model.zip",
    ]


def test_file_names_are_never_handed_to_a_shell(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hostile = [
        "a;touch PWNED1;b.txt",
        "$(touch PWNED2).txt",
        "`touch PWNED3`.txt",
        "x|touch PWNED4",
    ]
    for name in hostile:
        Path(name).write_text("John Smith lives in Paris.\n\nHe reads.\nShe writes.\n")
        assert cli("tokenize", "--input", name, "--json").code == 0
        result = cli("pretrain", "prepare", name, "--out", name + ".out", "--dupe-factor", 1)
        assert result.code == 0, result.stderr
    assert not list(tmp_path.glob("PWNED*"))
    # torchrun is the one program bertctl starts: its argv is a list, each name one argument
    from bertctl.train.distributed import torchrun_argv

    argv = torchrun_argv(["pretrain", "run", hostile[0], "--out", hostile[1]], 2)
    assert hostile[0] in argv and hostile[1] in argv


def test_plain_http_mirror_is_refused_before_any_connection():
    result = bertctl("download", "tiny", "--mirror", "http://mirror.example.invalid/bert")
    assert result.code == 1
    error = one_error_line(result)
    assert "refusing plain http to mirror.example.invalid" in error and "--allow-http" in error


# --------------------------------------------------------------------------------------------
# The source itself: an extra guard beside the behaviours above


def _calls(source: str, name: str) -> list[str]:
    """The text of every call `name(...)` in `source`, brackets balanced."""
    calls = []
    for match in re.finditer(re.escape(name) + r"\(", source):
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(source)):
            depth += {"(": 1, ")": -1}.get(source[end], 0)
            if depth == 0:
                break
        calls.append(source[match.start() : end + 1])
    return calls


def test_the_source_holds_no_unsafe_loader_shell_or_remote_code():
    forbidden = {
        r"trust_remote_code\s*=\s*True": "remote code",
        r"shell\s*=\s*True": "a shell built from strings",
        r"\bos\.(system|popen)\(": "a shell built from strings",
        r"^\s*(import|from)\s+(c?pickle|dill|joblib)\b": "unpickling",
        r"\bpickle\.loads?\(": "unpickling",
        r"\byaml\.(load|unsafe_load|full_load)\(": "YAML that builds objects",
        r"allow_pickle\s*=\s*True": "unpickling",
        r"(?<![\w.])(?<!def )(eval|exec)\(": "running strings as code",
    }
    problems = []
    for path in sorted((REPO / "bertctl").rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        where = path.relative_to(REPO)
        for pattern, what in forbidden.items():
            for match in re.finditer(pattern, source, re.MULTILINE):
                problems.append(f"{where}: {match.group(0).strip()!r} ({what})")
        for call in _calls(source, "torch.load"):
            if "weights_only=True" not in call:
                problems.append(f"{where}: torch.load without weights_only=True: {call!r}")
        for call in _calls(source, ".from_pretrained"):
            line = source[: source.index(call)].rsplit("\n", 1)[-1]
            if "Config" not in line and "use_safetensors=True" not in call:
                problems.append(f"{where}: from_pretrained may unpickle: {line + call!r}")
    assert problems == []
