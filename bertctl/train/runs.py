"""A run folder: settings, logs, metrics, checkpoints that resume exactly, the final model, a plot.

<run>/run.json            what ran, its status and final metrics
<run>/config.yaml         the resolved settings (reproduce with --config)
<run>/train_log.jsonl     one line per step, and one per evaluation
<run>/tb/                 TensorBoard events
<run>/metrics.json        every evaluation: step, epoch, examples, metrics
<run>/checkpoints/step-N/ model, optimizer and RNG state; --resume continues from the last
<run>/final/              an HF-format model that transformers loads offline
<run>/curves.png          loss and dev metric against steps
<run>/eval_results.txt    Google's `key = value` file
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

from bertctl import outputs, paths
from bertctl.errors import BertctlError

RUN_JSON = "run.json"
CHECKPOINTS = "checkpoints"


def default_out(task: str, label: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = Path(label.split(" ")[0]).name or "model"
    return Path("runs") / f"{task}-{name}-{stamp}"


def prepare_folder(cfg, task, prepared, resume: bool, inputs: tuple = ()) -> Path:
    """Create (or reopen, with --resume) the run folder; refuse to clobber a run or the user's
    files (see `check_out`)."""
    out = Path(cfg.out) if cfg.out else default_out(task.name, prepared.label)
    check_out(out, resume, (*inputs, prepared.folder))
    out.mkdir(parents=True, exist_ok=True)
    return out


def holds_run(out: Path) -> bool:
    """Whether `out` is a run folder bertctl started: run.json, or config.yaml that is written
    first (a run killed between the two is still one)."""
    return (out / RUN_JSON).is_file() or (out / "config.yaml").is_file()


def check_out(out: Path, resume: bool, inputs=()) -> None:
    """Refuse a run folder that would mix a run into something else, before any work starts.

    A new run needs an absent or empty folder; --resume needs a run bertctl started. Neither may
    be an input of the run or hold one (the model, the data, a settings file): the run's files
    would land among the user's, and --resume advice would write a run into a model folder.

    Raises:
        BertctlError: what is in the way, and which --out or flag to pass instead.
    """
    from bertctl import outputs

    outputs.check_writable(out, "--out")
    outputs.check_inputs(out, [None if p is None else paths.expand(p) for p in inputs])
    if out.exists() and not out.is_dir():
        raise BertctlError(f"--out {out} exists and is a file", "pass a folder for --out")
    if resume:
        if not holds_run(out):
            raise BertctlError(
                f"--resume: {out} holds no run (no {RUN_JSON})",
                "pass the --out folder of the run to continue",
            )
        return
    if not out.is_dir() or not any(out.iterdir()):
        return
    if holds_run(out):
        raise BertctlError(
            f"{out} already holds a run", "pass --resume to continue it, or a new --out folder"
        )
    others = sorted(entry.name for entry in out.iterdir())
    shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
    raise BertctlError(
        f"--out {out} holds files bertctl did not write ({shown})",
        "pass a new or empty folder for --out",
    )


@contextlib.contextmanager
def locked(out: str | Path | None, main: bool = True) -> Iterator[None]:
    """Hold the run folder's lock while the run writes it: a second `--resume` of the same run
    is refused at once, naming the first. Only the main process locks (`main`); no `out` (a
    new, timestamped folder) needs none."""
    if out is None or not main:
        yield
        return
    from bertctl import outputs

    # Checked before the lock file is made beside it: a bad location is named with its flag.
    outputs.check_writable(paths.expand(out), "--out")
    with outputs.exclusive_lock(paths.expand(out), f"the run {out} is being written"):
        yield


def save_settings(out: Path, cfg, task, prepared, data_dir: Path) -> None:
    settings = cfg.to_dict()
    model = cfg.model or prepared.label
    if paths.expand(model).exists():  # a local folder, written so --config works anywhere
        model = str(paths.expand(model).resolve())
    settings.update(model=model, data=str(Path(data_dir).resolve()), task=task.name)
    text = "# bertctl finetune settings; rerun with: bertctl finetune --config config.yaml\n"
    text += yaml.safe_dump(settings, sort_keys=False)
    outputs.write_atomic(out / "config.yaml", text)
    outputs.write_json_atomic(
        out / RUN_JSON,
        {
            "status": "running",
            "task": task.name,
            "model": prepared.label,
            "model_folder": str(prepared.folder),
            "release": prepared.release.name if prepared.release else None,
            "labels": list(task.labels) if task.labels else None,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )


class TrainLog:
    """JSONL log and TensorBoard events, side by side.

    `resume_step`: the step a resumed run continues from. What the interrupted run logged after
    it (and a line cut short by a kill) is dropped, from the JSONL log and from TensorBoard, so
    each step appears once.
    """

    def __init__(self, out: Path, resume_step: int | None = None) -> None:
        path = out / "train_log.jsonl"
        if resume_step is not None and path.is_file():
            outputs.write_atomic(path, "".join(_log_lines_until(path, resume_step)))
        self.handle = path.open("a" if resume_step is not None else "w", encoding="utf-8")
        self.tb = None
        try:
            from tensorboardX import SummaryWriter

            purge = resume_step + 1 if resume_step is not None else None
            with signals_held():
                self.tb = SummaryWriter(str(out / "tb"), purge_step=purge)
        except ImportError:  # TensorBoard events are optional; the JSONL log is not
            pass

    def write(self, **record: Any) -> None:
        with signals_held():
            self.handle.write(json.dumps(record) + "\n")
            self.handle.flush()  # a killed run keeps every step it finished
            if self.tb is not None:
                step = record["step"]
                self.tb.add_scalar("train/loss", record["loss"], step)
                self.tb.add_scalar("train/lr", record["lr"], step)
                self.tb.add_scalar("train/examples_per_second", record["examples_per_second"], step)

    def eval(self, record: dict[str, Any]) -> None:
        with signals_held():
            self.handle.write(json.dumps({"eval": record}) + "\n")
            self.handle.flush()
            if self.tb is not None:
                for key, value in record["metrics"].items():
                    self.tb.add_scalar(f"eval/{key}", value, record["step"])
                if record.get("loss") is not None:
                    self.tb.add_scalar("eval/loss", record["loss"], record["step"])

    def close(self) -> None:
        self.handle.close()
        if self.tb is not None:
            with signals_held():
                self.tb.close()
            self.tb = None


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block is done, then act on them as before.

    Python raises KeyboardInterrupt wherever the main thread happens to be. Raised inside
    tensorboardX's hand-off to its writer thread (a multiprocessing queue), it can leave that
    thread waiting forever, and the run then hangs when the log is closed instead of saving its
    checkpoint. Raised inside an optimizer update, it leaves weights half-changed, so no checkpoint
    of that step could be trusted. Both are short, so a signal that arrives during one simply
    takes effect the moment it ends.
    """
    held: list[int] = []
    previous: dict[int, Any] = {}
    try:
        for number in _STOP_SIGNALS:
            previous[number] = signal.signal(number, lambda signum, frame: held.append(signum))
    except ValueError:  # not the main thread: signals are not this thread's to hold
        pass
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
        if held:
            signal.raise_signal(held[0])  # delivered now, to the handler just restored


