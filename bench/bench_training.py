"""Training benchmark: MLPResNet(784, 100, 3 blocks) with Adam at batch 100, needle vs
the same model in PyTorch CPU (1 and 2 threads), printed side by side with ratios.

    PYTHONPATH=python /usr/bin/python3 bench/bench_training.py [--steps N] [--no-epoch]

Two measurements per framework:
  step   one training step (forward, loss, backward, Adam update) on a fixed batch:
         median over --steps steps after a warm-up;
  epoch  one full pass over Fashion-MNIST's 60,000 training images (shuffled batches
         from the framework's own data pipeline), as the demo trains.
Fashion-MNIST is read from /usr/share/datasets/fashion-mnist when present; otherwise
random images of the same size are used (the timings do not depend on the values).
Ratios are needle's time over PyTorch's at its best thread count (< 1: needle faster).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))  # PYTHONPATH wins
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import StealMeter  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"
BATCH, HIDDEN, BLOCKS = 100, 100, 3


def load_data():
    img = os.path.join(DATA, "train-images-idx3-ubyte.gz")
    lab = os.path.join(DATA, "train-labels-idx1-ubyte.gz")
    if os.path.isfile(img) and os.path.isfile(lab):
        from needle.apps.simple_ml import parse_mnist

        X, y = parse_mnist(img, lab)
        return X, y.astype(np.int64), "Fashion-MNIST"
    rng = np.random.RandomState(0)
    return rng.rand(60000, 784).astype(np.float32), rng.randint(0, 10, 60000), "random images"


def timed(fn, steps, budget_s=20.0):
    """Per-call wall times of fn: 10 warm-up calls, then up to `steps` calls or `budget_s`."""
    for _ in range(10):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < steps and (len(times) < 5 or time.perf_counter() - start < budget_s):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def timed_epoch(name, step_s, n, run_epoch, limit_s=150.0):
    """Wall time of run_epoch(), or NaN (with a note) when the step time predicts > limit_s."""
    estimate = step_s * n / BATCH
    if estimate > limit_s:
        print(f"  {name}: epoch skipped, estimated {estimate:.0f} s (are the CPUs busy with other work?)")
        return float("nan")
    t = time.perf_counter()
    run_epoch()
    return time.perf_counter() - t


def set_needle_threads(n):
    import needle as ndl

    for owner in (ndl, getattr(ndl, "backend_ndarray", None)):
        fn = getattr(owner, "set_num_threads", None)
        if fn is not None:
            fn(n)
            return True
    return False


def bench_needle(X, y, steps, epoch):
    import needle as ndl
    import needle.data
    import needle.nn as nn
    import needle.optim
    from needle.apps.mlp_resnet import MLPResNet

    np.random.seed(0)
    model = MLPResNet(784, HIDDEN, num_blocks=BLOCKS)
    opt = ndl.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.SoftmaxLoss()
    model.train()

    def step(xb, yb):
        opt.reset_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    xb = ndl.Tensor(X[:BATCH], requires_grad=False)
    yb = ndl.Tensor(y[:BATCH], requires_grad=False)
    result = {"step": statistics.median(timed(lambda: step(xb, yb).numpy(), steps))}

    def run_epoch():
        for xb, yb in ndl.data.DataLoader(ndl.data.NDArrayDataset(X, y), BATCH, shuffle=True):
            step(xb, yb).numpy()

    if epoch:
        result["epoch"] = timed_epoch("needle", result["step"], len(X), run_epoch)
    return result


def bench_torch(X, y, steps, epoch, threads):
    import torch
    import torch.nn as tnn

    torch.set_num_threads(threads)
    torch.manual_seed(0)

    class Residual(tnn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, x):
            return self.fn(x) + x

    def block(dim, hidden):
        return tnn.Sequential(
            Residual(tnn.Sequential(tnn.Linear(dim, hidden), tnn.BatchNorm1d(hidden), tnn.ReLU(), tnn.Dropout(0.1),
                                    tnn.Linear(hidden, dim), tnn.BatchNorm1d(dim))),
            tnn.ReLU(),
        )

    model = tnn.Sequential(tnn.Linear(784, HIDDEN), tnn.ReLU(), *[block(HIDDEN, HIDDEN // 2) for _ in range(BLOCKS)],
                           tnn.Linear(HIDDEN, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step(xb, yb):
        opt.zero_grad()
        loss = tnn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    xb, yb = torch.from_numpy(X[:BATCH]), torch.from_numpy(y[:BATCH])
    result = {"step": statistics.median(timed(lambda: step(xb, yb).item(), steps))}

    def run_epoch():
        perm = np.random.permutation(len(X))
        for i in range(0, len(X), BATCH):
            idx = perm[i : i + BATCH]
            step(torch.from_numpy(X[idx]), torch.from_numpy(y[idx])).item()

    if epoch:
        result["epoch"] = timed_epoch(f"pytorch, {threads} thread(s)", result["step"], len(X), run_epoch)
    return result


def needle_in_subprocess(threads, args):
    """Run the needle measurement in a child whose OpenMP runtime starts with `threads`
    threads (OMP_NUM_THREADS is read once, when the runtime loads)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, os.path.abspath(__file__), "--needle-only", str(threads), "--steps", str(args.steps)]
    if args.no_epoch:
        cmd.append("--no-epoch")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"needle benchmark failed:\n{out.stderr}")
    for line in out.stdout.splitlines():
        if line.startswith("  "):
            print(line)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200, help="timed steps for the per-step median (default 200)")
    p.add_argument("--no-epoch", action="store_true", help="skip the full-epoch measurement")
    p.add_argument("--needle-only", type=int, metavar="THREADS", help=argparse.SUPPRESS)
    args = p.parse_args()
    X, y, source = load_data()
    epoch = not args.no_epoch
    if args.needle_only:
        set_needle_threads(args.needle_only)
        print(json.dumps(bench_needle(X, y, args.steps, epoch)))
        return
    print(f"MLPResNet(784, {HIDDEN}, {BLOCKS} blocks), Adam, batch {BATCH}; data: {source} ({len(X):,} images); "
          f"{os.cpu_count()} CPUs")

    rows = []  # (name, {"step": s, "epoch": s})
    import torch

    steal = StealMeter()
    torch_threads = [1, 2] if (os.cpu_count() or 1) >= 2 else [1]
    for n in torch_threads:
        rows.append((f"pytorch {torch.__version__} ({n} thread{'s' if n > 1 else ''})", bench_torch(X, y, args.steps, epoch, n)))
    best = {k: min(r[k] for _, r in rows if r[k] == r[k]) for k in rows[0][1]}

    needle_rows = []
    for n in torch_threads:
        needle_rows.append((f"needle ({n} thread{'s' if n > 1 else ''})", needle_in_subprocess(n, args)))
    print()
    header = f"{'':34s} {'step (ms)':>10s} {'vs best torch':>14s}"
    if epoch:
        header += f" {'epoch (s)':>10s} {'vs best torch':>14s} {'images/s':>10s}"
    print(header)
    for name, r in rows + needle_rows:
        line = f"{name:34s} {r['step'] * 1e3:10.2f} {r['step'] / best['step']:13.2f}x"
        if epoch:
            line += f" {r['epoch']:10.2f} {r['epoch'] / best['epoch']:13.2f}x {len(X) / r['epoch']:10,.0f}"
        print(line)
    print(steal.report())


if __name__ == "__main__":
    main()
