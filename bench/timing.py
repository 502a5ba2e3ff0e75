"""Shared timing helpers of the benchmarks: best mean time per call over interleaved rounds,
and the side-by-side comparison of needle (in a child process) with PyTorch."""
import json
import os
import subprocess
import sys
import time


def best_times(fns, setups=None, repeat=5, min_time=1.0):
    """Seconds per call of each callable in `fns`.

    Each of `repeat` rounds runs every callable in turn (after its optional setup, e.g.
    setting a thread count) until min_time/repeat has passed, so a slow phase of a noisy
    machine falls on all of them alike; each callable's fastest round mean wins."""
    setups = setups or [None] * len(fns)
    for setup, fn in zip(setups, fns):  # warm up
        if setup:
            setup()
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, (setup, fn) in enumerate(zip(setups, fns)):
            if setup:
                setup()
            n, start = 0, time.perf_counter()
            while True:
                fn()
                n += 1
                elapsed = time.perf_counter() - start
                if elapsed > min_time / repeat:
                    break
            best[i] = min(best[i], elapsed / n)
    return best


def best_time(fn, repeat=5, min_time=1.0):
    """Seconds per call of one callable (see best_times)."""
    return best_times([fn], repeat=repeat, min_time=min_time)[0]


class StealMeter:
    """Share of CPU time the hypervisor took from this VM (the "steal" column of
    /proc/stat) between construction and report(): above a few percent, timings are
    disturbed by other tenants of the host. None where /proc/stat has no steal column."""

    def __init__(self):
        self.start = self._read()

    @staticmethod
    def _read():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        return (fields[7], sum(fields)) if len(fields) > 7 else None

    def report(self):
        end = self._read()
        if self.start is None or end is None or end[1] == self.start[1]:
            return "CPU steal: unknown"
        share = (end[0] - self.start[0]) / (end[1] - self.start[1])
        return f"CPU steal during the run: {share:.0%} (time the host gave to other VMs)"


def needle_times_in_child(script, quick):
    """Seconds per case of needle's side, from `script --needle-only` in a fresh process that
    never imports PyTorch: the two frameworks share OpenBLAS (and its worker threads, which
    spin after a product) and OpenMP's runtime, so timing them in one process couples them."""
    cmd = [sys.executable, os.path.abspath(script), "--needle-only"] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"needle benchmark failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def torch_times(torch, cases, kw):
    """(seconds, threads) per case for PyTorch at its better thread count, 1 or 2."""
    saved, results = torch.get_num_threads(), []
    setups = [lambda: torch.set_num_threads(1), lambda: torch.set_num_threads(2)]
    for _, make in cases:
        fn = make()[1]
        t1, t2 = best_times([fn, fn], setups, **kw)
        results.append(min((t1, 1), (t2, 2)))
    torch.set_num_threads(saved)
    return results


def compare(script, cases, torch, rates=None, speedups=(), totals=None):
    """The main of a side-by-side benchmark. `cases`: (name, make) with make() -> (needle_fn,
    torch_fn). In the child (`--needle-only`) prints needle's times as JSON; otherwise
    alternates needle (child) and PyTorch (1 and 2 threads, the better counts) for three
    rounds, each keeping its best, and prints ms and needle / torch. `rates` maps a case
    name to (work per call, unit) to print a rate such as GFLOP/s beside the times;
    `speedups` lists (case, other case) pairs printed as other / case, needle's own speedup;
    `totals` maps a case name to (calls, what) to print the seconds of `calls` calls, such as
    the 50 steps of one sampling run."""
    quick = "--quick" in sys.argv
    kw = dict(repeat=3, min_time=0.3) if quick else dict(repeat=5, min_time=1.5)
    if "--needle-only" in sys.argv:
        print(json.dumps([best_time(make()[0], **kw) for _, make in cases]))
        return
    rates, totals = rates or {}, totals or {}
    steal = StealMeter()
    version = torch.__version__ if torch else "not installed"
    print(f"needle vs torch {version} (CPU, best of 1 and 2 threads), float32, {os.cpu_count()} cores")
    print(f"{'case':<50} {'needle ms':>10} {'torch ms':>10} {'thr':>4} {'ratio':>8}")
    best_needle = [float("inf")] * len(cases)
    best_torch = [(float("inf"), 0)] * len(cases)
    for _ in range(1 if quick else 3):
        best_needle = [min(a, b) for a, b in zip(best_needle, needle_times_in_child(script, quick))]
        if torch is not None:
            best_torch = [min(a, b) for a, b in zip(best_torch, torch_times(torch, cases, kw))]
    for (name, _), t_needle, (t_torch, threads) in zip(cases, best_needle, best_torch):
        if torch is None:
            print(f"{name:<50} {t_needle * 1e3:>10.2f} {'-':>10}")
            continue
        print(f"{name:<50} {t_needle * 1e3:>10.2f} {t_torch * 1e3:>10.2f} {threads:>4} "
              f"{t_needle / t_torch:>7.2f}x")
        if name in rates:
            work, unit = rates[name]
            print(f"{'':<50} {work / t_needle:>10.1f} {work / t_torch:>10.1f}  {unit} "
                  f"({t_torch / t_needle:.2f}x)")
        if name in totals:
            calls, what = totals[name]
            print(f"{'':<50} {calls * t_needle:>9.1f}s {calls * t_torch:>9.1f}s  {what}")
    times = {name: t for (name, _), t in zip(cases, best_needle)}
    for fast, slow in speedups:
        print(f"needle {fast.strip()}: fused / composite = {times[fast] / times[slow]:.2f} "
              f"({times[slow] / times[fast]:.1f}x faster)")
    print(steal.report())


def training_step(torch, make_needle, make_torch, x, y, optimizer="adam", lr=1e-3):
    """(needle_fn, torch_fn): one classifier training step each — forward on x, cross-entropy
    against the integer labels y, backward, an Adam (or "sgd") update — of the models that
    make_needle() and make_torch() build. A forward that returns a tuple (the course's
    LanguageModel: logits and a state) contributes its first item. torch_fn is None
    without PyTorch."""
    import needle as ndl

    model = make_needle()
    opt = (ndl.optim.Adam if optimizer == "adam" else ndl.optim.SGD)(model.parameters(), lr=lr)
    loss_fn = ndl.nn.SoftmaxLoss()
    X, Y = ndl.Tensor(x, requires_grad=False), ndl.Tensor(y, dtype="int64", requires_grad=False)

    def needle_fn():
        out = model(X)
        loss = loss_fn(out[0] if isinstance(out, tuple) else out, Y)
        opt.reset_grad()
        loss.backward()
        opt.step()

    if torch is None:
        return needle_fn, None
    tmodel = make_torch()
    topt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)(tmodel.parameters(), lr=lr)
    tx, ty = torch.tensor(x), torch.tensor(y)

    def torch_fn():
        loss = torch.nn.functional.cross_entropy(tmodel(tx), ty)
        topt.zero_grad()
        loss.backward()
        topt.step()

    return needle_fn, torch_fn


def torch_unless_child():
    """PyTorch, or None in needle's child process (--needle-only) and where it is missing:
    the child must never import it (see needle_times_in_child)."""
    if "--needle-only" in sys.argv:
        return None
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    return torch