def _log_lines_until(path: Path, step: int) -> list[str]:
    """The readable lines of a JSONL log whose step (or evaluation's step) is at most `step`."""
    kept = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # the last line of a killed run, cut short
            if not isinstance(record, dict):
                continue
            at = record.get("step", (record.get("eval") or {}).get("step"))
            if isinstance(at, int) and at <= step:
                kept.append(line.rstrip("\n") + "\n")
    return kept


def save_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    outputs.write_json_atomic(out / "metrics.json", history)


def evaluation_due(step: int, every: int, total: int) -> bool:
    """Whether a run evaluates once `step` is done: every `every` steps and at the end."""
    return step > 0 and (step % every == 0 or step == total)


def evaluation_missing(step: int, every: int, total: int, history: list[dict[str, Any]]) -> bool:
    """Whether a run resumed at `step` lacks the evaluation a straight run made there (Ctrl-C
    landed during it: the checkpoint was saved, the evaluation never finished)."""
    return evaluation_due(step, every, total) and all(r["step"] != step for r in history)


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """torch's CPU (and CUDA) generator states: dropout masks after a resume match a straight run."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


# --------------------------------------------------------------------------------------------
# A run that diverged: nothing non-finite is ever saved or published


def nonfinite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors holding a NaN or an infinity.

    One flag per tensor, read back together: a single device sync however many tensors."""
    floats = {name: t for name, t in tensors.items() if t.is_floating_point()}
    if not floats:
        return []
    flags = torch.stack([torch.isfinite(t).all() for t in floats.values()])
    if bool(flags.all()):
        return []
    return [name for name, good in zip(floats, flags.tolist(), strict=True) if not good]


