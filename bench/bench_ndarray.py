"""NDArray benchmark: needle vs numpy side by side, in one run.

    make bench            # or: PYTHONPATH=python /usr/bin/python3 bench/bench_ndarray.py

Prints float32 matmul GFLOP/s (256, 1024, 2048 square and one batched case), and GB/s of a
broadcast add and of a one-axis sum, with the ratio needle / numpy (higher is better).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
from needle import backend_ndarray as nd  # noqa: E402
from timing import StealMeter, best_times  # noqa: E402


def row(name, unit, work, needle_fn, numpy_fn):
    t_needle, t_numpy = best_times([needle_fn, numpy_fn], min_time=0.6)
    rate_needle, rate_numpy = work / t_needle / 1e9, work / t_numpy / 1e9
    print(f"{name:<34} {rate_needle:>10.1f} {rate_numpy:>10.1f} {unit:<7} {rate_needle / rate_numpy:>6.2f}x")


def main():
    device = nd.cpu()
    steal = StealMeter()
    print(f"needle vs numpy {np.__version__}, float32, {os.cpu_count()} cores")
    print(f"{'case':<34} {'needle':>10} {'numpy':>10} {'unit':<7} {'ratio':>7}")
    for n in (256, 1024, 2048):
        x, y = np.random.randn(n, n).astype("float32"), np.random.randn(n, n).astype("float32")
        a, b = nd.array(x, device=device), nd.array(y, device=device)
        row(f"matmul {n}x{n}", "GFLOP/s", 2 * n**3, lambda: a @ b, lambda: x @ y)
    x, y = np.random.randn(16, 256, 256).astype("float32"), np.random.randn(16, 256, 256).astype("float32")
    a, b = nd.array(x, device=device), nd.array(y, device=device)
    row("batched matmul 16x(256x256)", "GFLOP/s", 2 * 16 * 256**3, lambda: a @ b, lambda: x @ y)

    x, y = np.random.randn(4096, 1).astype("float32"), np.random.randn(1, 4096).astype("float32")
    a, b = nd.array(x, device=device), nd.array(y, device=device)
    row("broadcast add (4096,1)+(1,4096)", "GB/s", 4096 * 4096 * 4, lambda: a + b, lambda: x + y)
    x = np.random.randn(4096, 4096).astype("float32")
    a = nd.array(x, device=device)
    row("add (4096,4096)+(4096,4096)", "GB/s", 3 * 4096 * 4096 * 4, lambda: a + a, lambda: x + x)
    row("sum axis=0 of 4096x4096", "GB/s", 4096 * 4096 * 4, lambda: a.sum(axis=0), lambda: x.sum(axis=0))
    row("sum axis=1 of 4096x4096", "GB/s", 4096 * 4096 * 4, lambda: a.sum(axis=1), lambda: x.sum(axis=1))
    xt = a.permute((1, 0))
    row("compact of a 4096x4096 transpose", "GB/s", 2 * 4096 * 4096 * 4,
        lambda: xt.compact(), lambda: np.ascontiguousarray(x.T))
    print(steal.report())


if __name__ == "__main__":
    main()
