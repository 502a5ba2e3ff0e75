"""Attention and transformer modules (``needle.nn``): the course's MultiHeadAttention,
AttentionLayer, TransformerLayer and Transformer.

Shapes follow the course: attention works on (batch, heads, time, dim_head) and a layer
on (batch, time, features). MultiHeadAttention forms the (Tq, Tk) probabilities
explicitly, because it returns them (``forward`` -> (result, probs)) and applies dropout
to them, as the course's tests expect. The causal mask is aligned to the bottom right:
query i sees keys j <= i + Tk - Tq, so a shorter query block attends to every key up to
its own position. Parameters are created in the course's order (LayerNorms, then the q,
k, v projections, then the output projection; in a TransformerLayer the attention, the
MLP's LayerNorm, then its two Linears; in a Transformer the positional embedding, then
the layers), so a model built after ``np.random.seed(s)`` draws the same weights.

The models of ``needle.apps.models`` that need speed rather than the probabilities (GPT,
ViT) use ``ops.scaled_dot_product_attention``, the fused op, instead.
"""
import numpy as np

import needle.init as init
from needle import ops
from needle.autograd import Tensor

from .nn_basic import Dropout, LayerNorm1d, Linear, Module, ReLU, Sequential, _check_ndim, _positive_int
from .nn_sequence import Embedding

__all__ = ["MultiHeadAttention", "AttentionLayer", "TransformerLayer", "Transformer"]


def _check_heads(op, q, k, v):
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_ndim(op, t, 4, f"{name} (batch, heads, time, dim_head)")
    (b, h, _, d), (kb, kh, tk, kd), (vb, vh, tv, vd) = q.shape, k.shape, v.shape
    if (kb, kh, kd) != (b, h, d) or (vb, vh, tv, vd) != (b, h, tk, d):
        raise ValueError(f"[{op}] q {tuple(q.shape)}, k {tuple(k.shape)} and v {tuple(v.shape)} "
                         "must agree in batch, heads and dim_head, and k and v in time")


class MultiHeadAttention(Module):
    """softmax(q kᵀ / sqrt(d) + causal mask) v over (B, H, T, D) inputs.

    ``forward(q, k, v)`` -> (result (B, H, Tq, D), probs (B, H, Tq, Tk)); dropout is
    applied to the probabilities (in training), so ``probs`` is what multiplied v.
    """

    def __init__(self, *, dropout=0.0, causal=False, device=None, dtype="float32"):
        super().__init__()
        self.device = device
        self.dtype = dtype
        self.causal = causal
        self.dropout = Dropout(dropout)

    @staticmethod
    def create_causal_mask(i, j, device=None, dtype="float32"):
        """(1, 1, i, j) additive mask: -max(float32) above the bottom-right diagonal, else 0."""
        mask = -np.finfo(np.float32).max * np.triu(np.ones((1, 1, i, j), dtype=np.float32), j - i + 1)
        return Tensor(mask, device=device, dtype=dtype, requires_grad=False)

    def forward(self, q: Tensor, k: Tensor, v: Tensor):
        _check_heads("MultiHeadAttention", q, k, v)
        _, _, queries_len, q_dim = q.shape
        keys_values_len = k.shape[2]
        # BEGIN SOLUTION hw5
        logits = ops.matmul(q, ops.transpose(k)) * (1.0 / np.sqrt(q_dim))
        if self.causal:
            mask = self.create_causal_mask(queries_len, keys_values_len, q.device, logits.dtype)
            logits = logits + ops.broadcast_to(mask, logits.shape)
        probs = self.dropout(ops.softmax(logits, axis=-1))
        return ops.matmul(probs, v), probs
        # END SOLUTION


