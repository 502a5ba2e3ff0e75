"""CNN benchmark: needle vs PyTorch (CPU) side by side, in one run.

    PYTHONPATH=python /usr/bin/python3 bench/bench_cnn.py [--quick]

Cases (float32, NCHW modules, Adam steps include the update):
  * ResNet9 (needle.apps.models) training step, batch 128 of 3x32x32;
  * conv 64 -> 64, 3x3, 28x28, batch 64, forward + both gradients (also as GFLOP/s);
  * FashionResNet(32), the main demo's CNN, training step, batch 128 of 1x28x28 (an epoch
    of Fashion-MNIST is 469 of them).
PyTorch runs the same networks (torch.nn, oneDNN convolutions) at 1 and 2 threads, its
better time counts; needle runs in a child process that never imports PyTorch; the sides
alternate for three rounds, each keeping its best (see timing.compare).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import needle as ndl  # noqa: E402
import needle.nn as nn  # noqa: E402
import needle.optim  # noqa: E402,F401
from needle.apps.models import FashionResNet, ResNet9  # noqa: E402
from timing import compare, training_step, torch_unless_child  # noqa: E402

torch = torch_unless_child()


# ------------------------------------------------------------------ PyTorch twins
def torch_conv_bn(a, b, k, s):
    tn = torch.nn
    return tn.Sequential(tn.Conv2d(a, b, k, s, k // 2), tn.BatchNorm2d(b), tn.ReLU())


def torch_residual(fn):
    class Residual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fn = fn

        def forward(self, x):
            return self.fn(x) + x

    return Residual()


def torch_resnet9():
    tn, cbn = torch.nn, torch_conv_bn
    return tn.Sequential(
        cbn(3, 16, 7, 4), cbn(16, 32, 3, 2),
        torch_residual(tn.Sequential(cbn(32, 32, 3, 1), cbn(32, 32, 3, 1))),
        cbn(32, 64, 3, 2), cbn(64, 128, 3, 2),
        torch_residual(tn.Sequential(cbn(128, 128, 3, 1), cbn(128, 128, 3, 1))),
        tn.Flatten(), tn.Linear(128, 128), tn.ReLU(), tn.Linear(128, 10))


def torch_fashion_resnet(w):
    tn, cbn = torch.nn, torch_conv_bn

    def residual(c):
        return torch_residual(tn.Sequential(cbn(c, c, 3, 1), cbn(c, c, 3, 1)))

    return tn.Sequential(cbn(1, w, 3, 1), cbn(w, w, 3, 2), residual(w), cbn(w, 2 * w, 3, 2),
                         residual(2 * w), tn.AvgPool2d(7), tn.Flatten(), tn.Linear(2 * w, 10))


# ------------------------------------------------------------------ cases
def classifier_step(make_needle, make_torch, shape, batch=128):
    rng = np.random.default_rng(0)
    x = rng.random((batch,) + shape, dtype=np.float32)
    return training_step(torch, make_needle, make_torch, x, rng.integers(0, 10, batch))


def conv_layer(batch=64, c=64, hw=28, k=3):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, c, hw, hw)).astype(np.float32)
    conv = nn.Conv(c, c, k)
    X = ndl.Tensor(x)

    def needle_fn():
        X.grad = conv.weight.grad = conv.bias.grad = None
        conv(X).sum().backward()

    if torch is None:
        return needle_fn, None
    tconv = torch.nn.Conv2d(c, c, k, padding=k // 2)
    tx = torch.tensor(x, requires_grad=True)

    def torch_fn():
        tx.grad = None
        tconv.zero_grad()
        tconv(tx).sum().backward()

    return needle_fn, torch_fn


CONV_NAME = "conv 64->64 3x3 28x28 batch 64, fwd + bwd"
CONV_FLOP = 3 * 2 * 64 * 28 * 28 * 64 * 64 * 9  # forward, input and weight gradients
CASES = [
    ("ResNet9 training step, batch 128 of 3x32x32, Adam",
     lambda: classifier_step(ResNet9, torch_resnet9, (3, 32, 32))),
    (CONV_NAME, conv_layer),
    ("FashionResNet(32) training step, batch 128 (x469 = epoch)",
     lambda: classifier_step(lambda: FashionResNet(32), lambda: torch_fashion_resnet(32), (1, 28, 28))),
]

if __name__ == "__main__":
    compare(__file__, CASES, torch, rates={CONV_NAME: (CONV_FLOP / 1e9, "GFLOP/s")})
