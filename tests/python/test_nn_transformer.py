"""The course's attention and transformer modules (nn.MultiHeadAttention, AttentionLayer,
TransformerLayer, Transformer) and LanguageModel(seq_model='transformer') against the same
networks written in PyTorch from the same weights, on every device; the seeded
initialisation order and dropout draws; gradients by finite differences in float64.

All of it is homework 5 (part 2); argument errors are framework code, without a mark.
"""
import numpy as np
import pytest

import needle as ndl
import needle.nn as nn
from needle.apps.models import LanguageModel

from gradcheck import DEVICES, check_gradients, close

torch = pytest.importorskip("torch")
F = torch.nn.functional
hw5 = pytest.mark.hw5
DEVICE_IDS = ["cpu", "cuda"]


def T(x, device, requires_grad=False, dtype="float32"):
    return ndl.Tensor(np.asarray(x), device=device, dtype=dtype, requires_grad=requires_grad)


def tt(x, requires_grad=False):
    t = torch.tensor(x.numpy() if hasattr(x, "numpy") else np.asarray(x))
    return t.requires_grad_(requires_grad)


# --- PyTorch twins, reading needle's weights ---

def torch_attention(q, k, v, causal):
    logits = q @ k.transpose(-1, -2) / np.sqrt(q.shape[-1])
    if causal:
        tq, tk = logits.shape[-2:]
        hidden = torch.ones(tq, tk).triu(tk - tq + 1)  # the course's additive mask
        logits = logits + hidden * -np.finfo(np.float32).max
    probs = logits.softmax(-1)
    return probs @ v, probs


class TorchWeights:
    """needle parameter -> torch leaf with requires_grad, remembered for the grad checks."""

    def __init__(self):
        self.pairs = []

    def __call__(self, param):
        t = tt(param, requires_grad=True)
        self.pairs.append((param, t))
        return t

    def check_grads(self, rtol=1e-3):
        for i, (param, t) in enumerate(self.pairs):
            close(param.grad, t.grad, rtol, f"grad of parameter {i} {tuple(param.shape)}")


def torch_layer_norm(x, ln, w):
    return F.layer_norm(x, (x.shape[-1],), w(ln.weight), w(ln.bias), ln.eps)


def torch_attention_layer(layer, q, k, v, w):
    def heads(x, norm, proj):
        b, t, _ = x.shape
        y = torch_layer_norm(x, norm, w) @ w(proj.weight)
        return y.reshape(b, t, layer.num_head, layer.dim_head).transpose(1, 2)

    out, _ = torch_attention(heads(q, layer.prenorm_q, layer.q_projection),
                             heads(k, layer.prenorm_k, layer.k_projection),
                             heads(v, layer.prenorm_v, layer.v_projection), layer.attn.causal)
    b, tq = q.shape[:2]
    return out.transpose(1, 2).reshape(b, tq, -1) @ w(layer.out_projection.weight)


def torch_linear(x, lin, w):
    return x @ w(lin.weight) + w(lin.bias)


def torch_transformer_layer(layer, x, w):
    x = x + torch_attention_layer(layer.attn, x, x, x, w)
    hidden = torch.relu(torch_linear(torch_layer_norm(x, layer.layernorm, w), layer.linear1, w))
    return x + torch_linear(hidden, layer.linear2, w)


# --- MultiHeadAttention ---

