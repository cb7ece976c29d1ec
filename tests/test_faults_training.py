"""Training under faults: killed, interrupted, pre-empted and starved of disk at random steps,
and still ending with exactly the weights of a run that never stopped.

test_finetune.py and test_pretrain_run.py prove one kill each; here one run meets several faults
in a row, at steps drawn at random (seeded, so a failure replays). The processes are real
`python -m bertctl` runs stopped with real signals; the full disk is a real file-size limit
(RLIMIT_FSIZE) on the child, so writes past it fail with EFBIG exactly as on a full disk. The
model is the tiny random BERT of the TF fixtures (2 layers, hidden 32, 99 tokens).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clirun import Result, one_error_line
from clirun import in_process as cli

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")
pytestmark = pytest.mark.usefixtures("one_thread")  # one_thread, tiny: conftest.py

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MRPC = FIXTURES / "glue" / "MRPC"
FINETUNE_FAST = ("--cpu", "--threads", "1", "--batch-size", "4")
PRETRAIN_FAST = ("--cpu", "--threads", "1", "--batch-size", "4", "--eval-batches", "1")


def ok(result: Result) -> Result:
    assert result.code == 0, result.stderr
    return result


# --------------------------------------------------------------------------------------------
# Stopping a real process at a step


class Child:
    """A `python -m bertctl ...` process whose stderr goes to a file (it may be long), or to a
    pipe under a file-size limit (which would cut a file short too)."""

    def __init__(self, args: list[object], folder: Path, *, file_limit: int | None = None):
        self.stderr_path = folder / f"stderr-{time.monotonic_ns()}.txt"
        self.piped: bytes | None = None
        env = {**os.environ, "NO_COLOR": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
        env["PYTHONFAULTHANDLER"] = "1"  # a child that hangs is made to print its stacks
        env.pop("BERTCTL_DEBUG", None)

        def limit_file_size() -> None:
            # Writes past the limit fail with EFBIG, as on a full disk (Python already ignores
            # SIGXFSZ; say so anyway, since the signal would otherwise kill the child).
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

        argv = [sys.executable, "-m", "bertctl", *map(str, args)]
        if file_limit is not None:
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                preexec_fn=limit_file_size,
            )  # fmt: skip
            return
        with self.stderr_path.open("wb") as sink:
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=sink, env=env)

    @property
    def stderr(self) -> str:
        if self.proc.stderr is not None:
            return (self.piped or b"").decode(errors="replace")
        return self.stderr_path.read_text(errors="replace")

    def wait(self, timeout: float = 240) -> int:
        try:
            if self.proc.stderr is not None:
                self.piped = self.proc.communicate(timeout=timeout)[1]
                return self.proc.returncode
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            if self.proc.stderr is not None:
                self.piped = self.proc.communicate()[1]
            self.proc.wait()
            raise AssertionError(f"the run hung; its stacks:\n{self.stderr}") from None

    def stop_at(self, run: Path, step: int, sig: int) -> int:
        """Send `sig` once this process has logged `step`.

        The log may still hold lines of the process stopped before, up to some step K; only
        this process can log past K, so the target is raised to K + 1 when needed: the signal
        always lands in a running training loop, never in start-up.
        """
        step = max(step, logged_step(run) + 1)
        deadline = time.monotonic() + 240
        while self.proc.poll() is None and time.monotonic() < deadline:
            if logged_step(run) >= step:
                break
            time.sleep(0.01)
        assert self.proc.poll() is None, f"the run ended before step {step}: {self.stderr}"
        self.proc.send_signal(sig)
        return self.wait()


def logged_step(run: Path) -> int:
    """The last optimizer step in train_log.jsonl (a line cut short by a kill is skipped)."""
    last = 0
    with contextlib.suppress(FileNotFoundError), (run / "train_log.jsonl").open() as fh:
        for line in fh:
            with contextlib.suppress(json.JSONDecodeError):
                last = max(last, json.loads(line).get("step", 0))
    return last


def checkpoint_hashes(run: Path) -> dict[str, str]:
    root = run / "checkpoints"
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def same_weights(a: Path, b: Path) -> None:
    wa = safetensors_torch.load_file(str(a / "model.safetensors"))
    wb = safetensors_torch.load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"tensors differ after the faults: {different}"


def steps_logged(run: Path) -> list[int]:
    lines = (run / "train_log.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if "step" in r]


def losses_logged(run: Path) -> list[float]:
    lines = (run / "train_log.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if "step" in r]


# --------------------------------------------------------------------------------------------
# Fine-tuning: kill -9, Ctrl-C, kill -9, a full disk, then the end


STEPS = 16


def finetune_args(tiny: Path) -> list[object]:
    args = ["finetune", "mrpc", "--data", MRPC, "--model", tiny, "--max-steps", STEPS]
    return [*args, "--save-every", 2, "--eval-every", 5, *FINETUNE_FAST]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tiny, home) -> Path:
    """The run that never stopped."""
    out = tmp_path_factory.mktemp("runs") / "straight"
    ok(cli(*finetune_args(tiny), "--out", out))
    return out


def test_finetune_killed_interrupted_and_out_of_disk_at_random_steps_ends_like_a_straight_run(
    tiny, straight, tmp_path, home
):
    args = finetune_args(tiny)
    rng = random.Random(1789)
    first, second = sorted(rng.sample(range(2, STEPS - 3), 2))
    run = tmp_path / "faulty"
    resume = ["finetune", "--out", run, "--resume"]

    # kill -9 in the middle of a fresh run
    child = Child([*args, "--out", run], tmp_path)
    assert child.stop_at(run, first, signal.SIGKILL) == -signal.SIGKILL

    # Ctrl-C: a checkpoint of the step it stopped at, and one error line saying how to resume
    child = Child(resume, tmp_path)
    assert child.stop_at(run, second, signal.SIGINT) == 1
    error = one_error_line(Result(1, "", child.stderr))
    assert "interrupted at step" in error and "--resume" in error
    stopped = int(error.split("interrupted at step ")[1].split(";")[0])
    assert stopped >= second and (run / "checkpoints" / f"step-{stopped:07d}").is_dir()

    # The disk fills: every file may grow to half a checkpoint's weights, no more, so the next
    # checkpoint cannot be written while the logs and settings still can.
    before = checkpoint_hashes(run)
    latest = sorted((run / "checkpoints").glob("step-*"))[-1]
    limit = (latest / "model.safetensors").stat().st_size // 2
    assert (run / "train_log.jsonl").stat().st_size < limit // 4
    child = Child(resume, tmp_path, file_limit=limit)
    assert child.wait() == 1, child.stderr
    error = one_error_line(Result(1, "", child.stderr))
    assert "cannot write checkpoint" in error and "File too large" in error
    assert f"{latest.name} is intact" in error and "--resume" in error
    assert checkpoint_hashes(run) == before  # the earlier checkpoints, byte for byte
    assert not list((run / "checkpoints").glob(".*"))  # no half-written checkpoint left

    ok(cli(*resume))
    same_weights(straight / "final", run / "final")
    assert json.loads((run / "metrics.json").read_text()) == json.loads(
        (straight / "metrics.json").read_text()
    )
    assert steps_logged(run) == list(range(1, STEPS + 1))  # each step once, none lost


# --------------------------------------------------------------------------------------------
# Pretraining: kill -9, then SIGTERM (a scheduler's pre-emption), then the end


@pytest.fixture(scope="module")
def corpus_data(tmp_path_factory, tiny) -> Path:
    """A small corpus from the tiny vocab's words, prepared as Google's recipe does."""
    words = [w for w in (tiny / "vocab.txt").read_text().split() if w.isalpha()]
    rng = random.Random(5)
    docs = []
    for _ in range(12):
        sentences = [" ".join(rng.choices(words, k=rng.randint(4, 12))) + " ." for _ in range(6)]
        docs.append("\n".join(sentences))
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "corpus.txt").write_text("\n\n".join(docs) + "\n")
    out = folder / "data"
    prepare = ["pretrain", "prepare", folder / "corpus.txt", "--out", out, "--model", tiny]
    ok(cli(*prepare, "--dupe-factor", 2, "--max-seq-length", 32, "--max-predictions", 5))
    return out


PRETRAIN_STEPS = 14


def test_pretrain_killed_and_preempted_at_random_steps_ends_like_a_straight_run(
    corpus_data, tiny, tmp_path, home
):
    args = ["pretrain", "run", corpus_data, "--model", tiny, "--steps", PRETRAIN_STEPS]
    args += ["--save-every", 3, "--dynamic-masking", "--lr", "1e-3", *PRETRAIN_FAST]
    straight = tmp_path / "straight"
    ok(cli(*args, "--out", straight))

    rng = random.Random(1066)
    first, second = sorted(rng.sample(range(2, PRETRAIN_STEPS - 2), 2))
    run = tmp_path / "faulty"
    resume = ["pretrain", "run", "--out", run, "--resume"]

    child = Child([*args, "--out", run], tmp_path)
    assert child.stop_at(run, first, signal.SIGKILL) == -signal.SIGKILL

    # SIGTERM is how schedulers and torchrun stop a job: it checkpoints as Ctrl-C does
    child = Child(resume, tmp_path)
    assert child.stop_at(run, second, signal.SIGTERM) == 1
    error = one_error_line(Result(1, "", child.stderr))
    stopped = int(error.split("interrupted at step ")[1].split(";")[0])
    assert stopped >= second and (run / "checkpoints" / f"step-{stopped:07d}").is_dir()

    ok(cli(*resume))
    same_weights(straight / "final", run / "final")
    assert steps_logged(run) == list(range(1, PRETRAIN_STEPS + 1))


def test_ctrl_c_during_a_log_write_takes_effect_when_the_write_ends():
    """The training log hands TensorBoard events to a writer thread through a queue; a
    KeyboardInterrupt raised inside that hand-off could leave the thread waiting forever and the
    run hung at close (seen once in the pre-emption test above). Signals are held for the write."""
    from bertctl.train.runs import signals_held

    reached = []
    with pytest.raises(KeyboardInterrupt), signals_held():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # long enough for Python to run a handler, had it not been held
        reached.append("the end of the write")
    assert reached == ["the end of the write"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


@pytest.mark.parametrize("workflow", ["finetune", "pretrain"])
def test_a_signal_inside_the_optimizer_update_stops_after_it_with_a_checkpoint(
    workflow, tiny, corpus_data, tmp_path, monkeypatch, home
):
    """SIGTERM landing while the optimizer changes the weights (the moment the random-step test
    above hit twice) waits for the update and its log line: the run names that step, its
    checkpoint holds it and the log has it, so --resume goes on from there with no step lost."""
    signalled_at = 3
    calls = []
    real_step = torch.amp.GradScaler.step

    def step_then_signal(self, optimizer, *args, **kwargs):
        calls.append(1)
        if len(calls) == signalled_at:
            os.kill(os.getpid(), signal.SIGTERM if workflow == "pretrain" else signal.SIGINT)
            time.sleep(0.05)  # time enough for Python to run a handler inside the update
        return real_step(self, optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.amp.GradScaler, "step", step_then_signal)
    run = tmp_path / "run"
    if workflow == "finetune":
        args = [*finetune_args(tiny), "--save-every", 100, "--out", run]
    else:
        args = ["pretrain", "run", corpus_data, "--model", tiny, "--steps", PRETRAIN_STEPS]
        args += ["--save-every", 100, *PRETRAIN_FAST, "--out", run]
    result = cli(*args)
    assert result.code == 1, result.stderr
    error = one_error_line(result)
    assert f"interrupted at step {signalled_at};" in error, error
    saved = run / "checkpoints" / f"step-{signalled_at:07d}"
    assert json.loads((saved / "state.json").read_text())["step"] == signalled_at
    # ... and the step it names is in the log: a resumed run would otherwise never log it
    assert steps_logged(run) == list(range(1, signalled_at + 1))


@pytest.mark.parametrize("workflow", ["finetune", "pretrain"])
@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_and_sigterm_stop_every_workflow_alike(
    workflow, number, tiny, corpus_data, tmp_path, monkeypatch, home
):
    """One loop for every task: a scheduler's SIGTERM checkpoints fine-tuning as it does
    pretraining (fine-tuning once died of it with no checkpoint), and Ctrl-C alike."""
    calls = []
    real_step = torch.amp.GradScaler.step

    def step_then_signal(self, optimizer, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), number)
            time.sleep(0.05)
        return real_step(self, optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.amp.GradScaler, "step", step_then_signal)
    run = tmp_path / "run"
    if workflow == "finetune":
        args = [*finetune_args(tiny), "--save-every", 100, "--out", run]
    else:
        args = ["pretrain", "run", corpus_data, "--model", tiny, "--steps", PRETRAIN_STEPS]
        args += ["--save-every", 100, *PRETRAIN_FAST, "--out", run]
    result = cli(*args)
    assert result.code == 1, result.stderr
    command = "finetune" if workflow == "finetune" else "pretrain run"
    assert one_error_line(result) == (
        f"error: interrupted at step 2; the checkpoint step-0000002 is in {run}; "
        f"resume with: bertctl {command} --out {run} --resume"
    )
    assert (run / "checkpoints" / "step-0000002" / "state.json").is_file()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the loop put it back


def evals_logged(run: Path) -> list[int]:
    lines = (run / "train_log.jsonl").read_text().splitlines()
    return [r["eval"]["step"] for r in map(json.loads, lines) if "eval" in r]


@pytest.mark.parametrize("workflow", ["finetune", "pretrain"])
def test_a_signal_during_an_evaluation_is_made_good_by_the_resumed_run(
    workflow, tiny, straight, corpus_data, tmp_path, monkeypatch, home
):
    """Ctrl-C (or SIGTERM) while the dev set is being scored: the step's checkpoint is saved
    but its evaluation never finished. The resumed run makes that evaluation first, so
    metrics.json and the log end exactly as a straight run's."""
    import bertctl.train.finetune as finetune_module
    import bertctl.train.pretrain as pretrain_module

    module, name = (
        (finetune_module, "run_eval") if workflow == "finetune" else (pretrain_module, "evaluate")
    )
    real_eval = getattr(module, name)
    calls = []

    def signal_in_eval(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT if workflow == "finetune" else signal.SIGTERM)
            time.sleep(0.05)  # the handler runs here, inside the evaluation
        return real_eval(*args, **kwargs)

    if workflow == "finetune":
        args, reference = finetune_args(tiny), straight
    else:
        args = ["pretrain", "run", corpus_data, "--model", tiny, "--steps", 8, "--eval-every", 4]
        args += ["--save-every", 100, *PRETRAIN_FAST]
        reference = tmp_path / "straight"
        ok(cli(*args, "--out", reference))
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(module, name, signal_in_eval)
        result = cli(*args, "--out", run)
    first_eval = evals_logged(reference)[0]
    assert result.code == 1 and f"interrupted at step {first_eval};" in one_error_line(result)
    assert first_eval not in evals_logged(run)  # the evaluation was cut short

    resume = ["pretrain", "run"] if workflow == "pretrain" else ["finetune"]
    ok(cli(*resume, "--out", run, "--resume"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics == json.loads((reference / "metrics.json").read_text())
    assert evals_logged(run) == evals_logged(reference)
    assert steps_logged(run) == steps_logged(reference)
    same_weights(reference / "final", run / "final")


# --------------------------------------------------------------------------------------------
# Out of GPU memory in the middle of a run


@pytest.fixture
def pretend_gpu(monkeypatch):
    """What the out-of-memory message reads of the card, from a pretend 16 GiB one."""
    from types import SimpleNamespace

    gib = 2**30
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 15 * gib)
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda device=None: SimpleNamespace(total_memory=16 * gib),
    )


