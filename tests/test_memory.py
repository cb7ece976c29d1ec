"""The memory estimator (bertctl.memory): published figures, the per-tensor derivation, sanity.

Published figures (REFERENCE §7) and what the estimator predicts for them:

Google's README, largest batch on a 12 GB Titan X, TensorFlow 1.11, fp32, Adam. Predicted for
PyTorch with eager attention (TensorFlow 2018 had no fused attention), 12 GiB less the 512 MiB
CUDA context, Google's optimizer:

    seq               64    128   256   320   384   512
    Base   Google     64     32    16    14    12     6
           predicted 213     95    39    29    22    14    (1.8x to 3.3x Google's)
    Large  Google     12      6     2     1     0     0
           predicted  61     27    11     8     6     4

PyTorch today fits two to three times Google's batches: TensorFlow 1.11 ran Google's graph
unfused (float dropout masks, a tanh-GELU saving three tensors, materialised transposes),
kept clipped copies of every gradient and scheduled Adam's temporaries for all weights at once.
The tolerance is therefore one-sided where it matters for a planner: every batch Google found to
fit also fits the estimate, and the estimate stays within 3.5x of Google's for BERT-Base; for
BERT-Large, where the model state (16 bytes per parameter) takes 5.0 of the 11.5 GiB, the
estimate leaves room for a handful of sequences at 384 and 512 (Google: none).
BENCHMARKS.md, Memory planning, gives the full account.

bert-large, V100 16 GB, fp32, batch 4, seq 512: 14,949 MB measured elsewhere. That figure is read
as nvidia-smi's MiB for a PyTorch 1.x process of its time: eager attention, `zero_grad()` keeping
the gradients (PyTorch's default before 2.0), and the CUDA context of that era (about 1 GiB,
before CUDA 11.7 loaded kernels lazily). Predicted: 12,661 MiB + 1,024 MiB = 13,685 MiB, 8.5%
under: within 10%.
"""

from __future__ import annotations

import pytest

from bertctl import catalog, memory
from bertctl.bertconfig import BertConfig, check_config, count_parameters
from bertctl.errors import UsageError

MiB, GiB = memory.MiB, memory.GiB


def release(name: str) -> BertConfig:
    config = check_config(catalog.find(name).bert_config()).config
    assert config is not None
    return config


BASE = release("base-uncased")
LARGE = release("large-uncased")
TITAN_X = memory.usable(12 * GiB)


# --------------------------------------------------------------------------------------------
# Published figures


@pytest.mark.parametrize("config", [BASE, LARGE], ids=["base", "large"])
def test_google_readme_table_every_published_batch_fits_the_estimate(config):
    google = memory.google_2018(config)
    assert google is not None
    for seq, batch in google.items():
        if batch:
            est = memory.estimate(config, batch, seq, "fp32", attention="eager")
            assert est.total <= TITAN_X, (seq, batch, memory.format_bytes(est.total))


def test_google_readme_table_base_within_tolerance():
    google = memory.google_2018(BASE)
    predicted = {s: memory.max_batch(BASE, s, "fp32", TITAN_X, attention="eager") for s in google}
    assert predicted == {64: 213, 128: 95, 256: 39, 320: 29, 384: 22, 512: 14}  # the docstring's
    for seq, batch in google.items():
        assert batch <= predicted[seq] <= 3.5 * batch, (seq, batch, predicted[seq])


def test_google_readme_table_large_within_tolerance():
    google = memory.google_2018(LARGE)
    predicted = {s: memory.max_batch(LARGE, s, "fp32", TITAN_X, attention="eager") for s in google}
    assert predicted == {64: 61, 128: 27, 256: 11, 320: 8, 384: 6, 512: 4}  # the docstring's
    for seq, batch in google.items():
        assert predicted[seq] >= batch
    # where TensorFlow fit none, a handful: the model state alone is 5.0 of the 11.5 GiB
    assert predicted[384] <= 6 and predicted[512] <= 4
    assert memory.estimate(LARGE, 1, 512, "fp32").model_state / GiB == pytest.approx(5.0, abs=0.05)