def diverged(what: str, step: int, out: Path) -> BertctlError:
    """The error that stops a run whose loss or weights are no longer finite at `step`."""
    latest = latest_checkpoint(out)
    kept = (
        f"the last good checkpoint, {latest.name}, is kept in {out}"
        if latest
        else "no checkpoint was saved"
    )
    return BertctlError(
        f"training diverged at step {step}: {what}; {kept}, and no final model was published",
        "lower --lr or check the training data for broken rows, then train again with a new --out",
    )


def check_loss(loss: float, step: int, out: Path) -> None:
    """Stop before the update of `step` when its loss (already read for the log) is not finite:
    the weights are still those of the step before."""
    if not math.isfinite(loss):
        raise diverged(f"the training loss is {loss}", step, out)


def check_weights(model, step: int, out: Path) -> None:
    """Stop when a weight is NaN or infinite after `step` (before it is evaluated or saved)."""
    bad = nonfinite_tensors(model.state_dict())
    if bad:
        more = f" and {len(bad) - 1} more tensors hold" if len(bad) > 1 else " holds"
        raise diverged(f"{bad[0]}{more} NaN or infinite values", step, out)


def save_checkpoint(
    out: Path,
    model,
    optimizer,
    step: int,
    history: list,
    keep: int,
    *,
    rng: dict[str, Any] | None = None,
    loss: float | None = None,
) -> Path:
    """Everything --resume needs, written to a temporary folder and renamed into place.

    `rng`: the generator states to store (default: the current ones); `loss`: the training loss
    of the last step, for eval_results.txt when a resumed run has no step left to train.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    root = out / CHECKPOINTS
    final = root / f"step-{step:07d}"
    if final.exists():
        return final
    check_weights(model, step, out)  # every way in (the loop, Ctrl-C, out of memory) passes here
    tmp = root / f".step-{step:07d}.partial"
    try:
        root.mkdir(exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        weights = {k: v.detach().contiguous().cpu() for k, v in unique_tensors(model).items()}
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(rng if rng is not None else rng_state(), tmp / "rng.pt")
        state: dict[str, Any] = {"step": step, "history": history}
        if loss is not None and loss == loss:  # NaN is not JSON
            state["loss"] = loss
        outputs.write_json_atomic(tmp / "state.json", state)
        os.replace(tmp, final)
    except (OSError, RuntimeError, SafetensorError) as exc:
        # A full disk (or a file-size limit) shows up as any of these, depending on which
        # writer hit it. The checkpoint is published by the rename only, so the previous one
        # is untouched; the half-written folder goes.
        shutil.rmtree(tmp, ignore_errors=True)
        latest = latest_checkpoint(out)
        kept = f"{latest.name} is intact" if latest else "no earlier checkpoint exists"
        raise BertctlError(
            f"cannot write checkpoint {final} ({_reason(exc)}); the last checkpoint, {kept}",
            "free some disk space, then continue the run with --resume",
        ) from exc
    for old in sorted(root.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _reason(exc: BaseException) -> str:
    """The first line of what went wrong, short enough for one error line (and without the
    terminal colour codes some libraries put in their messages)."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    text = (text.strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= 160 else text[:157] + "..."


