"""Group-norm benchmark: needle's fused ops.group_norm vs torch.nn.GroupNorm.

    PYTHONPATH=python /usr/bin/python3 bench/bench_group_norm.py [--quick]

Cases (float32, x (64, 64, 28, 28), 8 and 32 groups; one step is y = norm(x) and
y.backward(c) for a fixed upstream gradient c, into x, weight and bias, so only the norm's
two passes are timed): needle's nn.GroupNorm on the fused
CPU kernels "group_norm" and "group_norm_grad", and with those kernels off (the composite
homework 6 writes, from reshape, summation and broadcast_to), against PyTorch 1.13's
torch.nn.GroupNorm at its better thread count (1 or 2), each side in its own process
(timing.compare).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import needle as ndl  # noqa: E402
from needle import _needle  # noqa: E402
from timing import compare, torch_unless_child  # noqa: E402

torch = torch_unless_child()

SHAPE = (64, 64, 28, 28)


def arrays():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SHAPE, dtype=np.float32) * 2 + 1
    c = rng.standard_normal(SHAPE, dtype=np.float32)
    return x, c


def needle_step(groups, fused=True):
    x, c = arrays()
    m = ndl.nn.GroupNorm(groups, SHAPE[1])
    X, C = ndl.Tensor(x, requires_grad=True), ndl.Tensor(c)

    def step():
        X.grad = m.weight.grad = m.bias.grad = None
        m(X).backward(C)

    if fused:
        return step

    def composite():
        with _needle.kernels.disabled("group_norm", "group_norm_grad", device=ndl.cpu()):
            step()

    return composite


def torch_step(groups):
    x, c = arrays()
    m = torch.nn.GroupNorm(groups, SHAPE[1])
    X, C = torch.tensor(x, requires_grad=True), torch.tensor(c)

    def step():
        X.grad = m.weight.grad = m.bias.grad = None
        m(X).backward(C)

    return step


def case(groups, fused=True):
    return lambda: (needle_step(groups, fused), torch_step(groups) if torch else None)


CASES = [
    (f"group_norm {SHAPE} G8 fused, fwd + bwd", case(8)),
    (f"group_norm {SHAPE} G32 fused, fwd + bwd", case(32)),
    (f"group_norm {SHAPE} G8 composite (kernels off)", case(8, fused=False)),
]

if __name__ == "__main__":
    compare(__file__, CASES, torch,
            speedups=[(CASES[0][0], CASES[2][0])])