def test_v100_bert_large_fp32_batch_4_seq_512_within_10_percent():
    est = memory.estimate(
        LARGE, 4, 512, "fp32", optimizer="adamw", attention="eager", keep_grads=True
    )
    legacy_context = 1 * GiB  # PyTorch 1.x, before lazy kernel loading
    predicted_mib = (est.total + legacy_context) / MiB
    assert round(predicted_mib) == 13685  # the docstring's
    assert abs(predicted_mib / 14949 - 1) <= 0.10
    # bertctl today (SDPA, gradients freed between steps, lazy context) needs far less
    today = memory.estimate(LARGE, 4, 512, "fp32", attention="sdpa")
    assert today.total + memory.CONTEXT_BYTES < 0.65 * 14949 * MiB


# --------------------------------------------------------------------------------------------
# The derivation


def test_model_state_is_16_bytes_per_parameter_for_fp32_adam():
    for config in (BASE, LARGE):
        for task in ("classify", "pretrain"):
            est = memory.estimate(config, 8, 128, "fp32", task=task)
            assert est.model_state == 16 * est.params
            # at the end of the backward (a tiny batch, fused AdamW) the state is all there is
            end = memory.estimate(config, 1, 64, "fp32", optimizer="adamw", task=task)
            assert end.phase == "backward (end)"
            assert end.weights + end.gradients + end.optimizer_state == 16 * end.params


def test_parameter_counts_match_the_checkpoint_shapes():
    assert memory.param_counts(BASE).total == count_parameters(BASE) + 2 * 768 + 2
    assert memory.param_counts(BASE, "pretrain").total == count_parameters(BASE, heads=True)
    assert memory.param_counts(LARGE).total == 335_143_938


