"""Autograd benchmark: needle vs PyTorch (CPU) side by side, in one run.

    PYTHONPATH=python /usr/bin/python3 bench/bench_autograd.py [--quick]

Cases (float32):
  * per-op overhead from Python: 10,000 x (a + b) on (16, 16) tensors with requires_grad;
  * a 2-layer MLP (784-512-10, batch 128, softmax loss): forward + backward;
  * conv forward + backward: (32, 32, 32, 64) NHWC input, 3x3 kernel, 64 out channels;
  * the fused row ops, forward + backward, each also with its kernels off (the composite
    the op runs on a device without them): layer_norm (4096, 512), softmax (4096, 1024)
    and nn.SoftmaxLoss on (700, 10000) logits; "fused / composite" lines give the
    same-run speedups.
PyTorch runs at 1 and at 2 threads and the better time is its score; needle runs at its
default thread count in a child process that never imports PyTorch (the two share OpenBLAS
and OpenMP's runtime, which couples their timings in one process). The two sides alternate
for three rounds, each keeping its best. Prints milliseconds and needle / torch (lower is
better; the goals are <= 1.0, 1.0 and 1.5).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import needle as ndl  # noqa: E402
from timing import compare  # noqa: E402

NEEDLE_ONLY = "--needle-only" in sys.argv  # the child process: needle's side only, no torch
torch = None
if not NEEDLE_ONLY:
    try:
        import torch
    except ImportError:  # pragma: no cover
        pass


# ------------------------------------------------------------------ cases
def per_op_overhead(n_ops=10000):
    x = np.random.randn(16, 16).astype(np.float32)
    a, b = ndl.Tensor(x), ndl.Tensor(x)
    ta = torch.tensor(x, requires_grad=True) if torch else None
    tb = torch.tensor(x, requires_grad=True) if torch else None

    def needle_fn():
        for _ in range(n_ops):
            a + b

    def torch_fn():
        for _ in range(n_ops):
            ta + tb

    return needle_fn, torch_fn


def mlp(batch=128, d_in=784, hidden=512, classes=10):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, d_in)).astype(np.float32)
    y = rng.integers(0, classes, batch)
    onehot = np.eye(classes, dtype=np.float32)[y]
    W1 = (rng.standard_normal((d_in, hidden)) / np.sqrt(d_in)).astype(np.float32)
    b1 = np.zeros((1, hidden), np.float32)
    W2 = (rng.standard_normal((hidden, classes)) / np.sqrt(hidden)).astype(np.float32)
    b2 = np.zeros((1, classes), np.float32)

    nX, nY = ndl.Tensor(X, requires_grad=False), ndl.Tensor(onehot, requires_grad=False)
    params = [ndl.Tensor(p) for p in (W1, b1, W2, b2)]

    def needle_fn():
        w1, c1, w2, c2 = params
        h = ndl.relu(nX @ w1 + ndl.broadcast_to(c1, (batch, hidden)))
        logits = h @ w2 + ndl.broadcast_to(c2, (batch, classes))
        loss = (ndl.logsumexp(logits, axes=(1,)).sum() - (logits * nY).sum()) / batch
        for p in params:
            p.grad = None
        loss.backward()

    if torch is None:
        return needle_fn, None
    tX, ty = torch.tensor(X), torch.tensor(y)
    tparams = [torch.tensor(p, requires_grad=True) for p in (W1, b1, W2, b2)]

    def torch_fn():
        w1, c1, w2, c2 = tparams
        logits = torch.relu(tX @ w1 + c1) @ w2 + c2
        loss = torch.nn.functional.cross_entropy(logits, ty)
        for p in tparams:
            p.grad = None
        loss.backward()

    return needle_fn, torch_fn


def conv(shape=(32, 32, 32, 64), k=3, cout=64):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal((k, k, shape[3], cout)) * 0.1).astype(np.float32)
    X, W = ndl.Tensor(x), ndl.Tensor(w)

    def needle_fn():
        X.grad = W.grad = None
        ndl.conv(X, W, stride=1, padding=1).sum().backward()

    if torch is None:
        return needle_fn, None
    tx = torch.tensor(x.transpose(0, 3, 1, 2).copy(), requires_grad=True)
    tw = torch.tensor(w.transpose(3, 2, 0, 1).copy(), requires_grad=True)

    def torch_fn():
        tx.grad = tw.grad = None
        torch.nn.functional.conv2d(tx, tw, padding=1).sum().backward()

    return needle_fn, torch_fn


def _maybe_composite(fn, kernels, composite):
    """fn, or fn run with the fused `kernels` off on the CPU (the op's composite path)."""
    if not composite:
        return fn
    from needle import _needle

    def off():
        with _needle.kernels.disabled(*kernels, device="cpu"):
            fn()

    return off


LN_KERNELS = ("layer_norm", "layer_norm_grad")
SOFTMAX_KERNELS = ("softmax", "softmax_grad")
SCE_KERNELS = ("softmax_cross_entropy", "softmax_cross_entropy_grad")


def layer_norm(shape=(4096, 512), composite=False):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    w, b = rng.standard_normal(shape[-1:]).astype(np.float32), np.zeros(shape[-1:], np.float32)
    c = rng.standard_normal(shape).astype(np.float32)
    X, W, B, C = ndl.Tensor(x), ndl.Tensor(w), ndl.Tensor(b), ndl.Tensor(c, requires_grad=False)

    def needle_fn():
        X.grad = W.grad = B.grad = None
        (ndl.layer_norm(X, W, B) * C).sum().backward()

    if torch is None:
        return _maybe_composite(needle_fn, LN_KERNELS, composite), None
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    tc = torch.tensor(c)

    def torch_fn():
        tx.grad = tw.grad = tb.grad = None
        (torch.nn.functional.layer_norm(tx, shape[-1:], tw, tb) * tc).sum().backward()

    return _maybe_composite(needle_fn, LN_KERNELS, composite), torch_fn


def softmax(shape=(4096, 1024), composite=False):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    c = rng.standard_normal(shape).astype(np.float32)
    X, C = ndl.Tensor(x), ndl.Tensor(c, requires_grad=False)

    def needle_fn():
        X.grad = None
        (ndl.softmax(X) * C).sum().backward()

    if torch is None:
        return _maybe_composite(needle_fn, SOFTMAX_KERNELS, composite), None
    tx, tc = torch.tensor(x, requires_grad=True), torch.tensor(c)

    def torch_fn():
        tx.grad = None
        (torch.softmax(tx, -1) * tc).sum().backward()

    return _maybe_composite(needle_fn, SOFTMAX_KERNELS, composite), torch_fn


def softmax_loss(batch=700, classes=10000, composite=False):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((batch, classes)).astype(np.float32)
    y = rng.integers(0, classes, batch)
    Z, Y = ndl.Tensor(z), ndl.Tensor(y, requires_grad=False)
    loss_fn = ndl.nn.SoftmaxLoss()

    def needle_fn():
        Z.grad = None
        loss_fn(Z, Y).backward()

    if torch is None:
        return _maybe_composite(needle_fn, SCE_KERNELS, composite), None
    tz, ty = torch.tensor(z, requires_grad=True), torch.tensor(y)

    def torch_fn():
        tz.grad = None
        torch.nn.functional.cross_entropy(tz, ty).backward()

    return _maybe_composite(needle_fn, SCE_KERNELS, composite), torch_fn


CASES = [
    ("10,000 x (a + b), (16,16), requires_grad", lambda: per_op_overhead()),
    ("MLP 784-512-10, batch 128, fwd + bwd", lambda: mlp()),
    ("conv (32,32,32,64) 3x3 -> 64, fwd + bwd", lambda: conv()),
    ("layer_norm (4096, 512), fwd + bwd", lambda: layer_norm()),
    ("layer_norm, composite (kernels off)", lambda: layer_norm(composite=True)),
    ("softmax (4096, 1024), fwd + bwd", lambda: softmax()),
    ("softmax, composite (kernels off)", lambda: softmax(composite=True)),
    ("SoftmaxLoss (700, 10000), fwd + bwd", lambda: softmax_loss()),
    ("SoftmaxLoss, composite (kernels off)", lambda: softmax_loss(composite=True)),
]
# (fused case, its composite): printed as the same-run speedup of the fused kernels.
SPEEDUPS = [(CASES[3][0], CASES[4][0]), (CASES[5][0], CASES[6][0]), (CASES[7][0], CASES[8][0])]


if __name__ == "__main__":
    compare(__file__, CASES, torch, speedups=SPEEDUPS)