def unique_tensors(model) -> dict[str, torch.Tensor]:
    """The model's state dict with each tensor once: a weight tied to another (BERT's MLM
    decoder to its word embeddings) is kept under its first name only, as safetensors refuses
    tensors that share memory; loading it back into the model restores both names."""
    seen: set[tuple] = set()
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        key = (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        key += (tuple(tensor.shape), tuple(tensor.stride()))
        if key not in seen:
            seen.add(key)
            out[name] = tensor
    return out


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted((out / CHECKPOINTS).glob("step-*")) if (out / CHECKPOINTS).is_dir() else []
    return found[-1] if found else None


def load_latest(out: Path, model, optimizer, device: torch.device) -> dict[str, Any] | None:
    """Restore model, optimizer and RNG from the newest checkpoint; None when there is none.

    Only tensors are read back (`weights_only=True`): a checkpoint can never run code. A file
    that is damaged, or is a pickle that wants to build objects, is refused with an error that
    names it; nothing of it is applied.
    """
    from safetensors.torch import load_file

    ckpt = latest_checkpoint(out)
    if ckpt is None:
        return None

    def refuse(name: str, why: str) -> BertctlError:
        return BertctlError(
            f"cannot resume from {ckpt / name}: {why}",
            f"delete {ckpt} to resume from the checkpoint before it, or start a new --out",
        )

    try:
        weights = load_file(str(ckpt / "model.safetensors"), device=str(device))
    except Exception as exc:  # a damaged file can fail in the Rust reader in many ways
        raise refuse("model.safetensors", _reason(exc)) from exc
    if set(weights) != set(unique_tensors(model)):
        raise BertctlError(
            f"{ckpt} does not hold this model's weights",
            "resume with the settings the run was started with",
        )

    def tensors(name: str, **kwargs: Any) -> Any:
        try:
            return torch.load(ckpt / name, weights_only=True, **kwargs)
        except Exception as exc:
            if type(exc).__name__ == "UnpicklingError":  # torch's weights-only refusal
                why = "it holds Python objects, not only tensors, and loading it could run code"
            else:
                why = f"it is damaged ({_reason(exc)})"
            raise refuse(name, why) from exc

    optim = tensors("optimizer.pt", map_location=device)
    rng = tensors("rng.pt")
    if not isinstance(rng, dict) or "cpu" not in rng:
        raise refuse("rng.pt", "it holds no generator state")
    cpu_rng = rng["cpu"]
    try:
        state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
        if not isinstance(state, dict) or not isinstance(state.get("step"), int):
            raise ValueError("no step number")
    except (OSError, ValueError) as exc:
        raise refuse("state.json", _reason(exc)) from exc
    model.load_state_dict(weights, strict=False)  # tied weights are stored once (unique_tensors)
    try:
        optimizer.load_state_dict(optim)
        torch.set_rng_state(cpu_rng)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise refuse("optimizer.pt", f"it does not fit this run ({_reason(exc)})") from exc
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return state


# --------------------------------------------------------------------------------------------
# The end of a run
# --------------------------------------------------------------------------------------------


def save_final(final: Path, model, prepared, task, *, step: int) -> None:
    """An HF-format folder: model, config with GLUE's label names, and the model's tokenizer.

    `step`: the run's last step, named if its weights are not finite (nothing is published)."""
    from bertctl.convert import tokenizer_files

    check_weights(model, step, final.parent)
    tmp = final.with_name(".final.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    shutil.copyfile(prepared.folder / "vocab.txt", tmp / "vocab.txt")
    config = json.loads((tmp / "config.json").read_text(encoding="utf-8"))
    files = tokenizer_files(
        set(prepared.tokenizer.vocab.tokens),
        lowercase=prepared.tokenizer.do_lower_case,
        max_length=config.get("max_position_embeddings", 512),
    )
    for name, content in files.items():
        (tmp / name).write_text(
            json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    outputs.replace_folder(tmp, final)  # the old final/ is moved aside, never half-replaced


def mark_done(
    out: Path,
    cfg,
    task,
    prepared,
    final_metrics: dict,
    steps: int,
    seconds: float,
    train_loss: float | None = None,
) -> None:
    info = json.loads((out / RUN_JSON).read_text(encoding="utf-8"))
    info.update(
        status="done",
        finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
        steps=steps,
        train_seconds=round(seconds, 2),
        metrics=final_metrics,
        main_metric=task.main_metric,
    )
    if train_loss is not None and math.isfinite(train_loss):  # NaN is not JSON
        info["train_loss"] = train_loss
    outputs.write_json_atomic(out / RUN_JSON, info)


def plot(out: Path, history: list[dict[str, Any]]) -> Path | None:
    """curves.png: training loss (from the JSONL log) and each dev metric, against steps."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    steps, losses = [], []
    with (out / "train_log.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            if "loss" in record and "step" in record:
                steps.append(record["step"])
                losses.append(record["loss"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(steps, losses, linewidth=0.8)
    left.set_xlabel("step")
    left.set_ylabel("training loss")
    for key in history[0]["metrics"] if history else []:
        right.plot(
            [h["step"] for h in history],
            [h["metrics"][key] for h in history],
            marker="o",
            label=key,
        )
    right.set_xlabel("step")
    right.set_ylabel("dev metric")
    if history:
        right.legend()
    fig.suptitle(out.name)
    fig.tight_layout()
    import io

    image = io.BytesIO()
    fig.savefig(image, dpi=100, format="png")
    plt.close(fig)
    return outputs.write_atomic(out / "curves.png", image.getvalue())
