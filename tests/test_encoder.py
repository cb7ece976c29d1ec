"""The pretraining encoder (bertctl.train.encoder) against transformers' BertModel.

It runs the same weights on the real tokens only and computes the last layer at the asked
positions only; with dropout off it must give transformers' outputs at those positions and
transformers' gradients, and its dropout must be Google's (keep where uniform ≥ rate).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from bertctl.train import encoder  # noqa: E402

SMALL = {
    "vocab_size": 120,
    "hidden_size": 48,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "intermediate_size": 96,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
}


@pytest.fixture
def bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(**SMALL)
    config._attn_implementation = "sdpa"
    model = transformers.BertModel(config)
    with torch.no_grad():  # LayerNorm and biases away from their ones and zeros
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model


def batch(lengths: list[int], width: int, asked: int = 5):
    """Ids, mask, segments for sequences of `lengths` padded to `width`, and [B, 1 + asked]
    positions: [CLS] and real positions (a row with fewer repeats position 0, as Google's
    padded masked_lm_positions do)."""
    generator = torch.Generator().manual_seed(1)
    rows = len(lengths)
    ids = torch.randint(5, SMALL["vocab_size"], (rows, width), generator=generator)
    mask = (torch.arange(width) < torch.tensor(lengths)[:, None]).long()
    ids = ids * mask
    segments = ((torch.arange(width) >= torch.tensor(lengths)[:, None] // 2) * mask).long()
    positions = torch.zeros(rows, 1 + asked, dtype=torch.long)
    for row, length in enumerate(lengths):
        picked = torch.randperm(length - 1, generator=generator)[:asked] + 1
        positions[row, 1 : 1 + len(picked)] = picked
    return ids, mask, segments, positions


def theirs(bert, ids, mask, segments, positions):
    out = bert(input_ids=ids, attention_mask=mask, token_type_ids=segments).last_hidden_state
    return torch.gather(out, 1, positions[..., None].expand(-1, -1, out.shape[-1]))


def grads(bert, loss) -> dict[str, torch.Tensor]:
    bert.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in bert.named_parameters() if p.grad is not None}


def assert_same_grads(ours: dict, reference: dict) -> None:
    assert ours.keys() == reference.keys()
    scale = max(float(g.abs().max()) for g in reference.values())
    for name, want in reference.items():
        # The key bias has a zero gradient in exact arithmetic (softmax ignores a constant
        # added to a row), so both sides hold rounding noise there: compared at the scale of
        # the largest gradient.
        assert torch.allclose(ours[name], want, rtol=1e-4, atol=1e-6 * scale), name


def test_outputs_at_the_asked_positions_equal_transformers(bert):
    bert.eval()
    ids, mask, segments, positions = batch([40, 7, 23, 40], 40)
    with torch.no_grad():
        ours = encoder.encode(bert, ids, mask, segments, positions)
        reference = theirs(bert, ids, mask, segments, positions)
    assert ours.shape == (4, 6, SMALL["hidden_size"])
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_gradients_equal_transformers_with_the_attention_path_of_training(bert, monkeypatch):
    """Training mode with every dropout replaced by the identity: the hand-written attention
    (the path taken when attention dropout is on) and the packing give transformers' gradients."""
    ids, mask, segments, positions = batch([33, 12, 30], 33)
    weights = torch.randn(3, 6, SMALL["hidden_size"], generator=torch.Generator().manual_seed(2))
    bert.eval()
    reference = grads(bert, (theirs(bert, ids, mask, segments, positions) * weights).sum())
    taken = []
    real_attend = encoder.attend

    def spy(q, k, v, bias, rate, training):
        taken.append((rate, training))
        return real_attend(q, k, v, bias, rate, training)

    monkeypatch.setattr(encoder, "dropout", lambda x, rate, training: x)
    monkeypatch.setattr(encoder, "attend", spy)
    bert.train()
    ours = grads(bert, (encoder.encode(bert, ids, mask, segments, positions) * weights).sum())
    assert taken == [(0.1, True)] * 3  # the dropout path of every layer ran
    assert_same_grads(ours, reference)


def test_gradient_checkpointing_gives_the_same_gradients_and_dropout_masks(bert):
    ids, mask, segments, positions = batch([30, 30, 9], 30)
    bert.train()
    runs = []
    for checkpointing in (False, True):
        torch.manual_seed(7)
        out = encoder.encode(bert, ids, mask, segments, positions, checkpointing=checkpointing)
        runs.append((out.detach(), grads(bert, out.square().sum())))
    torch.testing.assert_close(runs[1][0], runs[0][0], rtol=0, atol=0)
    for name, want in runs[0][1].items():
        torch.testing.assert_close(runs[1][1][name], want, rtol=1e-6, atol=1e-7)


def test_training_output_differs_by_dropout_and_eval_does_not(bert):
    ids, mask, segments, positions = batch([20, 20], 20)
    bert.train()
    with torch.no_grad():
        first = encoder.encode(bert, ids, mask, segments, positions)
        second = encoder.encode(bert, ids, mask, segments, positions)
        bert.eval()
        third = encoder.encode(bert, ids, mask, segments, positions)
        fourth = encoder.encode(bert, ids, mask, segments, positions)
    assert not torch.equal(first, second)
    assert torch.equal(third, fourth)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_is_googles_keep_where_uniform_reaches_the_rate(dtype):
    x = torch.full((1_000_000,), 3.0, dtype=dtype)
    torch.manual_seed(3)
    out = encoder.dropout(x, 0.1, training=True)
    dropped = float((out == 0).float().mean())
    # Binomial(10⁶, 0.1): σ = 0.0003; five σ either way. bf16 inputs still draw float32 uniforms.
    assert abs(dropped - 0.1) < 0.0015
    kept = out[out != 0].float()
    torch.testing.assert_close(
        kept, torch.full_like(kept, float(torch.tensor(3.0 / 0.9, dtype=dtype)))
    )
    # Google's rule: keep where uniform ≥ rate, with the same draws.
    torch.manual_seed(3)
    keep = torch.rand(x.shape) >= 0.1
    assert torch.equal(out != 0, keep)
    assert encoder.dropout(x, 0.1, training=False) is x
    assert encoder.dropout(x, 0.0, training=True) is x
