"""The inference estimate (bertctl.memory.estimate_inference): bytes alive, counted on the CPU.

`bertctl evaluate` and `predict` run BertForSequenceClassification under torch.inference_mode.
The estimate says which tensors are alive at each op of the forward pass (`inference_moments`);
here a dispatch mode runs a small random BERT the same way on the CPU, watches every tensor
storage the forward pass creates until it is freed, and finds the most bytes alive at once. The
ops, the dtypes autocast picks for them (linear and matmul in 16 bits; LayerNorm, softmax over an
fp32 mask, and the residual stream in fp32) and the Python references that keep tensors alive are
the same on a GPU; what a fused kernel allocates inside its call (SDPA's mask conversions,
`Moment.in_kernel`) is invisible here and left out of the comparison.

Measured and predicted, in bytes (batch 2 x 96 tokens, hidden 256, 4 heads, intermediate 1024):

    layers  precision  attention  peak at              counted   predicted
    1       fp32       sdpa       GELU               1,989,136   1,989,136
    2       fp32       sdpa       GELU               2,185,744   2,185,744
    2       bf16       sdpa       intermediate dense 1,630,736   1,630,736
    2       fp32       eager      GELU               2,535,952   2,535,952
"""

from __future__ import annotations

import pytest

from bertctl import catalog, memory
from bertctl.bertconfig import BertConfig, check_config
from bertctl.errors import UsageError

MiB, GiB = memory.MiB, memory.GiB


def release(name: str) -> BertConfig:
    config = check_config(catalog.find(name).bert_config()).config
    assert config is not None
    return config


BASE = release("base-uncased")
LARGE = release("large-uncased")


# --------------------------------------------------------------------------------------------
# Counted on the CPU


def bytes_alive_at_peak(
    layers: int, precision: str, attention: str, batch: int, seq: int, shape: tuple[int, int, int]
) -> int:
    """The most bytes that tensor storages created by one evaluation forward pass (the batch
    included, the weights not) hold at once, watched after every op."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from torch.multiprocessing.reductions import StorageWeakRef
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    transformers.logging.set_verbosity_error()
    hidden, heads, intermediate = shape

    class Alive(TorchDispatchMode):
        """Tracks each new storage by a weak reference, so it never keeps one alive."""

        def __init__(self, existing: set[int]):
            super().__init__()
            self.existing = existing
            self.storages: dict[int, tuple[StorageWeakRef, int]] = {}
            self.peak = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    ref = StorageWeakRef(t.untyped_storage())
                    if ref.cdata not in self.existing:
                        self.storages.setdefault(ref.cdata, (ref, t.untyped_storage().nbytes()))
            for key in [k for k, (ref, _) in self.storages.items() if ref.expired()]:
                del self.storages[key]
            self.peak = max(self.peak, sum(n for _, n in self.storages.values()))
            return out

    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification._from_config(
        config, attn_implementation=attention
    ).eval()
    weights = {
        StorageWeakRef(t.untyped_storage()).cdata for t in [*model.parameters(), *model.buffers()]
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode(), Alive(weights) as alive:
            # the batch as `collate` makes it: int64 ids, segments, padding mask and labels
            ids = torch.randint(0, 100, (batch, seq))
            mask = torch.ones(batch, seq, dtype=torch.long)
            mask[0, -3:] = 0  # padded, as dynamically padded batches are
            segments = torch.zeros(batch, seq, dtype=torch.long)
            labels = torch.zeros(batch, dtype=torch.long)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "fp32"):
                model(input_ids=ids, attention_mask=mask, token_type_ids=segments, labels=labels)
    finally:
        torch.set_num_threads(threads)
    return alive.peak


def predicted_on_the_cpu(
    layers: int, precision: str, attention: str, batch: int, seq: int, shape: tuple[int, int, int]
) -> tuple[int, str]:
    """The estimate's peak with what fused kernels allocate inside their calls left out."""
    hidden, heads, intermediate = shape
    config = BertConfig(
        vocab_size=100,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
    )
    moments = memory.inference_moments(config, batch, seq, precision, attention)
    peak = max(moments, key=lambda m: m.total - m.in_kernel)
    return peak.total - peak.in_kernel, peak.name