@pytest.mark.parametrize("where", ["forward", "update"])
@pytest.mark.parametrize("workflow", ["finetune", "pretrain"])
def test_out_of_memory_mid_run_keeps_the_last_whole_step_and_the_named_flags_finish_it(
    workflow, where, tiny, straight, corpus_data, tmp_path, monkeypatch, pretend_gpu, home
):
    """torch.cuda.OutOfMemoryError in a step's forward pass (the usual place) or inside the
    optimizer's update. There is no GPU here, so the error is raised where CUDA would raise it
    (the card's figures: `pretend_gpu`); everything else is the real run. One error line names
    the step, the checkpoint kept and the flags to resume with; an update cut short leaves no
    checkpoint of its half-changed weights; resuming with the named flags goes on from the kept
    step and finishes with every step logged once."""
    import shlex

    import transformers

    from bertctl.train.pretrain import MaskedLMAndNSP

    calls = []

    def out_of_memory_at(nth: int, real):
        def patched(self, *args, **kwargs):
            if where == "update" or self.training:
                calls.append(1)
                if len(calls) == nth:
                    if where == "update":  # the weights change, then CUDA fails
                        real(self, *args, **kwargs)
                    raise torch.cuda.OutOfMemoryError(
                        "CUDA out of memory. Tried to allocate 20 MiB"
                    )
            return real(self, *args, **kwargs)

        return patched

    if workflow == "finetune":
        args, reference = finetune_args(tiny), straight
        forward = transformers.BertForSequenceClassification
    else:
        args = ["pretrain", "run", corpus_data, "--model", tiny, "--steps", 8]
        args += ["--save-every", 2, *PRETRAIN_FAST]
        reference = tmp_path / "straight"
        ok(cli(*args, "--out", reference))
        forward = MaskedLMAndNSP
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        if where == "forward":  # the 4th step's forward pass: steps 1-3 are whole
            patch.setattr(forward, "forward", out_of_memory_at(4, forward.forward))
            stopped, kept = 3, 3  # the handler saves the finished step 3
        else:  # the 4th update: the weights are past step 3 and short of step 4, so nothing
            # is saved and the kept checkpoint is step 2's (--save-every 2)
            step = torch.amp.GradScaler.step
            patch.setattr(torch.amp.GradScaler, "step", out_of_memory_at(4, step))
            stopped, kept = 3, 2
        result = cli(*args, "--out", run)
    assert result.code == 1, result.stderr
    error = one_error_line(result)
    expected = f"error: out of GPU memory at step {stopped} on cpu (16.00 GiB): 15.00 GiB was"
    assert error.startswith(expected), error
    assert f"checkpoint step-{kept:07d} is in {run}" in error, error
    latest = sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert latest[-1] == f"step-{kept:07d}"
    state = json.loads((run / "checkpoints" / latest[-1] / "state.json").read_text())
    assert state["step"] == kept
    hint = error.split("resume with: bertctl ", 1)[1]
    command = "finetune" if workflow == "finetune" else "pretrain run"
    batch = " --batch-size 4" if workflow == "finetune" else ""
    assert hint == f"{command} --out {run} --resume{batch} --grad-accum 2", hint

    ok(cli(*shlex.split(hint)))
    assert steps_logged(run) == steps_logged(reference)  # every step once
    # Up to the kept step the run was the straight one; after it, two micro-batches of 2 draw
    # other dropout masks than one of 4, so the losses part.
    assert losses_logged(run)[:kept] == losses_logged(reference)[:kept]
    assert (run / "final" / "model.safetensors").is_file()