class AttentionLayer(Module):
    """Pre-LayerNorm multi-head attention with bias-free projections.

    q (B, Tq, q_features); k (B, Tk, k_features) and v (B, Tk, v_features) default to q
    (self-attention); with other k and v it is cross-attention. Returns
    (B, Tq, out_features); the last attention probabilities are kept as ``self.probs``.
    """

    def __init__(self, q_features, num_head, dim_head, *, k_features=None, v_features=None,
                 out_features=None, dropout=0.0, causal=True, device=None, dtype="float32"):
        super().__init__()
        for name, n in (("q_features", q_features), ("num_head", num_head), ("dim_head", dim_head)):
            _positive_int("AttentionLayer", name, n)
        self.device = device
        self.dtype = dtype
        self.q_features = q_features
        self.k_features = q_features if k_features is None else k_features
        self.v_features = q_features if v_features is None else v_features
        self.out_features = q_features if out_features is None else out_features
        self.num_head = num_head
        self.dim_head = dim_head
        self.probs = None
        # BEGIN SOLUTION hw5
        kw = dict(device=device, dtype=dtype)
        self.prenorm_q = LayerNorm1d(self.q_features, **kw)
        self.prenorm_k = LayerNorm1d(self.k_features, **kw)
        self.prenorm_v = LayerNorm1d(self.v_features, **kw)
        inner_dim = num_head * dim_head
        self.q_projection = Linear(self.q_features, inner_dim, bias=False, **kw)
        self.k_projection = Linear(self.k_features, inner_dim, bias=False, **kw)
        self.v_projection = Linear(self.v_features, inner_dim, bias=False, **kw)
        self.attn = MultiHeadAttention(dropout=dropout, causal=causal, **kw)
        self.out_projection = Linear(inner_dim, self.out_features, bias=False, **kw)
        # END SOLUTION

    def forward(self, q: Tensor, k: Tensor = None, v: Tensor = None) -> Tensor:
        k = q if k is None else k
        v = q if v is None else v
        for name, t, features in (("q", q, self.q_features), ("k", k, self.k_features),
                                  ("v", v, self.v_features)):
            _check_ndim("AttentionLayer", t, 3, f"{name} (batch, time, features)")
            if t.shape[2] != features:
                raise ValueError(f"[AttentionLayer] {name} must have {features} features, "
                                 f"got shape {tuple(t.shape)}")
        if k.shape[:2] != v.shape[:2] or k.shape[0] != q.shape[0]:
            raise ValueError(f"[AttentionLayer] q {tuple(q.shape)}, k {tuple(k.shape)} and v "
                             f"{tuple(v.shape)} must agree in batch, and k and v in time")
        batch_size, queries_len, _ = q.shape
        # BEGIN SOLUTION hw5
        def heads(x, norm, projection):
            b, t, _ = x.shape
            x = projection(norm(x)).reshape((b, t, self.num_head, self.dim_head))
            return ops.transpose(x, (1, 2))

        result, self.probs = self.attn(heads(q, self.prenorm_q, self.q_projection),
                                       heads(k, self.prenorm_k, self.k_projection),
                                       heads(v, self.prenorm_v, self.v_projection))
        result = ops.transpose(result, (1, 2)).reshape(
            (batch_size, queries_len, self.num_head * self.dim_head))
        return self.out_projection(result)
        # END SOLUTION


class TransformerLayer(Module):
    """x + dropout(attention(x)), then x + dropout(MLP(LayerNorm(x))), the MLP
    Linear(q_features, hidden_size) -> ReLU -> dropout -> Linear(hidden_size, q_features)."""

    def __init__(self, q_features, num_head, dim_head, hidden_size, *, dropout=0.0, causal=True,
                 device=None, dtype="float32"):
        super().__init__()
        _positive_int("TransformerLayer", "hidden_size", hidden_size)
        self.device = device
        self.dtype = dtype
        # BEGIN SOLUTION hw5
        kw = dict(device=device, dtype=dtype)
        self.attn = AttentionLayer(q_features, num_head, dim_head, dropout=dropout, causal=causal, **kw)
        self.layernorm = LayerNorm1d(q_features, **kw)
        self.linear1 = Linear(q_features, hidden_size, **kw)
        self.linear2 = Linear(hidden_size, q_features, **kw)
        self.relu = ReLU()
        self.dropout = Dropout(dropout)
        # END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        _check_ndim("TransformerLayer", x, 3, "(batch, time, features)")
        # BEGIN SOLUTION hw5
        x = x + self.dropout(self.attn(x))
        hidden = self.dropout(self.relu(self.linear1(self.layernorm(x))))
        return x + self.dropout(self.linear2(hidden))
        # END SOLUTION


class Transformer(Module):
    """A learned positional embedding added to the input, then ``num_layers``
    TransformerLayers. Input (T, B, embedding_size), or (B, T, ...) with
    ``batch_first``; ``forward(x, h=None)`` -> (output of the same layout, zeros_like(x)),
    the second value standing in for a recurrent state so it drops into LanguageModel."""

    def __init__(self, embedding_size, hidden_size, num_layers, *, num_head=8, dim_head=32,
                 dropout=0.0, causal=True, device=None, dtype="float32", batch_first=False,
                 sequence_len=2048):
        super().__init__()
        _positive_int("Transformer", "num_layers", num_layers)
        _positive_int("Transformer", "sequence_len", sequence_len)
        self.device = device
        self.dtype = dtype
        self.batch_first = batch_first
        self.sequence_len = sequence_len
        # BEGIN SOLUTION hw5
        kw = dict(device=device, dtype=dtype)
        self.positional_embedding = Embedding(sequence_len, embedding_size, **kw)
        self.layers = Sequential(*[
            TransformerLayer(embedding_size, num_head, dim_head, hidden_size, dropout=dropout,
                             causal=causal, **kw) for _ in range(num_layers)])
        # END SOLUTION

    def forward(self, x: Tensor, h=None):
        _check_ndim("Transformer", x, 3, "(time, batch, features)" if not self.batch_first
                    else "(batch, time, features)")
        if not self.batch_first:
            x = ops.transpose(x, (0, 1))
        if x.shape[1] > self.sequence_len:
            raise ValueError(f"[Transformer] sequence of length {x.shape[1]} is longer than "
                             f"sequence_len={self.sequence_len}")
        # BEGIN SOLUTION hw5
        batch_size, seq_len, features = x.shape
        positions = Tensor(np.arange(seq_len).reshape(seq_len, 1), device=x.device, dtype="int64")
        pos = self.positional_embedding(positions).reshape((1, seq_len, features))
        x = self.layers(x + ops.broadcast_to(pos, x.shape))
        # END SOLUTION
        if not self.batch_first:
            x = ops.transpose(x, (0, 1))
        return x, init.zeros_like(x)