WIDE = (256, 4, 1024)  # the feed-forward block sets the peak
NARROW = (64, 4, 256)  # at 256 tokens eager attention's scores set it


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("layers", [1, 2])
def test_inference_peak_equals_the_bytes_counted_alive(layers, precision, attention):
    counted = bytes_alive_at_peak(layers, precision, attention, 2, 96, WIDE)
    predicted, phase = predicted_on_the_cpu(layers, precision, attention, 2, 96, WIDE)
    assert counted == predicted, phase
    # fp32 peaks in the GELU; under autocast the running matmul's 16-bit weight copy sets it
    assert phase == ("GELU" if precision == "fp32" else "intermediate dense")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_inference_peak_in_eager_attention_equals_the_bytes_counted_alive(precision):
    counted = bytes_alive_at_peak(2, precision, "eager", 2, 256, NARROW)
    predicted, phase = predicted_on_the_cpu(2, precision, "eager", 2, 256, NARROW)
    assert counted == predicted
    assert phase == ("attention scores" if precision == "fp32" else "softmax")


def test_inference_peak_in_the_output_layernorm_equals_the_bytes_counted_alive():
    shape = (128, 2, 512)
    counted = bytes_alive_at_peak(2, "bf16", "sdpa", 3, 50, shape)
    assert (counted, "output LayerNorm") == predicted_on_the_cpu(2, "bf16", "sdpa", 3, 50, shape)


def test_a_third_layer_adds_nothing_to_the_peak():
    """Only the embedding output and the running layer's input outlive a layer."""
    two = bytes_alive_at_peak(2, "fp32", "sdpa", 2, 96, WIDE)
    assert bytes_alive_at_peak(3, "fp32", "sdpa", 2, 96, WIDE) == two
    assert predicted_on_the_cpu(3, "fp32", "sdpa", 2, 96, WIDE)[0] == two


# --------------------------------------------------------------------------------------------
# The documented formula


def test_bert_base_peaks_at_the_documented_bytes_per_token():
    b, s, h = 64, 128, BASE.hidden_size
    t = b * s
    batch_and_mask = 3 * 8 * t + 8 * b + b * s * s
    fp32 = memory.estimate_inference(BASE, b, s, "fp32")
    assert fp32.phase == "GELU" and fp32.weight_copy == 0
    assert fp32.activations == 44 * t * h + batch_and_mask
    bf16 = memory.estimate_inference(BASE, b, s, "bf16")
    assert bf16.phase == "output LayerNorm"
    assert bf16.activations == 30 * t * h + batch_and_mask


def test_sdpa_mask_copies_inside_the_kernel_can_set_the_peak_at_512_tokens():
    b, s, a = 64, 512, BASE.num_attention_heads
    est = memory.estimate_inference(BASE, b, s, "fp32")
    assert est.phase == "attention"
    attention = next(m for m in memory.inference_moments(BASE, b, s) if m.name == "attention")
    assert attention.in_kernel == 4 * b * s * s + 4 * b * a * s * s  # additive, head-expanded


def test_depth_does_not_change_the_activations():
    deep = BertConfig(**{**BASE.to_dict(), "num_hidden_layers": 48})
    assert (
        memory.estimate_inference(deep, 32, 128).activations
        == memory.estimate_inference(BASE, 32, 128).activations
    )


def test_inference_needs_far_less_than_training():
    for config in (BASE, LARGE):
        for precision in ("fp32", "bf16"):
            infer = memory.estimate_inference(config, 32, 128, precision)
            train = memory.estimate(config, 32, 128, precision)
            assert infer.weights == 4 * infer.params == 4 * train.params
            assert infer.total < train.total / 3
            assert infer.activations < train.saved_activations / config.num_hidden_layers * 2