def test_layer_activations_follow_the_documented_formula():
    b, s, h, a, i = 4, 128, BASE.hidden_size, BASE.num_attention_heads, BASE.intermediate_size
    sbh, scores, stats = s * b * h, b * a * s * s, 16 * b * s
    lse = 4 * b * a * 128

    def layer(precision, attention):
        return memory.layer_activation_bytes(BASE, b, s, precision, attention)

    assert layer("fp32", "eager") == sbh * (34 + 8 * i // h) + 9 * scores + stats  # 66·sbh
    assert layer("bf16", "eager") == sbh * (26 + 4 * i // h) + 7 * scores + stats  # 42·sbh
    assert layer("fp32", "flash") == 66 * sbh + stats + lse
    assert layer("fp32", "sdpa") == 66 * sbh + stats + lse + 4 * b * s * s  # padding mask
    assert layer("bf16", "sdpa") == 42 * sbh + stats + lse + 2 * b * s * s


def saved_bytes(layers: int, autocast: bool) -> int:
    """Bytes autograd saves in a forward pass of a small random BERT on the CPU (eager attention),
    the weights themselves left out. CPU dropout keeps a float mask where CUDA keeps a bool one,
    so masks are counted at one byte per element, as on a GPU."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=256,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=1024,
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification._from_config(
        config, attn_implementation="eager"
    )
    model.train()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in weights and key not in seen:
            mask = t.is_floating_point() and not t.requires_grad and t.dim() > 1 and t.shape[-1] > 1
            seen[key] = t.numel() if mask else storage.nbytes()
        return t

    ids = torch.randint(0, 100, (2, 96))
    attention_mask = torch.ones(2, 96, dtype=torch.long)
    attention_mask[0, -3:] = 0
    with (
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
        torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast),
    ):
        model(input_ids=ids, attention_mask=attention_mask, labels=torch.zeros(2, dtype=torch.long))
    return sum(seen.values())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_layer_formula_equals_what_autograd_saves(precision):
    """One more layer saves exactly what `layer_activation_bytes` counts (and, under autocast,
    the 16-bit copies of its matmul weights, which the estimate counts with the weights)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        autocast = precision == "bf16"
        per_layer = saved_bytes(2, autocast) - saved_bytes(1, autocast)
    finally:
        torch.set_num_threads(threads)
    config = BertConfig(
        vocab_size=100, hidden_size=256, num_attention_heads=4, intermediate_size=1024
    )
    expected = memory.layer_activation_bytes(config, 2, 96, precision, "eager")
    if autocast:
        expected += 2 * (4 * 256 * 256 + 2 * 256 * 1024)
    assert per_layer == expected


# --------------------------------------------------------------------------------------------
# Sanity


@pytest.mark.parametrize("precision", memory.PRECISIONS)
@pytest.mark.parametrize("attention", memory.ATTENTIONS)
def test_more_batch_or_longer_sequences_need_more(precision, attention):
    for config in (BASE, LARGE):
        totals = [
            memory.estimate(config, b, 128, precision, attention=attention).total
            for b in (1, 2, 8, 32, 64)
        ]
        assert totals == sorted(totals) and totals[-1] > totals[0]
        by_seq = [
            memory.estimate(config, 16, s, precision, attention=attention).saved_activations
            for s in memory.SEQ_LENGTHS
        ]
        assert by_seq == sorted(by_seq) and len(set(by_seq)) == len(by_seq)


def test_bf16_checkpointing_and_sdpa_save_memory():
    for config in (BASE, LARGE):
        for attention in memory.ATTENTIONS:
            fp32 = memory.estimate(config, 32, 128, "fp32", attention=attention)
            bf16 = memory.estimate(config, 32, 128, "bf16", attention=attention)
            assert bf16.saved_activations < fp32.saved_activations
            ckpt = memory.estimate(
                config, 32, 128, "fp32", grad_checkpointing=True, attention=attention
            )
            assert ckpt.saved_activations < fp32.saved_activations / 4
            assert ckpt.total < fp32.total
        for precision in ("fp32", "bf16"):
            eager = memory.estimate(config, 8, 512, precision, attention="eager")
            sdpa = memory.estimate(config, 8, 512, precision, attention="sdpa")
            flash = memory.estimate(config, 8, 512, precision, attention="flash")
            assert flash.total < sdpa.total < eager.total


def test_accumulation_keeps_gradients_and_autocast_keeps_16bit_weight_copies():
    one = memory.estimate(BASE, 16, 128, "fp32")
    accum = memory.estimate(BASE, 16, 128, "fp32", grad_accum=2)
    assert one.phase == accum.phase == "backward (start)"
    assert accum.gradients == 4 * accum.params > one.gradients
    bf16 = memory.estimate(BASE, 64, 128, "bf16")
    matmul = memory.param_counts(BASE).matmul
    assert bf16.phase == "backward (start)"
    assert bf16.weights == 4 * bf16.params + 2 * matmul


def test_google_optimizer_temporaries_can_set_the_peak():
    """Google's `_foreach` Adam holds sqrt(v) and the update for every weight at once."""
    google = memory.estimate(LARGE, 1, 128, "fp32", optimizer="google")
    fused = memory.estimate(LARGE, 1, 128, "fp32", optimizer="adamw")
    assert google.phase == "optimizer step" and google.activations == 0
    decayed = google.params - memory.param_counts(LARGE).no_decay
    assert google.temporaries == 8 * decayed
    assert fused.total < google.total


def test_pretraining_gathers_googles_masked_positions():
    assert memory._predictions(128, None) == 20 and memory._predictions(512, None) == 80
    classify = memory.estimate(BASE, 32, 128, "bf16")
    pretrain = memory.estimate(BASE, 32, 128, "bf16", task="pretrain")
    more = memory.estimate(BASE, 32, 128, "bf16", task="pretrain", max_predictions=40)
    assert classify.total < pretrain.total < more.total


def test_max_batch_is_the_largest_that_fits():
    for seq in (128, 512):
        for precision, ckpt in (("fp32", False), ("bf16", True)):
            n = memory.max_batch(BASE, seq, precision, TITAN_X, grad_checkpointing=ckpt)
            assert (
                memory.estimate(BASE, n, seq, precision, grad_checkpointing=ckpt).total <= TITAN_X
            )
            assert (
                memory.estimate(BASE, n + 1, seq, precision, grad_checkpointing=ckpt).total
                > TITAN_X
            )
    lengths = [memory.max_batch(LARGE, s, "fp32", TITAN_X) for s in memory.SEQ_LENGTHS]
    assert lengths == sorted(lengths, reverse=True)
    assert memory.max_batch(LARGE, 128, "fp32", 4 * GiB) == 0  # the model state alone is 5 GiB


def test_fit_suggests_settings_that_fit_best_first():
    settings = memory.Settings(batch_size=32, max_seq_length=512, precision="fp32")
    assert memory.estimate_settings(LARGE, settings).total > TITAN_X
    found = memory.fit(LARGE, settings, TITAN_X)
    assert found and all(s.estimate.total <= TITAN_X for s in found)
    first = found[0]
    assert first.settings.batch_size == 32 and first.settings.precision == "fp32"
    assert first.flags == f"--batch-size 32 --grad-accum {first.settings.grad_accum}"
    # the largest micro-batch: one step less accumulation does not fit
    assert first.settings.grad_accum == 8
    tighter = memory.Settings(32, 512, "fp32", grad_accum=4)
    assert memory.estimate_settings(LARGE, tighter).total > TITAN_X
    kinds = [tuple(sorted(s.changes)) for s in found]
    assert ("grad_accum", "precision") in kinds or ("precision",) in kinds
    assert ("grad_checkpointing",) in kinds
    assert found[-1].changes == {"max_seq_length": 128}
    no_bf16 = memory.fit(LARGE, settings, TITAN_X, bf16=False)
    assert all(s.settings.precision == "fp32" for s in no_bf16)
    assert memory.fit(LARGE, settings, 1 * GiB) == []


def test_fit_accepts_a_finetune_config():
    from bertctl.train.config import FinetuneConfig

    cfg = FinetuneConfig(batch_size=64, max_seq_length=256, precision="fp32")
    found = memory.fit(BASE, cfg, 8 * GiB, bf16=False)
    assert found[0].changes == {"grad_accum": 2}
    assert found[0].flags == "--batch-size 64 --grad-accum 2"


# --------------------------------------------------------------------------------------------
# Sizes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12GiB", 12 * GiB),
        ("12GB", 12 * 10**9),
        ("11.5G", int(11.5 * GiB)),
        ("12000MB", 12 * 10**9),
        ("512MiB", 512 * MiB),
        ("512m", 512 * MiB),
        (" 80 GiB ", 80 * GiB),
        ("1048576", 1 << 20),
    ],
)
def test_parse_size(text, expected):
    assert memory.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GiB", "12 XB", "-3GiB", "0", "twelve", "1e3GB"])
def test_parse_size_refuses_what_is_not_a_size(text):
    with pytest.raises(UsageError) as info:
        memory.parse_size(text, "--gpu-memory")
    assert "--gpu-memory" in str(info.value) and "12GiB" in str(info.value)


def test_estimate_refuses_unknown_settings():
    with pytest.raises(UsageError, match="precision"):
        memory.estimate(BASE, 1, 128, "fp8")
    with pytest.raises(UsageError, match="attention"):
        memory.estimate(BASE, 1, 128, attention="xformers")
    with pytest.raises(UsageError, match="task"):
        memory.estimate(BASE, 1, 128, task="squad")


def test_breakdown_sums_to_the_total_and_allocated_leaves_out_slack():
    est = memory.estimate(BASE, 32, 128, "bf16")
    assert sum(v for _, v in est.breakdown()) == est.total
    assert est.allocated == est.total - est.slack
    assert est.workspace == memory.CUBLAS_BYTES + est.slack
    data = est.to_dict()
    assert data["total"] == est.total and data["model_state"] == 16 * est.params
