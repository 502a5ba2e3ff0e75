"""ops.scaled_dot_product_attention: forward against a float64 numpy reference (random shapes,
every mask kind, causal with Tq < Tk and Tq > Tk, rows with no visible key, huge and
infinite logits), gradients by finite differences in float64, the fused kernels against the
composite, dropout (keep rate, 1 / (1 - p) scaling, the same mask in the backward), and
PyTorch as a second oracle; on every device.

Tests that run the fused kernels grade hw7 (on the CPU the tiled kernel's forward and backward
block loops, on CUDA the three attention kernels); those that run only the composite (kernels
off) test framework code and carry no mark."""
import os
import subprocess
import sys

import numpy as np
import pytest

import needle as ndl
from needle import _needle

from gradcheck import DEVICES, check_gradients, kernels_off

KERNELS = ("attention", "attention_grad")


@pytest.fixture(autouse=True)
def strict_kernels():
    """A cut kernel (homework 7's stub) fails these tests instead of the op composing."""
    with _needle.kernels.strict():
        yield

sdpa = ndl.ops.scaled_dot_product_attention
FUSED = pytest.param("fused", marks=pytest.mark.hw7)
PATHS = [FUSED, "composite"]


def np_attention(q, k, v, mask=None, causal=False, scale=None, keep=None):
    """(out, lse) in float64: rows with no visible key give zeros (lse -inf); rows with a
    +inf logit average the values at those keys (lse +inf). keep: dropout factors."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    tq, tk, d = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = 1 / np.sqrt(d) if scale is None else scale
    with np.errstate(invalid="ignore"):
        s = np.einsum("bhid,bhjd->bhij", q, k) * scale
    if mask is not None:
        mask = np.asarray(mask)
        s = s + (np.where(mask, 0.0, -np.inf) if mask.dtype == bool else mask.astype(np.float64))
    if causal:
        i, j = np.arange(tq)[:, None], np.arange(tk)[None]
        s = np.where(j > i + tk - tq, -np.inf, s)
    m = s.max(-1, keepdims=True) if tk else np.full(s.shape[:-1] + (1,), -np.inf)
    with np.errstate(invalid="ignore"):
        e = np.where(m == np.inf, (s == np.inf).astype(np.float64),
                     np.exp(s - np.where(np.isfinite(m), m, 0)))
    l = e.sum(-1, keepdims=True)
    p = e / np.where(l == 0, 1, l)
    lse = np.where(l == 0, -np.inf, m + np.log(np.where(l == 0, 1, l)))[..., 0]
    if keep is not None:
        p = p * keep
    return p @ v, lse


def np_keep(shape, dropout, seed):
    """The kernels' dropout factors (kernel::attention_keep in needle/kernels.h)."""
    n = np.arange(int(np.prod(shape)), dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (n + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    threshold = int(dropout * (1 << 24) + 0.5)
    return np.where((z >> np.uint64(40)) >= threshold, 1 / (1 - dropout), 0.0).reshape(shape)


def path_context(path, device):
    return _needle.kernels.disabled(*KERNELS, device=device) if path == "composite" else _null()


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def inputs(shape_q, tk, device, dtype="float64", low=-1.0, high=1.0, requires_grad=True):
    b, h, tq, d = shape_q
    arrays = [np.random.uniform(low, high, s) for s in [(b, h, tq, d), (b, h, tk, d), (b, h, tk, d)]]
    tensors = [ndl.Tensor(a, device=device, dtype=dtype, requires_grad=requires_grad) for a in arrays]
    return arrays, tensors


# (name, q shape (B, H, Tq, D), Tk, options): T not a multiple of the 64-row tiles, Tq != Tk,
# D from 16 to 128.
SHAPES = [
    ("one tile", (1, 1, 5, 16), 7, {}),
    ("Tq < Tk causal", (2, 3, 70, 32), 150, dict(causal=True)),
    ("Tq > Tk causal", (1, 2, 150, 24), 70, dict(causal=True)),
    ("Tq == Tk causal", (2, 2, 129, 64), 129, dict(causal=True)),
    ("D 128", (1, 2, 65, 128), 100, {}),
    ("one query vs cache", (2, 4, 1, 64), 200, dict(causal=True)),
    ("scale", (1, 2, 33, 16), 80, dict(scale=0.7)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", SHAPES, ids=[c[0] for c in SHAPES])
def test_forward(case, device, path, dtype):
    _, shape_q, tk, opts = case
    arrays, tensors = inputs(shape_q, tk, device, dtype, low=-2, high=2)
    with path_context(path, device):
        out = sdpa(*tensors, **opts)
    want, _ = np_attention(*arrays, **opts)
    assert out.shape == want.shape and out.dtype == dtype
    tol = 2e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(out.numpy(), want, rtol=tol, atol=tol)


def _masks(b, h, tq, tk):
    rng = np.random.RandomState(3)
    boolean = rng.rand(b, h, tq, tk) > 0.3
    boolean[0, 0, 1] = False  # a row with no visible key
    additive = rng.randn(1, 1, 1, tk) * 3
    additive[..., 2] = -np.inf
    rows = np.where(rng.rand(tq, 1) > 0.5, 0.0, -np.inf)  # whole rows masked, others not
    return {
        "bool (B, H, Tq, Tk)": boolean,
        "bool (Tq, Tk)": rng.rand(tq, tk) > 0.5,
        "bool (B, 1, 1, Tk)": rng.rand(b, 1, 1, tk) > 0.2,
        "float (1, 1, 1, Tk) with -inf": additive,
        "float (B, H, Tq, Tk)": rng.randn(b, h, tq, tk),
        "float (H, Tq, 1)": rng.randn(h, tq, 1),
        "float (Tq, 1) rows of -inf": rows,
        "float (Tk,)": rng.randn(tk),
    }


MASKS = list(_masks(2, 3, 70, 90))


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", MASKS)
def test_masks(kind, device, path, causal):
    b, h, tq, tk, d = 2, 3, 70, 90, 16
    mask = _masks(b, h, tq, tk)[kind]
    arrays, tensors = inputs((b, h, tq, d), tk, device)
    with path_context(path, device):
        out = sdpa(*tensors, mask=ndl.Tensor(mask, device=device, requires_grad=False),
                   causal=causal)
        (out * ndl.Tensor(np.random.randn(*out.shape), device=device)).sum().backward()
    want, _ = np_attention(*arrays, mask=mask, causal=causal)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-12, atol=1e-12)
    for t in tensors:
        assert np.isfinite(t.grad.numpy()).all()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("device", DEVICES)
def test_mask_from_numpy_and_float32_mask_on_float64(device, path):
    arrays, tensors = inputs((1, 2, 9, 8), 11, device)
    mask = np.random.rand(9, 11) > 0.5
    additive = np.random.randn(2, 1, 11).astype(np.float32)
    with path_context(path, device):
        np.testing.assert_allclose(sdpa(*tensors, mask=mask).numpy(),
                                   np_attention(*arrays, mask=mask)[0], atol=1e-12)
        got = sdpa(*tensors, mask=ndl.Tensor(additive, device=device, dtype="float32"))
    np.testing.assert_allclose(got.numpy(), np_attention(*arrays, mask=additive)[0], atol=1e-12)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("device", DEVICES)
def test_rows_with_no_visible_key_are_zero(device, path):
    """Causal with Tq > Tk hides every key from the first Tq - Tk queries; a bool mask hides
    whole rows; Tk = 0 hides everything. Zeros, never NaN, also in the gradients."""
    arrays, tensors = inputs((1, 2, 100, 8), 30, device)
    with path_context(path, device):
        out = sdpa(*tensors, causal=True)
        out.sum().backward()
    assert np.all(out.numpy()[:, :, :70] == 0)
    np.testing.assert_allclose(out.numpy(), np_attention(*arrays, causal=True)[0], atol=1e-12)
    assert all(np.isfinite(t.grad.numpy()).all() for t in tensors)
    assert np.all(tensors[0].grad.numpy()[:, :, :70] == 0)
    _, tensors = inputs((2, 1, 4, 8), 0, device)
    with path_context(path, device):
        out = sdpa(*tensors)
        out.sum().backward()
    assert out.shape == (2, 1, 4, 8) and np.all(out.numpy() == 0)
    assert tensors[0].grad.shape == (2, 1, 4, 8) and tensors[1].grad.shape == (2, 1, 0, 8)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("device", DEVICES)
def test_huge_and_infinite_logits_stay_finite(device, path):
    b, h, tq, tk, d = 1, 2, 70, 80, 16
    arrays, tensors = inputs((b, h, tq, d), tk, device, low=-1, high=1)
    # Logits near +-1e4: the online max subtracts them away.
    with path_context(path, device):
        out = sdpa(*tensors, scale=1e4 / d)
        out.sum().backward()
    np.testing.assert_allclose(out.numpy(), np_attention(*arrays, scale=1e4 / d)[0], atol=1e-9)
    assert all(np.isfinite(t.grad.numpy()).all() for t in tensors)
    # +inf and -inf additive entries: a row with +inf logits averages v at those keys.
    mask = np.zeros((tq, tk))
    mask[:, 5] = -np.inf
    mask[3, [7, 70]] = np.inf
    mask[4, :] = -np.inf
    for t in tensors:
        t.grad = None
    with path_context(path, device):
        out = sdpa(*tensors, mask=ndl.Tensor(mask, device=device))
        out.sum().backward()
    got = out.numpy()
    np.testing.assert_allclose(got, np_attention(*arrays, mask=mask)[0], atol=1e-12)
    np.testing.assert_allclose(got[:, :, 3], (arrays[2][:, :, 7] + arrays[2][:, :, 70]) / 2, atol=1e-12)
    assert np.all(got[:, :, 4] == 0)
    assert all(np.isfinite(t.grad.numpy()).all() for t in tensors)


GRAD_CASES = [
    ("plain", (1, 2, 5, 4), 7, {}),
    ("causal Tq < Tk", (1, 1, 4, 3), 9, dict(causal=True)),
    ("causal Tq > Tk", (1, 1, 9, 3), 4, dict(causal=True)),
    ("two tiles", (1, 1, 70, 2), 67, dict(causal=True)),
    ("bool mask", (2, 1, 5, 3), 6, dict(mask=np.random.RandomState(1).rand(2, 1, 5, 6) > 0.4)),
    ("float mask", (1, 2, 4, 3), 5, dict(mask=np.random.RandomState(2).randn(1, 5))),
    ("dropout", (1, 2, 6, 3), 7, dict(dropout=0.3, seed=1234)),
    ("dropout causal two tiles", (1, 1, 66, 2), 70, dict(dropout=0.5, seed=99, causal=True)),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_gradient(case, device, path):
    """Central differences in float64; with dropout the seed is fixed, so the function is
    deterministic and the backward must redraw the forward's mask to match."""
    _, shape_q, tk, opts = case
    opts = dict(opts)
    if "mask" in opts:
        opts["mask"] = ndl.Tensor(opts["mask"], device=device, requires_grad=False)
    _, tensors = inputs(shape_q, tk, device)
    with path_context(path, device):
        check_gradients(lambda q, k, v: sdpa(q, k, v, **opts), *tensors)


FUSED_CASES = [
    ("causal", (2, 4, 200, 64), 200, dict(causal=True)),
    ("Tq < Tk causal", (1, 3, 70, 64), 260, dict(causal=True)),
    ("few heads", (1, 1, 150, 32), 300, dict(causal=True)),
    ("mask", (2, 3, 100, 16), 130, dict(mask=np.random.RandomState(5).rand(2, 1, 100, 130) > 0.3)),
    ("dropout", (2, 2, 90, 32), 110, dict(dropout=0.2, seed=7, causal=True)),
]


@pytest.mark.hw7
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", FUSED_CASES, ids=[c[0] for c in FUSED_CASES])
def test_fused_matches_composite(case, device, dtype):
    _, shape_q, tk, opts = case
    opts = dict(opts)
    if "mask" in opts:
        opts["mask"] = ndl.Tensor(opts["mask"], device=device, requires_grad=False)
    _, tensors = inputs(shape_q, tk, device, dtype)
    c = np.random.randn(*shape_q)

    def run():
        for t in tensors:
            t.grad = None
        out = sdpa(*tensors, **opts)
        (out * ndl.Tensor(c, device=device, dtype=dtype)).sum().backward()
        return [out.numpy()] + [t.grad.numpy() for t in tensors]

    fused = run()
    with _needle.kernels.disabled(*KERNELS, device=device):
        composed = run()
    tol = 1e-4 if dtype == "float32" else 1e-11
    for got, want in zip(fused, composed):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


SAME_ON_EVERY_THREAD = """
import numpy as np, needle as ndl
ndl.set_num_threads(2)
rng = np.random.default_rng(0)
for dtype in ("float32", "float64"):
    for shape in [(2, 3, 70, 16), (2, 4, 16, 8), (1, 1, 200, 16), (8, 1, 16, 32)]:
        q, k, v = (ndl.Tensor(rng.uniform(-1, 1, shape), dtype=dtype, requires_grad=False)
                   for _ in range(3))
        first = ndl.ops.scaled_dot_product_attention(q, k, v).numpy()
        for _ in range(10):
            again = ndl.ops.scaled_dot_product_attention(q, k, v).numpy()
            assert np.array_equal(again, first), (dtype, shape, float(np.abs(again - first).max()))
print("same")
"""


def test_fused_forward_is_the_same_on_every_thread():
    """The CPU kernel's output does not depend on which thread computed a tile: repeated
    calls on two threads agree bit for bit. (Unaligned scratch tiles made Eigen's exp take a
    scalar prologue on some threads' tiles and not on others. Where malloc puts a tile
    depends on the heap, so the check runs in fresh interpreters whose heaps start at
    different places.)"""
    for pad in range(0, 64, 8):  # environments of other sizes move the heap's start
        env = dict(os.environ, PYTHONPATH=os.path.dirname(ndl.__path__[0]), PAD="x" * pad)
        r = subprocess.run([sys.executable, "-c", SAME_ON_EVERY_THREAD], capture_output=True,
                           text=True, env=env, timeout=300)
        assert r.returncode == 0 and "same" in r.stdout, r.stderr[-2000:]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("device", DEVICES)
def test_dropout_keep_rate_and_scaling(device, path):
    """With q = k = 0 every row of P is uniform, 1 / Tk; with v the identity, out is
    dropout(P) itself: entries 0 or 1 / (Tk (1 - p)), kept at rate 1 - p, the numpy
    re-implementation of the hash's mask exactly."""
    b, h, tq, tk, p = 2, 4, 64, 128, 0.25
    q = ndl.Tensor(np.zeros((b, h, tq, tk)), device=device)
    k = ndl.Tensor(np.zeros((b, h, tk, tk)), device=device)
    v = ndl.Tensor(np.broadcast_to(np.eye(tk), (b, h, tk, tk)).copy(), device=device)
    with path_context(path, device):
        out = sdpa(q, k, v, dropout=p, seed=2024).numpy()
    kept = out != 0
    assert abs(kept.mean() - (1 - p)) < 0.01
    np.testing.assert_allclose(out[kept], 1 / (tk * (1 - p)), rtol=1e-12)
    np.testing.assert_allclose(out, np_keep((b, h, tq, tk), p, 2024) / tk, rtol=1e-12)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("device", DEVICES)
def test_dropout_seed_comes_from_numpy(device, path):
    _, tensors = inputs((1, 2, 20, 8), 30, device)
    with path_context(path, device):
        np.random.seed(5)
        a = sdpa(*tensors, dropout=0.5).numpy()
        np.random.seed(5)
        b = sdpa(*tensors, dropout=0.5).numpy()
        c = sdpa(*tensors, dropout=0.5).numpy()
        state = np.random.get_state()[2]
        sdpa(*tensors)  # no dropout: no draw
        assert np.random.get_state()[2] == state
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("device", DEVICES)
def test_against_torch(device, path):
    torch = pytest.importorskip("torch")
    arrays, tensors = inputs((2, 3, 100, 32), 140, device, dtype="float32")
    mask = np.random.rand(100, 140) > 0.2
    with path_context(path, device):
        out = sdpa(*tensors, mask=mask, causal=True)
        out.sum().backward()
    tq, tk, tv = (torch.tensor(a, dtype=torch.float32, requires_grad=True) for a in arrays)
    i, j = torch.arange(100)[:, None], torch.arange(140)[None]
    allowed = torch.tensor(mask) & (j <= i + 40)
    s = (tq @ tk.transpose(-1, -2) / np.sqrt(32)).masked_fill(~allowed, -float("inf"))
    want = torch.softmax(s, -1) @ tv
    want.sum().backward()
    np.testing.assert_allclose(out.numpy(), want.detach().numpy(), atol=2e-5)
    for t, w in zip(tensors, (tq, tk, tv)):
        np.testing.assert_allclose(t.grad.numpy(), w.grad.numpy(), atol=5e-5)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("device", DEVICES)
def test_op_class_returns_out_and_lse(device, path):
    arrays, tensors = inputs((1, 2, 70, 8), 90, device)
    op = ndl.ops.ScaledDotProductAttention(causal=True, scale=0.5)
    assert isinstance(op, ndl.autograd.TensorTupleOp)
    assert op.causal and op.scale == 0.5 and op.dropout == 0.0
    with path_context(path, device):
        out, lse = op(*tensors).tuple()
    want, want_lse = np_attention(*arrays, causal=True, scale=0.5)
    np.testing.assert_allclose(out.numpy(), want, atol=1e-12)
    np.testing.assert_allclose(lse.numpy(), want_lse, atol=1e-12)
    # lse's gradient too: d lse / d logits = P.
    small = inputs((1, 1, 4, 3), 6, device)[1]
    with path_context(path, device):
        check_gradients(lambda q, k, v: op(q, k, v)[1] + ndl.summation(op(q, k, v)[0], axes=(3,)),
                        *small)


@pytest.mark.parametrize("device", DEVICES)
def test_kernels_registered_and_second_order_is_a_clear_error(device):
    assert _needle.kernels.has("attention", "cpu") and _needle.kernels.has("attention_grad", "cpu")
    q, k, v = inputs((1, 1, 3, 2), 4, device)[1]
    node = sdpa(q, k, v).inputs[0]  # out is item 0 of the op's (out, lse)
    ones = ndl.Tensor(np.ones((1, 1, 3, 2)), device=device)
    grads = node.op.gradient_as_tuple(
        ndl.make_tuple(ones, ndl.Tensor(np.zeros((1, 1, 3)), device=device)), node)
    grad_node = grads[0].inputs[0]
    with pytest.raises(RuntimeError, match=r"\[scaled_dot_product_attention\] .*second order"):
        grad_node.op.gradient_as_tuple(ndl.make_tuple(*grads), grad_node)