@pytest.mark.parametrize("attention", memory.ATTENTIONS)
def test_more_batch_or_longer_sequences_need_more_and_bf16_less(attention):
    by_batch = [
        memory.estimate_inference(BASE, n, 128, attention=attention).total for n in (1, 8, 64)
    ]
    assert by_batch == sorted(by_batch) and len(set(by_batch)) == 3
    by_seq = [
        memory.estimate_inference(BASE, 16, s, attention=attention).total
        for s in memory.SEQ_LENGTHS
    ]
    assert by_seq == sorted(by_seq) and len(set(by_seq)) == len(by_seq)
    fp32 = memory.estimate_inference(BASE, 64, 256, "fp32", attention)
    bf16 = memory.estimate_inference(BASE, 64, 256, "bf16", attention)
    assert bf16.activations < fp32.activations


def test_inference_breakdown_sums_to_the_total():
    for precision in ("fp32", "bf16"):
        est = memory.estimate_inference(BASE, 8, 128, precision)
        assert sum(v for _, v in est.breakdown()) == est.total
        assert est.allocated == est.total - est.slack
        assert est.workspace == memory.CUBLAS_BYTES + est.slack
        assert est.slack == int(memory.ALLOCATOR_SLACK * (est.activations + est.weight_copy))
        assert est.to_dict()["total"] == est.total
    copy = memory.estimate_inference(BASE, 1, 8, "bf16")  # tiny batch: the weight copy peaks
    assert copy.weight_copy == 2 * (768 * 3072 + 3072)
    assert ("16-bit weight copy", copy.weight_copy) in copy.breakdown()


def test_inference_estimate_refuses_what_it_cannot_estimate():
    with pytest.raises(UsageError, match="out of range"):
        memory.estimate_inference(BASE, 0, 128)
    with pytest.raises(UsageError, match="precision"):
        memory.estimate_inference(BASE, 1, 128, "fp8")
    with pytest.raises(UsageError, match="attention"):
        memory.estimate_inference(BASE, 1, 128, attention="xformers")


# --------------------------------------------------------------------------------------------
# Settings that fit


def test_fit_for_evaluation_suggests_a_smaller_batch_then_bf16_then_shorter_sequences():
    card = memory.usable(4 * GiB)
    current = memory.InferenceSettings(batch_size=256, max_seq_length=512, precision="fp32")
    assert memory.estimate_settings(LARGE, current).total > card
    found = memory.fit(LARGE, current, card)
    assert found == memory.fit_inference(LARGE, current, card)
    assert all(s.estimate.total <= card for s in found)
    smaller, half, shorter = found
    n = smaller.settings.batch_size
    assert smaller.changes == {"batch_size": n} and smaller.flags == f"--batch-size {n}"
    assert memory.estimate_inference(LARGE, n + 1, 512).total > card  # the largest that fits
    assert half.changes["precision"] == "bf16" and "--precision bf16" in half.flags
    assert half.settings.batch_size > n
    # the longest of Google's lengths that fits at the batch asked for
    assert shorter.changes == {"max_seq_length": 128} and shorter.flags == "--max-seq-length 128"
    assert memory.estimate_inference(LARGE, 256, 256).total > card
    assert [s.settings.precision for s in memory.fit(LARGE, current, card, bf16=False)] == [
        "fp32",
        "fp32",
    ]


def test_fit_for_evaluation_is_empty_when_the_weights_alone_do_not_fit():
    current = memory.InferenceSettings(batch_size=64, max_seq_length=128, precision="fp32")
    assert 4 * memory.param_counts(LARGE).total > GiB
    assert memory.fit(LARGE, current, GiB) == []
    assert memory.max_eval_batch(LARGE, current, GiB) == 0


def test_max_eval_batch_stops_at_its_limit():
    current = memory.InferenceSettings(batch_size=8, max_seq_length=128, precision="fp32")
    card = memory.usable(80 * GiB)
    assert memory.max_eval_batch(BASE, current, card, limit=8) == 8
    n = memory.max_eval_batch(BASE, current, card)
    assert 1000 < n < 1 << 16
    assert memory.estimate_inference(BASE, n, 128).total <= card
    assert memory.estimate_inference(BASE, n + 1, 128).total > card