@hw5
@pytest.mark.parametrize("device", DEVICES, ids=DEVICE_IDS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("tq,tk", [(5, 5), (3, 7), (6, 4)])
def test_multi_head_attention_matches_torch(device, causal, tq, tk):
    np.random.seed(0)
    q, k, v = (np.random.randn(2, 3, t, 8).astype(np.float32) for t in (tq, tk, tk))
    xs = [T(a, device, requires_grad=True) for a in (q, k, v)]
    result, probs = nn.MultiHeadAttention(causal=causal, device=device)(*xs)
    ts = [tt(a, requires_grad=True) for a in (q, k, v)]
    want, want_probs = torch_attention(*ts, causal)
    close(probs, want_probs, err_msg="probs")
    close(result, want, err_msg="result")
    c = np.random.randn(*want.shape).astype(np.float32)
    (result * T(c, device)).sum().backward()
    (want * torch.tensor(c)).sum().backward()
    for name, x, t in zip("qkv", xs, ts):
        close(x.grad, t.grad, 1e-3, f"d{name}")


def test_multi_head_attention_causal_mask_is_bottom_right_aligned():  # given code: no mark
    mask = nn.MultiHeadAttention.create_causal_mask(2, 4).numpy()[0, 0]
    # query 0 sees keys 0..2, query 1 (the last) sees every key
    assert (mask[0, :3] == 0).all() and mask[0, 3] < -1e38 and (mask[1] == 0).all()


@hw5
def test_multi_head_attention_dropout_uses_the_course_draws():
    np.random.seed(1)
    q, k, v = (np.random.randn(2, 2, 4, 8).astype(np.float32) for _ in range(3))
    attn = nn.MultiHeadAttention(dropout=0.5)
    np.random.seed(7)
    result, probs = attn(T(q, None), T(k, None), T(v, None))
    np.random.seed(7)
    keep = np.random.rand(2, 2, 4, 4) < 0.5
    _, clean = torch_attention(tt(q), tt(k), tt(v), causal=False)
    close(probs, clean.numpy() * keep / 0.5, err_msg="dropped probs")
    close(result, probs.numpy() @ v, err_msg="result uses the dropped probs")
    attn.eval()
    _, probs = attn(T(q, None), T(k, None), T(v, None))
    close(probs, clean, err_msg="eval: no dropout")


# --- AttentionLayer ---

@hw5
@pytest.mark.parametrize("device", DEVICES, ids=DEVICE_IDS)
@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_layer_matches_torch(device, causal):
    np.random.seed(2)
    layer = nn.AttentionLayer(12, 3, 4, causal=causal, device=device)
    x = np.random.randn(2, 6, 12).astype(np.float32)
    xn = T(x, device, requires_grad=True)
    y = layer(xn)
    w = TorchWeights()
    xt = tt(x, requires_grad=True)
    want = torch_attention_layer(layer, xt, xt, xt, w)
    close(y, want, err_msg="forward")
    close(layer.probs.sum(axes=(3,)), np.ones((2, 3, 6)), err_msg="probs rows sum to 1")
    c = np.random.randn(*want.shape).astype(np.float32)
    (y * T(c, device)).sum().backward()
    (want * torch.tensor(c)).sum().backward()
    close(xn.grad, xt.grad, 1e-3, "dx")
    w.check_grads()


@hw5
@pytest.mark.parametrize("device", DEVICES, ids=DEVICE_IDS)
def test_cross_attention_layer_matches_torch(device):
    np.random.seed(3)
    layer = nn.AttentionLayer(10, 2, 6, k_features=7, v_features=5, out_features=9,
                              causal=False, device=device)
    q, k, v = (np.random.randn(3, t, f).astype(np.float32) for t, f in ((4, 10), (8, 7), (8, 5)))
    y = layer(*(T(a, device) for a in (q, k, v)))
    assert y.shape == (3, 4, 9)
    close(y, torch_attention_layer(layer, tt(q), tt(k), tt(v), TorchWeights()), err_msg="forward")


@hw5
def test_attention_layer_parameters_follow_the_course_order():
    """Seeded: LayerNorms (no draws), then q, k, v and out projections by kaiming_uniform."""
    np.random.seed(4)
    layer = nn.AttentionLayer(6, 2, 5, out_features=3)
    np.random.seed(4)
    inner = 10
    for name, (fan_in, fan_out) in (("q_projection", (6, inner)), ("k_projection", (6, inner)),
                                    ("v_projection", (6, inner)), ("out_projection", (inner, 3))):
        bound = np.sqrt(2) * np.sqrt(3 / fan_in)
        want = (np.random.rand(fan_in, fan_out) * 2 * bound - bound).astype(np.float32)
        close(getattr(layer, name).weight, want, 1e-6, name)
        assert getattr(layer, name).bias is None
    assert len(layer.parameters()) == 3 * 2 + 4


@hw5
def test_attention_layer_gradients_by_finite_differences():
    np.random.seed(5)
    layer = nn.AttentionLayer(4, 2, 3, k_features=3, causal=True, dtype="float64")
    q = ndl.Tensor(np.random.randn(1, 3, 4), dtype="float64", requires_grad=True)
    k = ndl.Tensor(np.random.randn(1, 4, 3), dtype="float64", requires_grad=True)
    v = ndl.Tensor(np.random.randn(1, 4, 4), dtype="float64", requires_grad=True)
    check_gradients(layer, q, k, v)


# --- TransformerLayer, Transformer, LanguageModel ---

@hw5
@pytest.mark.parametrize("device", DEVICES, ids=DEVICE_IDS)
def test_transformer_layer_matches_torch(device):
    np.random.seed(6)
    layer = nn.TransformerLayer(8, 2, 4, 16, device=device)
    x = np.random.randn(2, 5, 8).astype(np.float32)
    xn = T(x, device, requires_grad=True)
    y = layer(xn)
    w = TorchWeights()
    xt = tt(x, requires_grad=True)
    want = torch_transformer_layer(layer, xt, w)
    close(y, want, err_msg="forward")
    y.sum().backward()
    want.sum().backward()
    close(xn.grad, xt.grad, 1e-3, "dx")
    w.check_grads()


@hw5
@pytest.mark.parametrize("device", DEVICES, ids=DEVICE_IDS)
@pytest.mark.parametrize("batch_first", [False, True])
def test_transformer_matches_torch(device, batch_first):
    np.random.seed(7)
    model = nn.Transformer(8, 12, 2, num_head=2, dim_head=4, batch_first=batch_first,
                           sequence_len=10, device=device)
    x = np.random.randn(6, 3, 8).astype(np.float32)  # (T, B, F) or, batch_first, (B=6, T=3, F)
    out, h = model(T(x, device))
    assert out.shape == x.shape and h.shape == x.shape and not h.numpy().any()
    w = TorchWeights()
    xt = tt(x if batch_first else x.transpose(1, 0, 2))
    xt = xt + w(model.positional_embedding.weight)[: xt.shape[1]]
    for layer in model.layers.modules:
        xt = torch_transformer_layer(layer, xt, w)
    close(out, xt if batch_first else xt.transpose(0, 1), err_msg="forward")


@hw5
def test_transformer_is_causal():
    """A causal model's output at position t ignores the inputs after t."""
    np.random.seed(8)
    model = nn.Transformer(8, 8, 1, num_head=2, dim_head=4, batch_first=True)
    x = np.random.randn(1, 6, 8).astype(np.float32)
    changed = x.copy()
    changed[:, 4:] += 1.0
    a, _ = model(T(x, None))
    b, _ = model(T(changed, None))
    close(a.numpy()[:, :4], b.numpy()[:, :4], 1e-5, "positions before the change")
    assert np.abs(a.numpy()[:, 4:] - b.numpy()[:, 4:]).max() > 1e-3


@hw5
def test_transformer_seeded_initialisation_reproduces():
    def build():
        np.random.seed(9)
        return nn.Transformer(8, 16, 2, num_head=2, dim_head=4, sequence_len=12)

    a, b = build(), build()
    np.random.seed(9)
    close(a.positional_embedding.weight, np.random.randn(12, 8).astype(np.float32), 1e-6,
          "the positional embedding is drawn first")
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


@hw5
@pytest.mark.parametrize("device", DEVICES, ids=DEVICE_IDS)
def test_transformer_language_model_learns(device):
    np.random.seed(10)
    vocab, seq_len, bs = 11, 8, 4
    model = LanguageModel(16, vocab, 32, num_layers=2, seq_model="transformer", seq_len=seq_len,
                          device=device)
    assert model.linear.weight.shape == (16, vocab)
    data = np.random.randint(0, vocab, (seq_len + 1, bs))
    x = T(data[:-1].astype(np.float32), device)
    y = T(data[1:].reshape(-1), device, dtype="int64")
    opt = ndl.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.SoftmaxLoss()
    losses = []
    for _ in range(30):
        logits, h = model(x)
        assert logits.shape == (seq_len * bs, vocab)
        loss = loss_fn(logits, y)
        opt.reset_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.numpy()))
    assert losses[-1] < 0.5 * losses[0], losses


# --- argument errors (framework code) ---

def test_attention_errors_name_the_module_and_shapes():
    with pytest.raises(ValueError, match=r"\[MultiHeadAttention\].*\(2, 2, 3, 4\)"):
        nn.MultiHeadAttention()(*(ndl.Tensor(np.zeros(s)) for s in ((2, 2, 3, 4), (2, 2, 3, 5), (2, 2, 3, 5))))
    layer = nn.AttentionLayer(6, 2, 3)
    with pytest.raises(ValueError, match=r"\[AttentionLayer\].*6 features.*\(1, 2, 5\)"):
        layer(ndl.Tensor(np.zeros((1, 2, 5))))
    with pytest.raises(ValueError, match=r"\[Transformer\].*longer than sequence_len=4"):
        nn.Transformer(6, 8, 1, num_head=2, dim_head=3, sequence_len=4)(ndl.Tensor(np.zeros((5, 1, 6))))
    with pytest.raises(ValueError, match=r"\[LanguageModel\] seq_model"):
        LanguageModel(4, 10, 8, seq_model="gru")
