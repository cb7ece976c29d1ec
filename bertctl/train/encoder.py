"""BERT's encoder for pretraining, run on what the losses read and nothing else.

transformers' BertModel computes every position of a padded batch in every layer. Pretraining
needs less: Google's instances are ~88% real tokens on typical text (short sequences and
truncation), and the two losses read the last layer at the ~20 masked positions and [CLS] only.
`encode` runs the same modules with the same weights (so saving, loading, DDP and the optimizer
see an ordinary BertForPreTraining), differently:

- the per-token layers (projections, feed-forward, LayerNorm, dropout) run on the real tokens
  only, packed into [T, H]; attention alone uses the padded [B, S] layout, padding masked out;
- the last layer computes only the positions asked for: their queries attend to every real token
  as before, so their outputs are unchanged, and the other ~90% of that layer is skipped;
- dropout keeps a value where a uniform draw is ≥ the rate, as Google's `tf.nn.dropout` does;
  on CPU that costs about half of torch's `bernoulli_`, which was 11% of a step. (The same
  distribution as torch's dropout; on a GPU, torch's fused kernels draw it.)

No library does this for BERT on CPU (transformers has no unpadded BERT; the fused kernels that
skip padding are CUDA-only), hence by hand. In eval mode the outputs equal BertModel's at the
positions asked for, and the gradients equal its gradients (tests/test_encoder.py).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint


def dropout(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Google's dropout: keep where uniform [0, 1) ≥ `rate`, scale the kept by 1 / (1 - rate).

    The uniform draw is float32 whatever x's dtype, so the rate is exact under bf16 autocast.
    Off the CPU, torch's fused dropout kernel: the same distribution in one pass.
    """
    if not training or rate == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, rate, training=True)
    keep = torch.rand(x.shape, device=x.device) >= rate
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - rate))


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor,
    rate: float,
    training: bool,
) -> torch.Tensor:
    """softmax(q·kᵀ/√d + bias) · v, with dropout on the probabilities as Google applies it.

    Shapes: q [B, heads, Q, d], k and v [B, heads, S, d], bias [B, 1, 1, S] (0 for a real key, a
    large negative number for padding); returns [B, heads, Q, d].

    Without dropout, and on a GPU (whose fused kernels draw the dropout inside, never storing
    the [B, heads, Q, S] probabilities), torch's scaled_dot_product_attention. With dropout on
    the CPU, torch would fall back to its unfused math path with `bernoulli_` masks; the same
    math is written here with Google's cheaper draw.
    """
    if not training or rate == 0.0 or q.device.type != "cpu":
        drop = rate if training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=drop)
    scores = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5) + bias
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(v.dtype)
    return torch.matmul(dropout(probs, rate, training), v)


def encode(
    bert,
    input_ids: torch.Tensor,
    input_mask: torch.Tensor,
    segment_ids: torch.Tensor,
    positions: torch.Tensor,
    checkpointing: bool = False,
) -> torch.Tensor:
    """The last layer's output at `positions` ([B, Q] indices into each sequence, every one a real
    token), shape [B, Q, H]; `bert` is transformers' BertModel (its modules and weights).

    input_ids, input_mask, segment_ids: [B, S] as in Google's features (mask 1 for real tokens).
    checkpointing: recompute each layer but the last in the backward pass (activation memory
    of one layer instead of all), as transformers' gradient checkpointing does.
    """
    batch, length = input_ids.shape
    training = bert.training
    real = input_mask.reshape(-1).nonzero().squeeze(1)  # [T] indices into the B·S positions
    slot = torch.full((batch * length,), -1, dtype=torch.long, device=input_ids.device)
    slot[real] = torch.arange(real.numel(), device=input_ids.device)  # position -> packed row
    rows = torch.arange(batch, device=input_ids.device).unsqueeze(1) * length
    wanted = slot[(positions + rows).reshape(-1)]  # [B·Q] packed rows of the asked positions
    # Additive mask over the keys, -10000 at padding as in Google's modeling.py (exp() of it is 0).
    bias = (1.0 - input_mask.to(torch.float32))[:, None, None, :] * -10000.0

    emb = bert.embeddings
    columns = torch.arange(length, device=input_ids.device).expand(batch, length).reshape(-1)
    h = (
        emb.word_embeddings(input_ids.reshape(-1)[real])
        + emb.token_type_embeddings(segment_ids.reshape(-1)[real])
        + emb.position_embeddings(columns[real])
    )
    h = dropout(emb.LayerNorm(h), emb.dropout.p, training)

    layers = bert.encoder.layer
    scatter = (batch, length, real, bias, training)
    for layer in layers[:-1]:
        if checkpointing and training:
            h = checkpoint(_layer, layer, h, None, *scatter, use_reentrant=False)
        else:
            h = _layer(layer, h, None, *scatter)
    return _layer(layers[-1], h, wanted, *scatter).reshape(batch, -1, h.shape[-1])


def _layer(
    layer,
    h: torch.Tensor,
    wanted: torch.Tensor | None,
    batch: int,
    length: int,
    real: torch.Tensor,
    bias: torch.Tensor,
    training: bool,
) -> torch.Tensor:
    """One BertLayer on packed tokens h [T, H]; returns [T, H], or the rows `wanted` only."""
    attn = layer.attention.self
    heads, size = attn.num_attention_heads, attn.attention_head_size
    hidden = heads * size

    def padded(x: torch.Tensor) -> torch.Tensor:
        """Packed [T, n·H] -> [n, B, heads, S, d], zeros at padding."""
        n = x.shape[-1] // hidden
        full = x.new_zeros(batch * length, x.shape[-1]).index_copy(0, real, x)
        return full.view(batch, length, n, heads, size).permute(2, 0, 3, 1, 4)

    if wanted is None:  # every token: q, k and v in one matrix product
        weight = torch.cat([attn.query.weight, attn.key.weight, attn.value.weight])
        bias_qkv = torch.cat([attn.query.bias, attn.key.bias, attn.value.bias])
        q, k, v = padded(F.linear(h, weight, bias_qkv)).unbind(0)
        residual = h
    else:  # the queries of the asked positions only; keys and values of every token
        weight = torch.cat([attn.key.weight, attn.value.weight])
        k, v = padded(F.linear(h, weight, torch.cat([attn.key.bias, attn.value.bias]))).unbind(0)
        residual = h.index_select(0, wanted)
        q = attn.query(residual).view(batch, -1, heads, size).transpose(1, 2)
    context = attend(q, k, v, bias, attn.dropout.p, training)  # [B, heads, S or Q, d]
    context = context.transpose(1, 2).reshape(-1, hidden)
    if wanted is None:
        context = context.index_select(0, real)
    out = layer.attention.output
    h = out.LayerNorm(dropout(out.dense(context), out.dropout.p, training) + residual)
    ffn = layer.output
    inner = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(h))
    return ffn.LayerNorm(dropout(ffn.dense(inner), ffn.dropout.p, training) + h)
